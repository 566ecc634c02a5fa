//! `pgfleet up`: the control plane in this process plus N host agents, each
//! its own OS process on its own loopback address, or with `--netns` in its
//! own network namespace (see `netns`). Ctrl-C or SIGTERM stops every agent
//! (and so every PostgreSQL server) cleanly, then the server, then removes
//! the namespaces, veth pairs and bridge it made.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::fleet::{self, AgentLaunch};
use crate::netns;

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[arg(long, default_value = "./pgfleet-data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 4)]
    pub hosts: u32,
    #[arg(long, default_value = "127.0.0.1:8053")]
    pub dns: SocketAddr,
    #[arg(long, default_value = "pgfleet.internal")]
    pub zone: String,
    /// Address of host-1; host-N gets the N-1th next address.
    #[arg(long, default_value = "127.0.0.2")]
    pub first_host_address: Ipv4Addr,
    #[arg(long, default_value_t = 7071)]
    pub agent_port: u16,
    /// A node silent for this long is failed over (monitor) / fences itself (keeper).
    #[arg(long, default_value_t = 2000)]
    pub failure_timeout_ms: u64,
    /// Serve the API over plain HTTP instead of HTTPS.
    #[arg(long)]
    pub insecure_http: bool,
    /// A host without heartbeat for this long is `lost`.
    #[arg(long, default_value_t = 2000)]
    pub host_timeout_ms: u64,
    /// Lifetime of host certificates (agents renew when a third is left).
    #[arg(long, default_value_t = pgfleet_server::tls::DEFAULT_HOST_CERT_SECS, value_parser = clap::value_parser!(u64).range(6..))]
    pub host_cert_validity_secs: u64,
    /// A host that joined but never sent a heartbeat is forgotten after this
    /// many seconds.
    #[arg(long, default_value_t = pgfleet_server::config::DEFAULT_JOINED_HOST_EXPIRY_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub joined_host_expiry_secs: u64,
    /// Also publish the zone's A records to this DNS server by RFC 2136
    /// dynamic update: `rfc2136://ADDRESS[:PORT]/ZONE`, ZONE the fleet's
    /// zone or a parent of it.
    #[arg(long, requires = "dns_update_key")]
    pub dns_update: Option<String>,
    /// The TSIG key of --dns-update, in BIND's format (what `tsig-keygen -a
    /// hmac-sha256 NAME` prints); mode 0600.
    #[arg(long, requires = "dns_update")]
    pub dns_update_key: Option<PathBuf>,
    /// A database's monitor whose host has been lost for this many seconds
    /// is replaced by a new one on another host.
    #[arg(long, default_value_t = pgfleet_server::config::DEFAULT_MONITOR_REPLACE_AFTER_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub monitor_replace_after_secs: u64,
    /// A replica whose WAL receiver has not been streaming for this many
    /// seconds raises a `replica_not_streaming` alert.
    #[arg(long, default_value_t = pgfleet_server::config::DEFAULT_ALERT_NOT_STREAMING_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub alert_not_streaming_secs: u64,
    /// Metadata store URL: `sqlite:PATH` (default DATA_DIR/pgfleet.db) or
    /// `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(long, env = "PGFLEET_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Each host in a network namespace of its own, on a bridge carrying the
    /// control plane (addresses from 198.18.0.0/15; needs root). The API and
    /// DNS listen on the bridge's address with the ports of --api and --dns;
    /// --first-host-address is not used.
    #[arg(long)]
    pub netns: bool,
}

pub async fn run(args: UpArgs, api: SocketAddr) -> anyhow::Result<()> {
    pgfleet_agent::config::validate_ha_timing(
        pgfleet_agent::config::DEFAULT_KEEPER_INTERVAL_MS,
        args.failure_timeout_ms,
    )?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    // PostgreSQL runs as `postgres` when we are root: it must reach the data dir.
    pgfleet_agent::pg::user::PgUser::detect()?.check_reachable(&data_dir.join("hosts"))?;
    crate::controlplane::ensure_not_running(&data_dir)?;
    let network = if args.netns {
        let (network, adopted) =
            netns::setup(&data_dir, args.hosts, fleet::processes_alive(&data_dir))
                .context("pgfleet up --netns: cannot create the fleet's network")?;
        Some((network, adopted))
    } else {
        if netns::load(&data_dir).is_some() {
            anyhow::ensure!(
                !fleet::processes_alive(&data_dir),
                "the fleet in {} still runs in network namespaces: start it with --netns",
                data_dir.display()
            );
            netns::teardown_recorded(&data_dir)?;
        }
        None
    };
    let outcome = serve(&args, api, &data_dir, network.as_ref()).await;
    // A failed start of an adopted network leaves the running fleet alone.
    let adopted_and_failed = matches!(network, Some((_, true))) && outcome.is_err();
    if let Some((network, _)) = network.as_ref().filter(|_| !adopted_and_failed) {
        // Whatever is left runs in a namespace about to go: stop it by pid.
        for host in fleet::list_hosts(&data_dir) {
            let _ = fleet::kill_host(&data_dir, &host);
        }
        match netns::teardown_recorded(&data_dir) {
            Ok(_) => println!(
                "removed the network namespaces, veth pairs and bridge {} of {}",
                network.bridge,
                network.subnet()
            ),
            Err(error) => eprintln!("error: removing the fleet's network: {error:#}"),
        }
    }
    outcome
}

async fn serve(
    args: &UpArgs,
    api: SocketAddr,
    data_dir: &std::path::Path,
    network: Option<&(netns::Network, bool)>,
) -> anyhow::Result<()> {
    let data_dir = data_dir.to_path_buf();
    let cancel = CancellationToken::new();
    let mut config = pgfleet_server::ServerConfig::local(data_dir.clone());
    match network {
        Some((network, _)) => {
            config.api_addr = SocketAddr::new(network.bridge_address.into(), api.port());
            config.dns_addr = SocketAddr::new(network.bridge_address.into(), args.dns.port());
        }
        None => {
            config.api_addr = api;
            config.dns_addr = args.dns;
        }
    }
    config.zone = args.zone.clone();
    config.host_timeout_ms = args.host_timeout_ms;
    config.tls = !args.insecure_http;
    config.host_cert_validity_secs = args.host_cert_validity_secs;
    config.joined_host_expiry_secs = args.joined_host_expiry_secs;
    config.dns_update = args.dns_update.clone();
    config.dns_update_key = args.dns_update_key.clone();
    config.monitor_replace_after_secs = args.monitor_replace_after_secs;
    config.alert_not_streaming_secs = args.alert_not_streaming_secs;
    if let Some(store) = &args.store {
        config.store_url = store.clone();
    }
    let server = pgfleet_server::start(config, cancel.clone()).await?;
    let scheme = if args.insecure_http { "http" } else { "https" };
    let server_url = format!("{scheme}://{}", server.api_addr);
    crate::controlplane::record(&data_dir, &server_url, server.dns_addr, network.is_some())?;
    // Backups work with no setup: a default location under the data dir.
    if let Err(error) = pgfleet_server::backup::locations::ensure_local(&server.state).await {
        println!("  note: no default backup location: {}", error.message);
    }

    let first = u32::from(args.first_host_address);
    let mut hosts = Vec::new();
    for index in 1..=args.hosts {
        let name = format!("host-{index}");
        let member = network.and_then(|(network, _)| network.host(&name));
        let launch = AgentLaunch {
            netns: member.map(|m| m.netns.clone()),
            name: name.clone(),
            address: match member {
                Some(member) => member.address.to_string(),
                None => Ipv4Addr::from(first + index - 1).to_string(),
            },
            failure_domain: format!("fd-{index}"),
            server_url: server_url.clone(),
            agent_port: args.agent_port,
            failure_timeout_ms: args.failure_timeout_ms,
        };
        fleet::write_launch(&data_dir, &launch)?;
        if fleet::agent_pid(&data_dir, &name).is_none() {
            // A host that never joined gets a one-time join token.
            let join_token = if fleet::has_credential(&data_dir, &name) {
                None
            } else {
                let store = server.state.store.as_ref();
                let (token, _) = server
                    .state
                    .identities
                    .create_join_token(store, 600)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                Some(token)
            };
            fleet::start_agent(&data_dir, &name, join_token.as_deref())?;
        }
        hosts.push(launch);
    }
    println!("pgfleet is up");
    match network {
        Some((network, adopted)) => {
            println!(
            "  network:    netns{}: every host in its own network namespace, on bridge {} ({}); \
             clients' namespace {} ({})",
            if *adopted { " (kept from the running fleet)" } else { "" },
            network.bridge,
            network.subnet(),
            network.clients.netns,
            network.clients.address
        )
        }
        None => {
            println!("  network:    loopback (hosts share this machine's network; no partitions)")
        }
    }
    println!(
        "  API:        {server_url}  (token in {})",
        data_dir.join("admin.token").display()
    );
    println!("  DNS:        {} (zone {})", server.dns_addr, args.zone);
    for host in &hosts {
        println!(
            "  {}:     {} ({})",
            host.name, host.address, host.failure_domain
        );
    }
    println!("Use it from another terminal:  pgfleet db create pg-dev-db-1  (add --api {server_url} if not the default)");
    println!("Ctrl-C stops everything.");

    let reaper = tokio::spawn(async {
        loop {
            fleet::reap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    wait_for_stop_signal().await;
    println!("stopping: agents and their PostgreSQL servers first");
    let mut stops = Vec::new();
    for host in &hosts {
        let dir = data_dir.clone();
        let name = host.name.clone();
        stops.push(tokio::spawn(async move {
            fleet::stop_agent(&dir, &name, Duration::from_secs(30)).await
        }));
    }
    for stop in stops {
        let _ = stop.await;
    }
    reaper.abort();
    cancel.cancel();
    server.join().await;
    println!("stopped");
    Ok(())
}

pub async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
