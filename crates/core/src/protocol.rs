//! The agent ↔ control-plane protocol. The agent sends a heartbeat with what
//! it observes; the answer carries the intent for that host (instance specs
//! and monitor specs). The agent reconciles toward the intent; the control
//! plane never pushes commands. Every spec carries the database generation so
//! a stale answer can be recognised.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Desired, NodeRole};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostRegistration {
    pub name: String,
    pub address: String,
    pub failure_domain: String,
    pub agent_port: u16,
    /// Port of the agent's DNS server on `address` (0: off; absent from
    /// older agents).
    #[serde(default)]
    pub dns_port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatRequest {
    pub host: HostRegistration,
    /// PostgreSQL version the agent can run.
    pub pg_version: u32,
    pub instances: Vec<InstanceObserved>,
    #[serde(default)]
    pub monitors: Vec<MonitorObserved>,
    /// Digest of the zone snapshot the agent holds (empty: none); the
    /// answer carries the zone only when the control plane's differs.
    #[serde(default)]
    pub zone_digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    pub instances: Vec<InstanceSpec>,
    #[serde(default)]
    pub monitors: Vec<MonitorSpec>,
    /// Interval the control plane wants between heartbeats.
    pub heartbeat_interval_ms: u64,
    /// The host's certificate has less than a third of its lifetime left:
    /// the agent asks for a new one (`POST /api/v1/agents/certificate`).
    #[serde(default)]
    pub renew_certificate: bool,
    /// The zone, when it changed since the digest the agent reported.
    #[serde(default)]
    pub zone: Option<crate::zone::ZoneSnapshot>,
}

/// Where a replica streams from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Upstream {
    pub node: String,
    pub address: String,
    pub port: u16,
}

/// Where the keeper of a data node reports to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MonitorEndpoint {
    pub address: String,
    pub port: u16,
}

/// Intent for one PostgreSQL server on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceSpec {
    pub db: String,
    pub node: String,
    /// Role at creation. Once a monitor exists it assigns roles; the keeper
    /// follows the monitor and the control plane follows the keeper.
    pub role: NodeRole,
    pub address: String,
    pub port: u16,
    pub version: u32,
    pub desired: Desired,
    pub admin_user: String,
    pub admin_password: String,
    pub replication_password: String,
    pub superuser_password: String,
    /// Presented to the monitor with every keeper report.
    #[serde(default)]
    pub monitor_token: String,
    pub database_name: String,
    pub upstream: Option<Upstream>,
    pub monitor: Option<MonitorEndpoint>,
    /// Server certificate and key (PEM) from the fleet CA, for PostgreSQL's TLS.
    #[serde(default)]
    pub tls: Option<TlsMaterial>,
    /// Names of the other data nodes (for pg_hba and synchronous_standby_names).
    #[serde(default)]
    pub peers: Vec<PeerSpec>,
    pub generation: u64,
    /// WAL archiving and backups (pgBackRest), when the database has a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup::BackupSpec>,
    /// Make this (first) node by restoring another database's backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<crate::backup::RestoreSpec>,
}

/// A server certificate issued by the fleet CA. Its names include
/// `<node>.<db>.<zone>`, `<db>.<zone>`, `primary.<db>.<zone>` and the node's
/// address, so `sslmode=verify-full` works whichever node is primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    /// The fleet CA and this host's client certificates for connections
    /// between the database's servers.
    #[serde(default)]
    pub client: Option<PgClientTls>,
}

