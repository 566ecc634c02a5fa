//! Agent settings, validated once at start ([`AgentConfig::validate`]):
//! an invalid value stops the agent with an error that names its flag.

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
    /// Port of the agent's DNS server (UDP and TCP) on `address`; 0 = off.
    pub dns_port: u16,
    /// How often keepers report to their monitor.
    pub keeper_interval_ms: u64,
    /// A node silent for this long is failed (monitor side).
    pub failure_timeout_ms: u64,
    /// Timeouts and limits on the agent endpoint's connections.
    pub http: pgfleet_tls::HttpLimits,
}

/// Default of `--dns-port`.
pub const DEFAULT_DNS_PORT: u16 = 8053;

/// Default of `--keeper-interval-ms`.
pub const DEFAULT_KEEPER_INTERVAL_MS: u64 = 100;

/// A setting the agent refuses to start with; the message names the flag.
pub type ConfigError = pgfleet_core::settings::SettingError;

/// The HA core's settings for a monitor run with these flags.
pub fn ha_config(keeper_interval_ms: u64, failure_timeout_ms: u64) -> pgfleet_ha::Config {
    pgfleet_ha::Config {
        failure_timeout_ms,
        report_interval_ms: keeper_interval_ms,
        ..pgfleet_ha::Config::default()
    }
}

/// Checks `--keeper-interval-ms` and `--failure-timeout-ms` against what the
/// HA core accepts (before, a monitor with bad values refused every event
/// and logged it at debug level only).
pub fn validate_ha_timing(
    keeper_interval_ms: u64,
    failure_timeout_ms: u64,
) -> Result<pgfleet_ha::Config, ConfigError> {
    if keeper_interval_ms == 0 {
        return Err(ConfigError::new(
            "--keeper-interval-ms",
            keeper_interval_ms,
            "must be more than 0",
        ));
    }
    let config = ha_config(keeper_interval_ms, failure_timeout_ms);
    if failure_timeout_ms < 2 * keeper_interval_ms {
        return Err(ConfigError::new(
            "--failure-timeout-ms",
            failure_timeout_ms,
            format!("must be at least twice --keeper-interval-ms ({keeper_interval_ms})"),
        ));
    }
    if failure_timeout_ms > config.switchover_timeout_ms {
        return Err(ConfigError::new(
            "--failure-timeout-ms",
            failure_timeout_ms,
            format!(
                "must be at most the switchover timeout ({} ms)",
                config.switchover_timeout_ms
            ),
        ));
    }
    config.validate().map_err(|error| {
        ConfigError::new(
            "--failure-timeout-ms",
            failure_timeout_ms,
            error.to_string(),
        )
    })?;
    Ok(config)
}

impl AgentConfig {
    /// Checks every setting; the first invalid one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        pgfleet_core::names::validate_name(&self.name)
            .map_err(|error| ConfigError::new("--name", &self.name, error.to_string()))?;
        if self.address.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(ConfigError::new(
                "--address",
                &self.address,
                "expected an IPv4 address such as 10.0.0.5",
            ));
        }
        if self.failure_domain.trim().is_empty() {
            return Err(ConfigError::new(
                "--failure-domain",
                &self.failure_domain,
                "must not be empty",
            ));
        }
        if !(self.server_url.starts_with("https://") || self.server_url.starts_with("http://")) {
            return Err(ConfigError::new(
                "--server",
                &self.server_url,
                "expected an https:// (or http://) URL",
            ));
        }
        validate_ha_timing(self.keeper_interval_ms, self.failure_timeout_ms)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_timing_errors_name_the_flag() {
        assert!(validate_ha_timing(100, 2000).is_ok());
        let zero = validate_ha_timing(100, 0).unwrap_err();
        assert_eq!(zero.flag, "--failure-timeout-ms");
        assert!(zero.to_string().starts_with("--failure-timeout-ms \"0\""));
        assert_eq!(
            validate_ha_timing(100, 60_000).unwrap_err().flag,
            "--failure-timeout-ms"
        );
        assert_eq!(
            validate_ha_timing(0, 2000).unwrap_err().flag,
            "--keeper-interval-ms"
        );
    }
}
