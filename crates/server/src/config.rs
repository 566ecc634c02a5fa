//! Settings of the control plane, validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub api_addr: SocketAddr,
    pub dns_addr: SocketAddr,
    pub zone: String,
    /// `sqlite:PATH`
    pub store_url: String,
    /// Where `admin.token` and `join.token` are written.
    pub data_dir: PathBuf,
    pub dns_ttl_secs: u32,
    /// Interval agents are asked to heartbeat at.
    pub heartbeat_interval_ms: u64,
    /// A host with no heartbeat for this long is `lost`.
    pub host_timeout_ms: u64,
    /// Longest a task waits for an agent to carry out a step.
    pub step_timeout_ms: u64,
    /// Serve the API over HTTPS with a certificate from the fleet CA.
    pub tls: bool,
    /// The user's API server certificate and key (PEM files) instead of one
    /// from the fleet CA.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The user's CA (certificate and key, PEM files) instead of the fleet's own.
    pub ca: crate::tls::CaFiles,
    /// Lifetime of host certificates; agents renew when a third is left.
    pub host_cert_validity_secs: u64,
    /// A host that joined but never sent a heartbeat is forgotten after
    /// this long (`--joined-host-expiry-secs`).
    pub joined_host_expiry_secs: u64,
}

/// Default of `--joined-host-expiry-secs`: one day.
pub const DEFAULT_JOINED_HOST_EXPIRY_SECS: u64 = 86_400;

impl ServerConfig {
    pub fn local(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            api_addr: "127.0.0.1:7070".parse().expect("static address"),
            dns_addr: "127.0.0.1:8053".parse().expect("static address"),
            zone: "pgfleet.internal".into(),
            store_url: format!("sqlite:{}", data_dir.join("pgfleet.db").display()),
            data_dir,
            dns_ttl_secs: 1,
            heartbeat_interval_ms: 200,
            host_timeout_ms: 2000,
            step_timeout_ms: 120_000,
            tls: false,
            tls_cert: None,
            tls_key: None,
            ca: Default::default(),
            host_cert_validity_secs: crate::tls::DEFAULT_HOST_CERT_SECS,
            joined_host_expiry_secs: DEFAULT_JOINED_HOST_EXPIRY_SECS,
        }
    }
}
