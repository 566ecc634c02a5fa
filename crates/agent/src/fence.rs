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
//! Silence is what the node *found* when it tried, not time in which it did
//! not try: a keeper whose process was paused (SIGSTOP, a stalled VM, a
//! host too busy to schedule it) heard nobody during the pause only because
//! it asked nobody. So a fence also needs a report to the monitor that got
//! no answer, begun after the monitor was last heard and not itself
//! stretched by a pause (it ended within [`ATTEMPT_LIMIT`] of its start),
//! and a look at `pg_stat_replication` made after that report began that
//! found no streaming standby. A paused keeper that wakes up asks again
//! first; its monitor and standbys answer, and nothing is stopped.
//!
//! A fenced primary resumes only when the monitor answers again: the
//! monitor's answer is its current assignment, and it assigns another node
//! `promote` only after this one was assigned `demoted`, so an answer that
//! still says primary means no failover was decided.

use std::time::{Duration, Instant};

/// The longest a report to the monitor may take for its failure to count as
/// silence: the report's own timeout plus slack for a busy host. One that
/// took longer was paused part of the way, and proves nothing.
pub const ATTEMPT_LIMIT: Duration =
    Duration::from_millis(crate::keeper::REPORT_TIMEOUT.as_millis() as u64 + 400);

/// What the keeper knows about whom it has heard from, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceWatch {
    /// What the node watches: the monitor's address and port while it is a
    /// primary of an HA database (`None` otherwise).
    watching: Option<String>,
    since: Instant,
    last_monitor_contact: Option<Instant>,
    last_standby_seen: Option<Instant>,
    /// The last report that got no answer: when it began and ended.
    last_unanswered: Option<(Instant, Instant)>,
    /// When the last look at the standbys found none streaming.
    last_no_standby: Option<Instant>,
    fenced: bool,
}

impl FenceWatch {
    pub fn new(now: Instant) -> FenceWatch {
        FenceWatch {
            watching: None,
            since: now,
            last_monitor_contact: None,
            last_standby_seen: None,
            last_unanswered: None,
            last_no_standby: None,
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
            self.last_unanswered = None;
            self.last_no_standby = None;
            self.fenced = false;
        }
    }

    /// The monitor answered with the node's current assignment.
    pub fn monitor_answered(&mut self, now: Instant) {
        self.last_monitor_contact = Some(now);
        self.fenced = false;
    }

    /// A report to the monitor, begun at `started`, got no answer by `ended`.
    pub fn monitor_unanswered(&mut self, started: Instant, ended: Instant) {
        self.last_unanswered = Some((started, ended));
    }

    /// A look at the standbys, made at `at`: whether one streams from this
    /// primary.
    pub fn standbys_seen(&mut self, at: Instant, streaming: bool) {
        if streaming {
            self.last_standby_seen = Some(at);
        } else {
            self.last_no_standby = Some(at);
        }
    }

    /// Whether, by what the node last heard, both the monitor and every
    /// standby have been silent longer than `timeout` (the cue to look at
    /// the standbys afresh before [`FenceWatch::decide`]).
    pub fn silent(&self, now: Instant, timeout: Duration) -> bool {
        let silent = |last: Option<Instant>| {
            let heard = last.map_or(self.since, |at| at.max(self.since));
            now.saturating_duration_since(heard) > timeout
        };
        self.watching.is_some()
            && silent(self.last_monitor_contact)
            && silent(self.last_standby_seen)
    }

