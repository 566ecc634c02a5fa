//! Self-fencing of an HA primary, decided without I/O: a primary that has
//! heard neither from its monitor nor from any streaming standby for the
//! failure timeout stops accepting writes, because the monitor may be
//! promoting another node.
//!
//! Silence is counted only from the moment the node had a chance to hear
//! anyone: when it started watching (the database became HA, its monitor
//! moved, or the node became primary). A database made highly available
//! long after it was created must not count the time it had no monitor at
//! all as silence: that stopped the primary while its first replica was
//! being cloned from it.
//!
//! A fenced primary resumes only when the monitor answers again: the
//! monitor's answer is its current assignment, and it assigns another node
//! `promote` only after this one was assigned `demoted`, so an answer that
//! still says primary means no failover was decided.

use std::time::{Duration, Instant};

/// What the keeper knows about whom it has heard from, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceWatch {
    /// What the node watches: the monitor's address and port while it is a
    /// primary of an HA database (`None` otherwise).
    watching: Option<String>,
    since: Instant,
    last_monitor_contact: Option<Instant>,
    last_standby_seen: Option<Instant>,
    fenced: bool,
}

impl FenceWatch {
    pub fn new(now: Instant) -> FenceWatch {
        FenceWatch {
            watching: None,
            since: now,
            last_monitor_contact: None,
            last_standby_seen: None,
            fenced: false,
        }
    }

    /// The node is (or is not) a primary of an HA database watched by the
    /// monitor at `monitor`. A change starts a new watch: silence is
    /// counted from `now`.
    pub fn watch(&mut self, monitor: Option<String>, now: Instant) {
        if self.watching != monitor {
            self.watching = monitor;
            self.since = now;
            self.last_monitor_contact = None;
            self.last_standby_seen = None;
            self.fenced = false;
        }
    }

    /// The monitor answered with the node's current assignment.
    pub fn monitor_answered(&mut self, now: Instant) {
        self.last_monitor_contact = Some(now);
        self.fenced = false;
    }

    /// A standby streams from this primary.
    pub fn standby_streams(&mut self, now: Instant) {
        self.last_standby_seen = Some(now);
    }

    /// Decides whether the node must be fenced now; returns true when it
    /// has just become fenced (for a log line).
    pub fn decide(&mut self, now: Instant, timeout: Duration) -> bool {
        if self.watching.is_none() || self.fenced {
            return false;
        }
        let silent = |last: Option<Instant>| {
            let heard = last.map_or(self.since, |at| at.max(self.since));
            now.saturating_duration_since(heard) > timeout
        };
        if silent(self.last_monitor_contact) && silent(self.last_standby_seen) {
            self.fenced = true;
            return true;
        }
        false
    }

    pub fn fenced(&self) -> bool {
        self.fenced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    fn secs(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    #[test]
    fn a_database_made_ha_long_after_creation_is_not_fenced_at_once() {
        let start = Instant::now();
        let mut watch = FenceWatch::new(start);
        // Standalone for a minute: nothing to watch, never fenced.
        assert!(!watch.decide(secs(start, 60), TIMEOUT));
        // The first replica is added: the monitor is not up yet.
        watch.watch(Some("127.0.0.4:7071".into()), secs(start, 60));
        assert!(!watch.decide(secs(start, 61), TIMEOUT));
        assert!(!watch.fenced());
        // Still nobody after the timeout: fenced.
        assert!(watch.decide(secs(start, 63), TIMEOUT));
        assert!(watch.fenced());
    }

    #[test]
    fn either_the_monitor_or_a_standby_keeps_the_primary_writable() {
        let start = Instant::now();
        let mut watch = FenceWatch::new(start);
        watch.watch(Some("m".into()), start);
        watch.monitor_answered(secs(start, 1));
        watch.standby_streams(secs(start, 5));
        assert!(!watch.decide(secs(start, 6), TIMEOUT), "a standby streams");
        watch.monitor_answered(secs(start, 9));
        assert!(
            !watch.decide(secs(start, 10), TIMEOUT),
            "the monitor answers"
        );
        assert!(watch.decide(secs(start, 12), TIMEOUT), "nobody for 3 s");
        // Stays fenced while nobody answers, even if a standby reconnects
        // (it may already follow a new primary's timeline).
        watch.standby_streams(secs(start, 13));
        assert!(!watch.decide(secs(start, 13), TIMEOUT));
        assert!(watch.fenced());
        // The monitor's answer decides.
        watch.monitor_answered(secs(start, 14));
        assert!(!watch.fenced());
    }

    #[test]
    fn a_new_monitor_or_a_standby_starts_a_new_watch() {
        let start = Instant::now();
        let mut watch = FenceWatch::new(start);
        watch.watch(Some("m1".into()), start);
        assert!(watch.decide(secs(start, 3), TIMEOUT));
        watch.watch(Some("m2".into()), secs(start, 10));
        assert!(!watch.fenced(), "a new monitor: start over");
        assert!(!watch.decide(secs(start, 11), TIMEOUT));
        watch.watch(None, secs(start, 11));
        assert!(!watch.decide(secs(start, 30), TIMEOUT), "not a primary");
    }
}
