//! Agent settings, validated at start.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub address: String,
    pub failure_domain: String,
    pub data_dir: PathBuf,
    pub server_url: String,
    /// Fleet CA (PEM) trusted for an https:// control plane.
    pub ca_pem: Option<String>,
    /// One-time join token, needed only when the host has no credential yet.
    pub join_token: Option<String>,
    /// The host credential (filled in at start: read from
    /// `DATA_DIR/agent.credential`, or obtained by joining).
    pub credential: String,
    pub pg_bin: Option<PathBuf>,
    /// Port of the agent's HTTP endpoint on `address`.
    pub agent_port: u16,
    /// How often keepers report to their monitor.
    pub keeper_interval_ms: u64,
    /// A node silent for this long is failed (monitor side).
    pub failure_timeout_ms: u64,
    /// Timeouts and limits on the agent endpoint's connections.
    pub http: pgfleet_tls::HttpLimits,
}
