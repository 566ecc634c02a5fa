//! Settings of the control plane, validated once at start
//! ([`ServerConfig::validate`], called by `start`): an invalid value stops
//! the control plane with an error that names its flag.

use std::net::SocketAddr;
use std::path::PathBuf;

use pgfleet_core::settings::SettingError;

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
    /// Timeouts and limits on the API's connections.
    pub http: pgfleet_tls::HttpLimits,
    /// A host that joined but never sent a heartbeat is forgotten after
    /// this long (`--joined-host-expiry-secs`).
    pub joined_host_expiry_secs: u64,
    /// `--dns-update rfc2136://SERVER:PORT/ZONE`: also publish the zone's
    /// records to that server by RFC 2136 (`dns_sync::rfc2136`).
    pub dns_update: Option<String>,
    /// `--dns-update-key`: the TSIG key file (BIND's format, mode 0600).
    pub dns_update_key: Option<PathBuf>,
    /// A monitor whose host has been lost for this long is replaced
    /// (`--monitor-replace-after-secs`).
    pub monitor_replace_after_secs: u64,
    /// A replica whose WAL receiver has not streamed for this long is
    /// alerted (`replica_not_streaming`; `--alert-not-streaming-secs`).
    pub alert_not_streaming_secs: u64,
}

/// Default of `--monitor-replace-after-secs`.
pub const DEFAULT_MONITOR_REPLACE_AFTER_SECS: u64 = 10;

/// Default of `--alert-not-streaming-secs`.
pub const DEFAULT_ALERT_NOT_STREAMING_SECS: u64 = 30;

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
            http: pgfleet_tls::HttpLimits::default(),
            joined_host_expiry_secs: DEFAULT_JOINED_HOST_EXPIRY_SECS,
            dns_update: None,
            dns_update_key: None,
            monitor_replace_after_secs: DEFAULT_MONITOR_REPLACE_AFTER_SECS,
            alert_not_streaming_secs: DEFAULT_ALERT_NOT_STREAMING_SECS,
        }
    }
}

impl ServerConfig {
    /// Checks every setting; the first invalid one is the error.
    pub fn validate(&self) -> Result<(), SettingError> {
        if let Err(error) = pgfleet_dns::ZoneHandle::try_new(&self.zone, self.dns_ttl_secs) {
            return Err(SettingError::new("--zone", &self.zone, error.to_string()));
        }
        let store_schemes = ["sqlite:", "postgres://", "postgresql://"];
        if !store_schemes
            .iter()
            .any(|scheme| self.store_url.starts_with(scheme))
        {
            return Err(SettingError::new(
                "--store",
                pgfleet_store::redacted(&self.store_url),
                "expected sqlite:PATH or postgres://USER:PASSWORD@HOST/DB",
            ));
        }
        if self.host_timeout_ms <= 2 * self.heartbeat_interval_ms {
            return Err(SettingError::new(
                "--host-timeout-ms",
                self.host_timeout_ms,
                format!(
                    "must be more than twice the agents' heartbeat interval ({} ms), or hosts flap to lost",
                    self.heartbeat_interval_ms
                ),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(SettingError::new(
                "--tls-cert",
                format!("{:?}", self.tls_cert),
                "--tls-cert and --tls-key go together",
            ));
        }
        if self.ca.cert.is_some() != self.ca.key.is_some() {
            return Err(SettingError::new(
                "--ca-cert",
                format!("{:?}", self.ca.cert),
                "--ca-cert and --ca-key go together",
            ));
        }
        if self.host_cert_validity_secs < 6 {
            return Err(SettingError::new(
                "--host-cert-validity-secs",
                self.host_cert_validity_secs,
                "must be at least 6",
            ));
        }
        crate::dns_sync::rfc2136::Target::from_config(self)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ServerConfig;

    #[test]
    fn invalid_settings_name_their_flag() {
        let valid = ServerConfig::local("/tmp/pgfleet-settings".into());
        assert!(valid.validate().is_ok());
        let mut config = valid.clone();
        config.host_timeout_ms = 0;
        assert_eq!(config.validate().unwrap_err().flag, "--host-timeout-ms");
        let mut config = valid.clone();
        config.zone = "a..b".into();
        assert_eq!(config.validate().unwrap_err().flag, "--zone");
        let mut config = valid;
        config.store_url = "mysql://root:secret@db/x".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("--store") && !error.contains("secret"),
            "{error}"
        );
    }
}
