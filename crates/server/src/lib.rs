//! The control plane: REST API, durable task engine, authoritative DNS and
//! the view of the fleet (stored intent merged with what agents report).
//!
//! Loops it runs: the HTTP server, the DNS server, the task engine
//! (`tasks::engine`), the periodic DNS republish (`dns_sync::run`), with
//! `--dns-update` the RFC 2136 publisher (`dns_sync::rfc2136::run`), the
//! expiry of hosts that joined but never beat (`api::hosts::expire_joined`),
//! the monitor replacer (`monitor_replacer::run`), the alert loops
//! (`alerts`: the watcher and the webhook delivery) and the backup loop
//! (`backup::schedule::run`: scheduled backups, archive failure events).
//! Hosts are not reaped: a host's status (`connected`, `lost`) is derived
//! from the age of its last heartbeat when asked
//! (`observed::Observed::host_status`).

pub mod actions;
pub mod alerts;
pub mod api;
pub mod auth;
pub mod backup;
pub mod config;
pub mod dns_sync;
pub mod error;
pub mod history;
pub mod host_identity;
pub mod metrics;
pub mod monitor_replacer;
pub mod nudge;
pub mod observed;
pub mod openapi;
pub mod specs;
pub mod state;
pub mod tasks;
pub mod tls;
pub mod ui;
pub mod views;
pub mod zone_snapshot;

pub use config::ServerConfig;
pub use state::AppState;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// A started control plane.
pub struct RunningServer {
    pub api_addr: std::net::SocketAddr,
    pub dns_addr: std::net::SocketAddr,
    pub state: AppState,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Waits for every loop to finish (after `cancel`).
    pub async fn join(self) {
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// Opens the store, binds the API and DNS sockets and spawns every loop.
pub async fn start(
    config: ServerConfig,
    cancel: CancellationToken,
) -> anyhow::Result<RunningServer> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    private_data_dir(&config.data_dir)?;
    let secrets_key = pgfleet_store::sealed::key_path(&config.data_dir);
    let store = pgfleet_store::open_sealed(&config.store_url, &secrets_key)
        .await
        .with_context(|| {
            format!(
                "opening store {}",
                pgfleet_store::redacted(&config.store_url)
            )
        })?;
    let store = metrics::store::TimedStore::wrap(store);
    let tokens = auth::Tokens::load_or_create(store.as_ref(), &config.data_dir).await?;
    let zone = pgfleet_dns::ZoneHandle::new(&config.zone, config.dns_ttl_secs);
    let ca = tls::FleetCa::load_or_create(store.as_ref(), &config.data_dir, &config.ca).await?;
    let host_ca = tls::FleetCa::load_or_create_host_ca(store.as_ref(), &config.data_dir).await?;
    let identities = host_identity::HostIdentities::load(store.as_ref()).await?;
    let state = AppState::new(
        config.clone(),
        store,
        zone.clone(),
        tokens,
        ca,
        host_ca,
        identities,
    )?;
    // Connected before the first publish, so the publisher starts with a view.
    let dns_update = dns_sync::rfc2136::Target::from_config(&config)?.map(|target| {
        let link = std::sync::Arc::new(dns_sync::rfc2136::Link::new(&target));
        state.dns_publisher.connect(link.clone());
        (target, link)
    });
    dns_sync::publish(&state).await?;

    let dns_server = pgfleet_dns::bind(config.dns_addr, zone)
        .await
        .with_context(|| format!("binding DNS on {}", config.dns_addr))?;
    let dns_addr = dns_server.local_addr();
    let listener = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .with_context(|| format!("binding API on {}", config.api_addr))?;
    let api_addr = listener.local_addr()?;

    let mut handles = Vec::new();
    if let Some((target, link)) = dns_update {
        tracing::info!(target = %target.url(), key = %target.key.name(), "publishing the zone by rfc 2136");
        handles.push(tokio::spawn(dns_sync::rfc2136::run(
            link,
            target,
            state.zone.zone(),
            config.dns_ttl_secs,
            state.store.clone(),
            cancel.clone(),
        )));
    }
    let dns_cancel = cancel.clone();
    handles.push(tokio::spawn(
        async move { dns_server.run(dns_cancel).await },
    ));
    handles.push(tokio::spawn(dns_sync::run(state.clone(), cancel.clone())));
    handles.push(tokio::spawn(tasks::engine::run(
        state.clone(),
        cancel.clone(),
    )));

    handles.push(tokio::spawn(monitor_replacer::run(
        state.clone(),
        cancel.clone(),
    )));
    handles.push(tokio::spawn(alerts::run_delivery(
        state.clone(),
        cancel.clone(),
    )));
    handles.push(tokio::spawn(alerts::run_watch(
        state.clone(),
        cancel.clone(),
    )));
    handles.push(tokio::spawn(history::run(state.clone(), cancel.clone())));
    handles.push(tokio::spawn(backup::schedule::run(
        state.clone(),
        cancel.clone(),
    )));
    handles.push(tokio::spawn(expire_joined_hosts(
        state.clone(),
        cancel.clone(),
    )));

    let router = api::router(state.clone());
    let api_cancel = cancel.clone();
    if config.tls {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if !api_addr.ip().is_unspecified() {
            names.push(api_addr.ip().to_string());
        }
        // Agents present their host certificates; the CLI, the UI and
        // scripts may present none and use tokens.
        let client_auth = pgfleet_tls::ClientAuth::Optional(state.agent_client_cas_pem());
        let tls_config = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
                };
                pgfleet_tls::server_config(&read(cert)?, None, &read(key)?, client_auth)?
            }
            (None, None) => {
                let cert = state.ca.issue("pgfleet control plane", &names)?;
                pgfleet_tls::server_config(
                    &cert.cert_pem,
                    Some(&state.ca.cert_pem),
                    &cert.key_pem,
                    client_auth,
                )?
            }
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        handles.push(tokio::spawn(pgfleet_tls::serve(
            listener,
            Some(tls_config),
            router,
            config.http,
            api_cancel,
        )));
    } else {
        handles.push(tokio::spawn(pgfleet_tls::serve(
            listener,
            None,
            router,
            config.http,
            api_cancel,
        )));
    }
    tracing::info!(api = %api_addr, dns = %dns_addr, zone = %config.zone, "control plane started");
    Ok(RunningServer {
        api_addr,
        dns_addr,
        state,
        handles,
    })
}

/// The data dir holds keys and the store: nobody else may list or read it.
/// It stays 0711 (not 0700): PostgreSQL, as user `postgres`, must pass
/// through it to its folders under `hosts/`.
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading data dir {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o066 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode((mode & 0o700) | 0o011))
            .with_context(|| format!("making data dir {} private (0711)", dir.display()))?;
    }
    Ok(())
}

/// Forgets joined hosts that never beat, checked every few seconds (at
/// most a tenth of the expiry apart).
async fn expire_joined_hosts(state: AppState, cancel: CancellationToken) {
    let every =
        std::time::Duration::from_secs((state.config.joined_host_expiry_secs / 10).clamp(1, 60));
    loop {
        if let Err(error) = api::hosts::expire_joined(&state).await {
            tracing::warn!(error = ?error.message, "expiring joined hosts failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Runs until `cancel` fires.
pub async fn run(config: ServerConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let running = start(config, cancel).await?;
    running.join().await;
    Ok(())
}
