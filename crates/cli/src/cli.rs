//! Command-line definition.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::globals::Globals;

#[derive(Parser, Debug)]
#[command(
    name = "pgfleet",
    version,
    about = "Data services manager for PostgreSQL"
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane (or, with `kill`/`start`, act on the local
    /// fleet's control plane).
    Server(ServerArgs),
    /// Run a host agent.
    Agent(AgentArgs),
    /// Run a whole fleet on this machine (control plane + N hosts).
    Up(crate::up::UpArgs),
    /// Databases.
    #[command(subcommand)]
    Db(DbCommand),
    /// Read replicas (high availability).
    #[command(subcommand)]
    Replica(ReplicaCommand),
    /// API tokens (admin, viewer, or metrics: scrape `/metrics` only).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Nodes of a database.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Hosts, and the local fleet's fault-injection kit.
    #[command(subcommand)]
    Host(HostCommand),
    /// Tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Alert targets: webhooks that receive failovers, degraded databases,
    /// lost hosts, failed tasks (signed, retried, delivered at least once).
    #[command(subcommand)]
    AlertTarget(crate::alert_targets::AlertTargetCommand),
    /// Where backups go (pgBackRest repositories).
    #[command(subcommand)]
    BackupLocation(crate::backup_commands::BackupLocationCommand),
    /// Tell the product's story on a fresh local fleet, with timings.
    Demo(crate::demo::DemoArgs),
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    #[arg(long, default_value = "127.0.0.1:8053")]
    pub dns: SocketAddr,
    #[arg(long, default_value = "pgfleet.internal")]
    pub zone: String,
    /// Metadata store URL: `sqlite:PATH` (default DATA_DIR/pgfleet.db) or
    /// `postgres://USER:PASSWORD@HOST/DB` (use the environment variable to
    /// keep the password off the command line).
    #[arg(long, env = "PGFLEET_STORE", hide_env_values = true)]
    pub store: Option<String>,
    #[arg(long, default_value = "./pgfleet-data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 2000)]
    pub host_timeout_ms: u64,
    /// Serve the API over plain HTTP instead of HTTPS (fleet CA).
    #[arg(long)]
    pub insecure_http: bool,
    /// The API's server certificate (PEM), instead of one from the fleet CA.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Use this CA (PEM certificate) as the fleet CA instead of creating one.
    #[arg(long, requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key (PEM) of --ca-cert.
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Lifetime of host certificates (agents renew when a third is left).
    #[arg(long, default_value_t = pgfleet_server::tls::DEFAULT_HOST_CERT_SECS, value_parser = clap::value_parser!(u64).range(6..))]
    pub host_cert_validity_secs: u64,
    /// A host that joined but never sent a heartbeat is forgotten after this
    /// many seconds (its credential, certificate and address).
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
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(subcommand)]
    pub action: Option<ServerAction>,
}

/// The local fleet's control plane (`pgfleet up`), by the pid it recorded.
#[derive(Subcommand, Debug)]
pub enum ServerAction {
    /// SIGKILL the control plane (hosts keep running).
    Kill,
    /// Start it again with its recorded arguments, on the same store.
    Start,
}

/// Limits on the connections of the API (server) or the agent endpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Seconds a client has for the TLS handshake and for each request's
    /// header; slower connections are closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight and no
    /// byte moving.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub http_idle_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub http_max_connections: u64,
    /// Largest request header in bytes; larger ones get 431.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(8192..=16 * 1024 * 1024))]
    pub http_max_header_bytes: u64,
}

