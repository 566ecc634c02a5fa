//! A real local fleet (`pgfleet up` as a child process) on its own loopback
//! addresses, or (`Fleet::up_netns`) with each host in a network namespace of
//! its own, with helpers that wait for conditions with deadlines, and the
//! fault kit: kill/freeze hosts, kill/start the control plane, and on a
//! netns fleet isolate, cut, slow and heal hosts, and run code from the
//! clients' namespace. Used by the end-to-end tests, the benchmarks and
//! `pgfleet demo`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::faults::{self, Fault, Peer, Slowness};
use crate::netns::{self, Network};

pub struct Fleet {
    pub dir: PathBuf,
    pub api: String,
    pub dns: SocketAddr,
    pub subnet: [u8; 2],
    pub hosts: u32,
    extra: Vec<String>,
    /// Environment of `pgfleet up` (secrets stay off its command line).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    /// Keep the directory after drop.
    pub keep: bool,
    /// The network of a `--netns` fleet, once it is up.
    pub network: Option<Network>,
}

fn unique_subnet() -> [u8; 2] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seed = std::process::id().wrapping_mul(2654435761) ^ nanos;
    [(10 + seed % 240) as u8, ((seed >> 8) % 250) as u8 + 1]
}

impl Fleet {
    /// The `pgfleet` binary: `PGFLEET_BIN`, else next to the running executable
    /// (target/debug/pgfleet for tests and benchmarks), else the current one.
    pub fn bin() -> String {
        if let Ok(bin) = std::env::var("PGFLEET_BIN") {
            return bin;
        }
        let current = std::env::current_exe().expect("current executable");
        for dir in current.ancestors().skip(1).take(3) {
            let candidate = dir.join("pgfleet");
            if candidate.is_file() {
                return candidate.display().to_string();
            }
        }
        current.display().to_string()
    }

    /// Starts a fleet of `hosts` hosts in a new directory under /tmp.
    pub fn up(hosts: u32) -> Fleet {
        Self::up_with(hosts, &[])
    }

    /// `up` with extra `pgfleet up` arguments.
    pub fn up_with(hosts: u32, extra: &[&str]) -> Fleet {
        Self::up_with_env(hosts, extra, &[])
    }