    /// Decides whether the node must be fenced now; returns true when it
    /// has just become fenced (for a log line).
    pub fn decide(&mut self, now: Instant, timeout: Duration) -> bool {
        if self.fenced || !self.silent(now, timeout) {
            return false;
        }
        let heard = self
            .last_monitor_contact
            .unwrap_or(self.since)
            .max(self.since);
        // Tried and found silence: a report begun after the monitor was last
        // heard, not stretched by a pause, and a look at the standbys since.
        let tried = self.last_unanswered.is_some_and(|(started, ended)| {
            started >= heard
                && ended.saturating_duration_since(started) <= ATTEMPT_LIMIT
                && self.last_no_standby.is_some_and(|at| at >= started)
        });
        if tried {
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

    fn ms(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn secs(start: Instant, s: u64) -> Instant {
        ms(start, s * 1000)
    }

    /// One keeper cycle that finds nobody: a report unanswered after
    /// `took` ms, then a look at the standbys that finds none.
    fn cycle_finds_nobody(watch: &mut FenceWatch, at: Instant, took: u64) -> bool {
        watch.monitor_unanswered(at, at + Duration::from_millis(took));
        let end = at + Duration::from_millis(took);
        watch.standbys_seen(end, false);
        watch.decide(end, TIMEOUT)
    }

    #[test]
    fn a_database_made_ha_long_after_creation_is_not_fenced_at_once() {
        let start = Instant::now();
        let mut watch = FenceWatch::new(start);
        // Standalone for a minute: nothing to watch, never fenced.
        assert!(!cycle_finds_nobody(&mut watch, secs(start, 60), 10));
        // The first replica is added: the monitor is not up yet.
        watch.watch(Some("127.0.0.4:7071".into()), secs(start, 60));
        assert!(!cycle_finds_nobody(&mut watch, secs(start, 61), 10));
        assert!(!watch.fenced());
        // Still nobody after the timeout: fenced.
        assert!(cycle_finds_nobody(&mut watch, secs(start, 63), 10));
        assert!(watch.fenced());
    }

    #[test]
    fn either_the_monitor_or_a_standby_keeps_the_primary_writable() {
        let start = Instant::now();
        let mut watch = FenceWatch::new(start);
        watch.watch(Some("m".into()), start);
        watch.monitor_answered(secs(start, 1));
        watch.standbys_seen(secs(start, 5), true);
        assert!(!watch.decide(secs(start, 6), TIMEOUT), "a standby streams");
        watch.monitor_answered(secs(start, 9));
        assert!(
            !watch.decide(secs(start, 10), TIMEOUT),
            "the monitor answers"
        );
        assert!(
            cycle_finds_nobody(&mut watch, secs(start, 12), 800),
            "nobody for 3 s"
        );
        // Stays fenced while nobody answers, even if a standby reconnects
        // (it may already follow a new primary's timeline).
        watch.standbys_seen(secs(start, 13), true);
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
        assert!(cycle_finds_nobody(&mut watch, secs(start, 3), 10));
        watch.watch(Some("m2".into()), secs(start, 10));
        assert!(!watch.fenced(), "a new monitor: start over");
        assert!(!cycle_finds_nobody(&mut watch, secs(start, 11), 10));
        watch.watch(None, secs(start, 11));
        assert!(
            !cycle_finds_nobody(&mut watch, secs(start, 30), 10),
            "not a primary"
        );
    }

    /// The chaos run's stall-primary-agent round (CI, stop 21): the agent
    /// stopped 1.5 s of every 2 s fenced a healthy primary, because time it
    /// spent stopped counted as silence. Silence counts only when sought.
    #[test]
    fn a_keeper_paused_longer_than_the_timeout_asks_again_before_fencing() {
        let start = Instant::now();
        let mut watch = FenceWatch::new(start);
        watch.watch(Some("m".into()), start);
        watch.monitor_answered(ms(start, 100));
        watch.standbys_seen(ms(start, 150), true);
        // A report begins at 0.4 s; the process stops until 3.9 s; the
        // report's timeout fires as it resumes.
        watch.monitor_unanswered(ms(start, 400), ms(start, 3_900));
        assert!(watch.silent(ms(start, 3_900), TIMEOUT));
        // Even before the fresh look at the standbys, no fence: the report
        // was stretched by the pause.
        watch.standbys_seen(ms(start, 3_900), false);
        assert!(!watch.decide(ms(start, 3_900), TIMEOUT));
        // Nor on silence without any attempt since the monitor was heard.
        let mut idle = FenceWatch::new(start);
        idle.watch(Some("m".into()), start);
        idle.monitor_answered(ms(start, 100));
        idle.standbys_seen(ms(start, 3_900), false);
        assert!(!idle.decide(ms(start, 3_900), TIMEOUT));
        // The fresh look finds a standby streaming: no fence either.
        watch.standbys_seen(ms(start, 3_950), true);
        assert!(!cycle_finds_nobody(&mut watch, ms(start, 3_960), 5));
        assert!(!watch.fenced());
    }

    #[test]
    fn a_stale_look_at_the_standbys_is_no_evidence() {
        let start = Instant::now();
        let mut watch = FenceWatch::new(start);
        watch.watch(Some("m".into()), start);
        watch.monitor_answered(ms(start, 100));
        // The last look (no standby) predates the report that failed.
        watch.standbys_seen(ms(start, 2_000), false);
        watch.monitor_unanswered(ms(start, 2_500), ms(start, 3_300));
        assert!(!watch.decide(ms(start, 3_300), TIMEOUT));
        watch.standbys_seen(ms(start, 3_310), false);
        assert!(
            watch.decide(ms(start, 3_310), TIMEOUT),
            "found nobody, afresh"
        );
    }
}