impl HttpArgs {
    pub fn limits(&self) -> pgfleet_tls::HttpLimits {
        pgfleet_tls::HttpLimits {
            header_read_timeout: std::time::Duration::from_secs(self.http_header_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.http_idle_timeout_secs),
            max_connections: usize::try_from(self.http_max_connections).unwrap_or(usize::MAX),
            max_header_bytes: usize::try_from(self.http_max_header_bytes).unwrap_or(usize::MAX),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub address: String,
    #[arg(long, default_value = "fd-1")]
    pub failure_domain: String,
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long)]
    pub server: String,
    /// One-time join token (only needed the first time: the agent keeps the
    /// host credential it gets in DATA_DIR/agent.credential).
    #[arg(long, env = "PGFLEET_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// The fleet CA certificate (PEM) to trust for an https:// server.
    #[arg(long, env = "PGFLEET_CA")]
    pub ca_file: Option<PathBuf>,
    #[arg(long, default_value_t = 7071)]
    pub agent_port: u16,
    /// Port of the agent's authoritative DNS server for the zone (UDP and
    /// TCP, on --address); 0 turns it off.
    #[arg(long, default_value_t = pgfleet_agent::config::DEFAULT_DNS_PORT)]
    pub dns_port: u16,
    #[arg(long, default_value_t = pgfleet_agent::config::DEFAULT_KEEPER_INTERVAL_MS)]
    pub keeper_interval_ms: u64,
    #[arg(long, default_value_t = 2000)]
    pub failure_timeout_ms: u64,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Create a standalone database.
    Create {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        admin_user: Option<String>,
        #[arg(long)]
        database: Option<String>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        backup: crate::backup_commands::PolicyArgs,
        #[command(flatten)]
        restore: crate::backup_commands::RestoreArgs,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        name: String,
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        #[arg(long)]
        show_password: bool,
        /// Show it again every second (q or Ctrl-C to quit).
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many refreshes.
        #[arg(long, requires = "watch")]
        iterations: Option<u32>,
    },
    /// A live view, refreshed every second: nodes, roles, lag, commit rate
    /// (q or Ctrl-C to quit). The commit rate needs an admin token.
    Top {
        name: String,
        /// Stop after this many refreshes.
        #[arg(long)]
        iterations: Option<u32>,
    },
    /// Print the connection URI (with password).
    Uri {
        name: String,
        /// Use the primary's address instead of its DNS name.
        #[arg(long)]
        resolved: bool,
    },
    Delete {
        name: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Failover and switchover history.
    Events {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Take a backup now (from a healthy standby when there is one).
    Backup {
        db: String,
        /// full (default), diff or incr.
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Backups, WAL range and the recoverable window.
    Backups {
        db: String,
        #[arg(long)]
        json: bool,
    },
    /// A database's backup policy.
    #[command(subcommand)]
    BackupPolicy(crate::backup_commands::BackupPolicyCommand),
}

#[derive(Subcommand, Debug)]
pub enum ReplicaCommand {
    /// Add a read replica, or `--count N` at once (the first one also
    /// deploys the monitor).
    Create {
        db: String,
        /// The replica's name (default: the next free `pg-replica-N`).
        #[arg(long, conflicts_with = "count")]
        name: Option<String>,
        /// Add this many replicas at once (1..=8), each on a host of its
        /// own, cloned in parallel by one task; named `pg-replica-N`.
        #[arg(long)]
        count: Option<u8>,
        #[arg(long)]
        priority: Option<u8>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Planned switchover: make NODE the primary (the old primary follows it).
    Promote {
        db: String,
        node: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove a replica (the last one also removes the monitor).
    Delete {
        db: String,
        node: String,
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; it is printed once.
    Create {
        /// admin (everything), viewer (read) or metrics (scrape `/metrics` only).
        #[arg(long, value_parser = ["admin", "viewer", "metrics"])]
        role: String,
        #[arg(long)]
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Revoke {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Put a node in maintenance (never a failover candidate) or take it out.
    Maintenance {
        db: String,
        node: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum HostCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Start a stopped host of the local fleet.
    Start { host: String },
    /// Print a one-time join token for a new host's agent.
    JoinToken {
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Remove a host that carries no node; its identity is revoked. A
    /// monitor on it is moved to another host first (the refusal names the
    /// task; remove again once it finished).
    Remove { host: String },
    /// SIGKILL the host's agent and PostgreSQL servers (power loss).
    Kill { host: String },
    /// SIGSTOP the host's processes.
    Freeze { host: String },
    /// SIGCONT the host's processes.
    Thaw { host: String },
    /// Cut every link of the host, both directions (`up --netns` fleets).
    Isolate { host: String },
    /// Cut one link, both directions: OTHER is a host, `control-plane` or `clients`.
    Cut { host: String, other: String },
    /// Delay (and lose) what the host sends: tc netem on its link.
    Slow {
        host: String,
        /// Added delay, e.g. 200ms.
        #[arg(long, value_parser = crate::faults::parse_millis)]
        delay: u64,
        /// Random variation of the delay, e.g. 50ms.
        #[arg(long, default_value = "0ms", value_parser = crate::faults::parse_millis)]
        jitter: u64,
        /// Share of packets lost, e.g. 5%.
        #[arg(long, default_value = "0%", value_parser = crate::faults::parse_percent)]
        loss: f64,
    },
    /// Undo every network fault of HOST (where it is either side), or of all hosts.
    Heal { host: Option<String> },
    /// List the active network faults.
    Faults,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

/// `https://127.0.0.1:7070`, `http://…` or `127.0.0.1:7070` → a socket address to bind.
pub fn bind_address(api: &str) -> anyhow::Result<SocketAddr> {
    let trimmed = api
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    trimmed
        .parse()
        .map_err(|_| anyhow::anyhow!("--api {api:?}: expected ADDRESS:PORT such as 127.0.0.1:7070"))
}