    /// `up` with extra arguments and environment variables.
    pub fn up_with_env(hosts: u32, extra: &[&str], env: &[(&str, &str)]) -> Fleet {
        let subnet = unique_subnet();
        let name = format!(
            "pgfleet-test-{}-{}-{}",
            std::process::id(),
            subnet[0],
            subnet[1]
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("fleet dir");
        Self::up_in_env(dir, hosts, extra, env)
    }

    /// Starts a fleet in `dir` with extra `pgfleet up` arguments.
    pub fn up_in(dir: PathBuf, hosts: u32, extra: &[&str]) -> Fleet {
        Self::up_in_env(dir, hosts, extra, &[])
    }

    /// `up_in` with environment variables for `pgfleet up`.
    pub fn up_in_env(dir: PathBuf, hosts: u32, extra: &[&str], env: &[(&str, &str)]) -> Fleet {
        let subnet = unique_subnet();
        let mut fleet = Fleet {
            api: format!(
                "{}://127.{}.{}.1:7070",
                if extra.contains(&"--insecure-http") {
                    "http"
                } else {
                    "https"
                },
                subnet[0],
                subnet[1]
            ),
            dns: format!("127.{}.{}.1:8053", subnet[0], subnet[1])
                .parse()
                .unwrap(),
            dir,
            subnet,
            hosts,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            keep: false,
            network: None,
        };
        fleet.start();
        fleet
    }

    /// Address of host-`index` (from 1).
    pub fn host_address(&self, index: u32) -> String {
        if let Some(network) = &self.network {
            return network.hosts[index as usize - 1].address.to_string();
        }
        format!("127.{}.{}.{}", self.subnet[0], self.subnet[1], index + 1)
    }

    /// Whether this fleet runs with `--netns`.
    pub fn is_netns(&self) -> bool {
        self.extra.iter().any(|a| a == "--netns")
    }

    /// Starts a `--netns` fleet of `hosts` hosts in a new directory.
    pub fn up_netns(hosts: u32) -> Fleet {
        Self::up_with(hosts, &["--netns"])
    }

    /// Why a `--netns` fleet cannot run here (not root, no `ip netns add`),
    /// or None when it can. Tests print this and skip.
    pub fn netns_unavailable() -> Option<String> {
        netns::check_available().err().map(|e| format!("{e:#}"))
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("up.log"))
            .unwrap();
        let child = Command::new(Self::bin())
            .args(["up", "--hosts", &self.hosts.to_string(), "--api", &self.api])
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--dns",
                &self.dns.to_string(),
                "--first-host-address",
                &self.host_address(1),
            ])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.is_netns() {
                // Its API and DNS listen on the bridge `up` made.
                if let Some(record) = crate::controlplane::load(&self.dir).filter(|r| r.pid == pid)
                {
                    self.api = record.api;
                    self.dns = record.dns;
                    self.network = netns::load(&self.dir);
                }
            }
            let served = !self.is_netns() || self.network.is_some();
            if let Some(token) = std::fs::read_to_string(self.dir.join("admin.token"))
                .ok()
                .filter(|_| served)
            {
                let client = Client::with_ca(&self.api, token.trim(), self.ca().as_deref());
                let expected = self.hosts;
                // Its own runtime on its own thread: callers may be inside one.
                let ready = std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            let rt = tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()
                                .unwrap();
                            rt.block_on(async {
                                match client.hosts().await {
                                    Ok(hosts) => {
                                        hosts.len() as u32 == expected
                                            && hosts.iter().all(|h| {
                                                h.status == pgfleet_core::HostStatus::Connected
                                            })
                                    }
                                    Err(_) => false,
                                }
                            })
                        })
                        .join()
                        .unwrap()
                });
                if ready {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "pgfleet up exited ({status}); see {}",
                    self.dir.join("up.log").display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "fleet did not come up; see {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL `pgfleet up` (the control plane dies mid-flight; the agents,
    /// separate processes, keep running).
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM `pgfleet up` and wait for it to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("pgfleet up did not stop within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the control plane (`pgfleet server kill`); hosts keep running.
    pub fn kill_server(&mut self) {
        self.crash();
    }

    /// Starts the control plane again on the same store (`pgfleet server start`).
    pub fn start_server(&mut self) {
        self.start();
    }

    /// SIGKILL host `host`'s agent and PostgreSQL servers (power loss).
    pub fn kill_host(&self, host: &str) -> usize {
        crate::fleet::kill_host(&self.dir, host).unwrap_or(0)
    }

    /// Cuts every link of `host`, both directions. Returns what was done.
    pub fn isolate(&self, host: &str) -> anyhow::Result<String> {
        faults::inject(&self.dir, Fault::Isolate { host: host.into() })
    }

    /// Cuts the link between `host` and `other` (a host, `control-plane`
    /// or `clients`), both directions.
    pub fn cut(&self, host: &str, other: &str) -> anyhow::Result<String> {
        let peer = Peer::parse(other);
        faults::inject(
            &self.dir,
            Fault::Cut {
                host: host.into(),
                peer,
            },
        )
    }

    /// tc netem on `host`'s link.
    pub fn slow(&self, host: &str, slowness: Slowness) -> anyhow::Result<String> {
        faults::inject(
            &self.dir,
            Fault::Slow {
                host: host.into(),
                slowness,
            },
        )
    }

    /// Undoes the network faults of `host`, or of every host.
    pub fn heal(&self, host: Option<&str>) -> anyhow::Result<String> {
        faults::heal(&self.dir, host)
    }

    /// The clients' network namespace of a `--netns` fleet.
    pub fn clients_netns(&self) -> &str {
        &self
            .network
            .as_ref()
            .expect("a fleet started with --netns")
            .clients
            .netns
    }

    /// Runs `work` in the clients' namespace on a thread of its own (its own
    /// current-thread runtime) and awaits its result: the connections it
    /// opens leave from the clients' address, and `cut HOST clients` applies.
    pub async fn in_clients<T, F, Fut>(&self, work: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
    {
        netns::spawn_in(self.clients_netns(), work)
            .await
            .expect("running in the clients' namespace")
    }

    /// Runs the CLI against this fleet from the clients' namespace.
    pub fn cli_in_clients(&self, args: &[&str]) -> std::process::Output {
        let command =
            netns::command(self.clients_netns(), Self::bin()).expect("the clients' namespace");
        self.run_cli(command, args)
    }

    /// Runs `command` (the CLI) with `args` against this fleet.
    fn run_cli(&self, mut command: Command, args: &[&str]) -> std::process::Output {
        command
            .args(args)
            .env("PGFLEET_API", &self.api)
            .env("PGFLEET_DATA_DIR", &self.dir)
            .env_remove("PGFLEET_TOKEN")
            .output()
            .unwrap()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn client(&self) -> Client {
        Client::with_ca(&self.api, &self.token(), self.ca().as_deref())
    }

    /// Connects to a database of this fleet with a `postgresql://` URI, over
    /// TLS verified against the fleet CA.
    pub async fn connect(&self, uri: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(uri, self.pg_tls()).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// The TLS connector for this fleet's PostgreSQL servers.
    pub fn pg_tls(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        pg_tls(&self.ca().expect("the fleet CA"))
    }

    /// The fleet CA certificate (PEM), once the control plane wrote it.
    pub fn ca(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("ca.crt")).ok()
    }

    /// Runs the CLI against this fleet.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.run_cli(Command::new(Self::bin()), args)
    }

    /// Runs the CLI with extra environment variables.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut command = Command::new(Self::bin());
        command.envs(env.iter().copied());
        self.run_cli(command, args)
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "pgfleet {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let crashed = self.child.is_none();
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Anything left (a host started by a test) is killed by its recorded pid.
            for host in crate::fleet::list_hosts(&self.dir) {
                let _ = crate::fleet::kill_host(&self.dir, &host);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // A control plane started by `pgfleet server start` is not our child.
        if let Some(pid) = crate::controlplane::running_pid(&self.dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while crate::fleet::alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if crashed && netns::load(&self.dir).is_some() {
            // Killed (crash) and never restarted: its hosts may still run.
            for host in crate::fleet::list_hosts(&self.dir) {
                let _ = crate::fleet::kill_host(&self.dir, &host);
            }
        }
        // `up` removes its network when it stops; after a crash this does.
        if let Err(error) = netns::teardown_recorded(&self.dir) {
            eprintln!("removing the network of {}: {error:#}", self.dir.display());
        }
        // PGFLEET_KEEP_FLEET=1 keeps every fleet's folder (logs) for study.
        if std::thread::panicking() || self.keep || std::env::var_os("PGFLEET_KEEP_FLEET").is_some()
        {
            eprintln!("fleet kept for inspection in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn resolve(dns: SocketAddr, name: &str) -> Vec<Ipv4Addr> {
    pgfleet_dns::query_a(dns, name, Duration::from_secs(2))
        .await
        .map(|(a, _)| a)
        .unwrap_or_default()
}

/// Asks every server in `servers` at once (the database's `dns_servers`:
/// the control plane's and every agent's) and takes the first answer with
/// addresses, as a client whose resolver knows several servers would; a
/// dead server costs nothing while another answers. Empty when none
/// answers within `timeout`.
pub async fn resolve_any(servers: &[SocketAddr], name: &str, timeout: Duration) -> Vec<Ipv4Addr> {
    let mut queries = tokio::task::JoinSet::new();
    for server in servers {
        let (server, name) = (*server, name.to_string());
        queries.spawn(async move { pgfleet_dns::query_a(server, &name, timeout).await });
    }
    while let Some(answer) = queries.join_next().await {
        if let Ok(Ok((addresses, _))) = answer {
            if !addresses.is_empty() {
                return addresses;
            }
        }
    }
    Vec::new()
}

/// A TLS connector verifying servers against the fleet CA (PostgreSQL
/// servers of a fleet accept TCP connections over TLS only).
pub fn pg_tls(ca_pem: &str) -> tokio_postgres_rustls::MakeRustlsConnect {
    pgfleet_tls::postgres_tls(ca_pem, None).expect("fleet CA")
}

/// Waits until `db` is highly available and settled (see [`ha_settled`]).
/// Returns the primary's name.
pub async fn wait_ha_settled(fleet: &Fleet, db: &str, timeout: Duration) -> String {
    let client = fleet.client();
    eventually(timeout, "HA complete and settled", || async {
        let view = client.database(db, false).await.ok()?;
        ha_settled(&view)
    })
    .await
}

/// The primary's name when `view` is highly available and settled: HA
/// status Complete, every node online, every replica streaming (`Active`)
/// and counted by the monitor as a caught-up `secondary` (the view offers
/// to promote it), commits synchronous.
pub fn ha_settled(view: &pgfleet_core::api::DatabaseView) -> Option<String> {
    let replicas: Vec<_> = view
        .nodes
        .iter()
        .filter(|n| n.role == pgfleet_core::NodeRole::Replica)
        .collect();
    let settled = !replicas.is_empty()
        && replicas.iter().all(|n| {
            matches!(
                n.replication_status,
                Some(pgfleet_core::api::ReplicationStatus::Active)
            ) && n.ha_state.as_deref() == Some("secondary")
                && pgfleet_core::api::find_action(
                    &n.actions,
                    pgfleet_core::api::ActionKind::Promote,
                )
                .is_none_or(|a| a.possible)
        });
    let online = view
        .nodes
        .iter()
        .all(|n| n.status == pgfleet_core::NodeStatus::Online);
    let primary = view
        .nodes
        .iter()
        .find(|n| n.role == pgfleet_core::NodeRole::Primary)?;
    (view.ha_status == pgfleet_core::HaStatus::Complete
        && settled
        && online
        && view.health.sync_mode == "sync")
        .then(|| primary.name.clone())
}