/// TLS between a database's servers: servers accept the internal roles only
/// with a client certificate from the fleet CA whose common name is the
/// role (`clientcert=verify-full`), besides the role's password; clients
/// verify servers against the same CA (`sslmode=verify-full`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PgClientTls {
    pub ca_pem: String,
    /// Common name `pgfleet` (health checks, pg_rewind sources).
    pub superuser_cert_pem: String,
    pub superuser_key_pem: String,
    /// Common name `pgfleet_replication` (walreceivers, pg_basebackup).
    pub replication_cert_pem: String,
    pub replication_key_pem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerSpec {
    pub node: String,
    pub address: String,
    pub port: u16,
    pub agent_port: u16,
    pub priority: u8,
    pub maintenance: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstancePhase {
    /// initdb / pg_basebackup / first start under way.
    Creating,
    Running,
    Stopped,
    /// Creation or start failed; see `error`.
    Failed,
    /// Data removed (answer to `Desired::Deleted`).
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StandbyObserved {
    pub application_name: String,
    pub state: String,
    pub sync_state: String,
    pub flush_lsn: u64,
    pub replay_lsn: u64,
    pub replay_lag_ms: Option<u64>,
}

/// The one name of an instance on its host, `<db>.<node>`: node names are
/// unique only within a database (names are DNS labels, so the dot is
/// unambiguous). Agents key their servers and folders by it, the control
/// plane its observations.
pub fn instance_key(db: &str, node: &str) -> String {
    format!("{db}.{node}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceObserved {
    pub db: String,
    pub node: String,
    pub phase: InstancePhase,
    pub error: Option<String>,
    /// True when PostgreSQL answers and is not in recovery.
    pub is_primary: Option<bool>,
    pub lsn: Option<u64>,
    pub timeline: Option<u32>,
    /// On a standby: whether its WAL receiver streams.
    pub wal_receiver_streaming: Option<bool>,
    /// On a standby: bytes received but not yet replayed, and seconds since
    /// the last replayed transaction (when known).
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// On a primary: standbys it streams to.
    #[serde(default)]
    pub standbys: Vec<StandbyObserved>,
    #[serde(default)]
    pub sync_standby_names: Option<String>,
    /// Assignment the keeper follows (HA state name), when a monitor exists.
    #[serde(default)]
    pub ha_state: Option<String>,
    pub generation: u64,
    /// Archiving and backups, when the spec has a backup policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup::BackupObserved>,
    /// The oldest transaction id not yet completed (the xmax of a fresh
    /// snapshot): it rises by one per writing transaction that ends, so its
    /// rate is the server's write commit rate (read-only transactions, such
    /// as the agent's own queries, take no id). Also on a standby (replayed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_xid: Option<u64>,
}

/// Intent for a monitor on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MonitorSpec {
    pub db: String,
    pub node: String,
    pub desired: Desired,
    /// Data nodes the monitor watches; the first primary is the initial primary.
    pub nodes: Vec<PeerSpec>,
    pub initial_primary: String,
    pub superuser_password: String,
    /// What keepers and the control plane must present.
    #[serde(default)]
    pub monitor_token: String,
    /// SHA-256 fingerprints of the client certificates allowed to call this
    /// monitor: the hosts of its data nodes and the control plane.
    #[serde(default)]
    pub clients: Vec<String>,
    /// For the monitor's health checks of the data nodes.
    #[serde(default)]
    pub pg_tls: Option<PgClientTls>,
    pub generation: u64,
    /// The database's monitor epoch: bumped each time its monitor is
    /// replaced. A monitor of epoch > 0 without a state file rebuilds its
    /// state from the keepers and hands out generations from `epoch << 32`.
    #[serde(default)]
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitorObserved {
    pub db: String,
    pub node: String,
    pub running: bool,
    /// Name of the node the monitor considers primary.
    pub primary: Option<String>,
    /// Monitor generation at which that node became primary.
    #[serde(default)]
    pub primary_generation: u64,
    /// Full HA state (assigned/reported per node, health) as JSON.
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
    /// The monitor's last primary change, as it pushed it: a control plane
    /// that missed the push (it was down) still records its times.
    #[serde(default)]
    pub last_change: Option<PrimaryChanged>,
}

/// The monitor's report that it promoted a node
/// (`POST /api/v1/agents/primary-changed`, and in its heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrimaryChanged {
    pub db: String,
    pub old_primary: Option<String>,
    pub new_primary: String,
    /// Monitor generation of the change; older pushes are ignored.
    pub generation: u64,
    /// `failover` or `switchover`.
    pub reason: String,
    pub old_lsn: Option<u64>,
    pub new_lsn: Option<u64>,
    pub detected_at_ms: Option<i64>,
    pub promoted_at_ms: Option<i64>,
}
