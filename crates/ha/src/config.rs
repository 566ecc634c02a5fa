//! Tunables of the decision core.
//!
//! All durations are in milliseconds of the driver's clock (the `now_ms` carried by
//! every [`crate::Event`]); all sizes are in bytes of WAL.

use serde::{Deserialize, Serialize};

use crate::error::HaError;

/// Configuration of the monitor's decision core. `Config::default()` is the product default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// A node is considered gone when the monitor has had no evidence that its
    /// PostgreSQL is up (keeper report with `pg_running`, or a successful health
    /// check) for this long. Also the window in which a standby's "I am streaming"
    /// report counts as proof that the primary is alive. Default 2000.
    pub failure_timeout_ms: u64,
    /// How often keepers are expected to report and how often the driver should send
    /// `Event::Tick`. Used for "report is late" warnings in [`crate::health`]. Default 200.
    pub report_interval_ms: u64,
    /// A standby whose reported LSN is within this many bytes of the primary's
    /// last reported LSN (same timeline) is "caught up" (`catchingup` -> `secondary`).
    /// Default 16 MiB.
    pub catchup_lag_bytes: u64,
    /// During a failover, how long to wait for *every* reachable standby to report
    /// its final LSN before deciding with the reports at hand (the sync quorum rule
    /// is never relaxed by this timeout). Default 5000.
    pub report_lsn_timeout_ms: u64,
    /// A switchover that has not reached the promotion step after this long is
    /// aborted (old primary becomes writable again). Default 30000.
    pub switchover_timeout_ms: u64,
    /// Detection with evidence: a primary whose PostgreSQL port has refused
    /// every health check (nothing listens) for this long, whose keeper has
    /// been silent as long, and from which no standby reports streaming, has
    /// failed without waiting for `failure_timeout_ms`. A host that is slow,
    /// saturated or paused never refuses connections, so it still gets the
    /// whole `failure_timeout_ms`. Capped at `failure_timeout_ms`; 0 turns it
    /// off. Default 600.
    pub refused_failure_ms: u64,
    /// A standby's "I am streaming" counts as proof that its upstream is
    /// alive only while its WAL receiver heard from it (WAL or keepalive)
    /// within this long (`KeeperReport::upstream_silent_ms`). An alive
    /// upstream is heard at least every half `wal_receiver_timeout` (the
    /// receiver asks for a keepalive then; 1 s here), while a frozen or cut
    /// one is not: without this bound its standbys say "streaming" until
    /// their receivers time out. Capped at `failure_timeout_ms`; 0 turns it
    /// off (a streaming report counts for the whole failure timeout).
    /// Default 1500.
    pub stream_silence_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            failure_timeout_ms: 2000,
            report_interval_ms: 200,
            catchup_lag_bytes: 16 * 1024 * 1024,
            report_lsn_timeout_ms: 5000,
            switchover_timeout_ms: 30_000,
            refused_failure_ms: 600,
            stream_silence_ms: 1500,
        }
    }
}

impl Config {
    /// Checks the relations between the values. [`crate::step`] calls it on every event.
    pub fn validate(&self) -> Result<(), HaError> {
        if self.report_interval_ms == 0 {
            return Err(HaError::InvalidConfig(
                "report_interval_ms must be > 0".into(),
            ));
        }
        if self.failure_timeout_ms < 2 * self.report_interval_ms {
            return Err(HaError::InvalidConfig(
                "failure_timeout_ms must be at least 2 * report_interval_ms".into(),
            ));
        }
        if self.switchover_timeout_ms < self.failure_timeout_ms {
            return Err(HaError::InvalidConfig(
                "switchover_timeout_ms must be >= failure_timeout_ms".into(),
            ));
        }
        Ok(())
    }

    /// How long a standby's upstream may have been silent for its stream
    /// to still count as proof that the upstream is alive (`None`: no bound).
    pub(crate) fn stream_silence_window_ms(&self) -> Option<u64> {
        (self.stream_silence_ms > 0).then(|| self.stream_silence_ms.min(self.failure_timeout_ms))
    }

    /// How long refusals must last before they count as a failure (0: never).
    pub(crate) fn refused_window_ms(&self) -> Option<u64> {
        (self.refused_failure_ms > 0).then(|| self.refused_failure_ms.min(self.failure_timeout_ms))
    }

    /// `true` when `then` is within `failure_timeout_ms` of `now`.
    pub(crate) fn recent(&self, now: u64, then: Option<u64>) -> bool {
        match then {
            Some(t) => now.saturating_sub(t) <= self.failure_timeout_ms,
            None => false,
        }
    }
}
