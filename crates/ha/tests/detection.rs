//! Detection with evidence (`Config::refused_failure_ms`): a primary whose
//! PostgreSQL port refuses connections while its keeper is silent and no
//! standby streams is failed over well before `failure_timeout_ms`; a primary
//! that is only slow or paused (probes time out), or whose keeper still
//! reports, or from which a standby still streams, is not.

mod common;

use common::Sim;
use pgfleet_ha::{Event, NodeState::*};

#[derive(Clone, Copy, PartialEq)]
enum Probe {
    Ok,
    Refused,
    TimedOut,
}

/// Runs `ms` in report intervals; after each, the monitor probes n0 with
/// the given outcome and the other nodes successfully.
fn run_probing(sim: &mut Sim, ms: u64, n0: Probe) {
    let end = sim.now + ms;
    while sim.now < end {
        sim.run(sim.cfg.report_interval_ms);
        let names: Vec<String> = sim.keepers.keys().cloned().collect();
        for node in names {
            let outcome = if node == "n0" { n0 } else { Probe::Ok };
            let now = sim.now;
            sim.apply(Event::HealthCheck {
                node,
                ok: outcome == Probe::Ok,
                refused: outcome == Probe::Refused,
                now_ms: now,
            })
            .unwrap();
        }
    }
}

fn cluster() -> Sim {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.write(5_000);
    run_probing(&mut sim, 400, Probe::Ok);
    sim
}

/// The host was killed: its port refuses, its keeper is silent, the
/// standbys lost their stream. The failover starts after
/// `refused_failure_ms` (600), not `failure_timeout_ms` (2000), and ends
/// with a promoted standby as usual.
#[test]
fn a_killed_primary_is_failed_over_after_the_refusal_window() {
    let mut sim = cluster();
    sim.k("n0").alive = false;
    run_probing(&mut sim, 400, Probe::Refused);
    assert!(sim.state.transition.is_none(), "not before 600 ms");
    run_probing(&mut sim, 600, Probe::Refused);
    let tr = sim
        .state
        .transition
        .clone()
        .expect("failover started early");
    assert_eq!(tr.old_primary, "n0");
    run_probing(&mut sim, 1_000, Probe::Refused);
    assert_ne!(sim.state.primary.as_deref(), Some("n0"));
    assert_eq!(sim.assigned("n0"), Demoted);
    assert_eq!(sim.primary_changes().len(), 1);
}

/// A frozen or partitioned host answers nothing: probes time out. That is
/// what a saturated host looks like too, so it gets the whole failure
/// timeout.
#[test]
fn a_primary_whose_probes_time_out_gets_the_whole_failure_timeout() {
    let mut sim = cluster();
    sim.k("n0").alive = false;
    run_probing(&mut sim, 1_800, Probe::TimedOut);
    assert!(sim.state.transition.is_none());
    run_probing(&mut sim, 600, Probe::TimedOut);
    assert!(
        sim.state.transition.is_some(),
        "failure timeout still applies"
    );
}

/// PostgreSQL restarting under a live keeper (a configuration change, a
/// crash the keeper restarts): the port refuses for a moment but the
/// keeper keeps reporting, so no failover.
#[test]
fn refusals_while_the_keeper_reports_are_not_a_failure() {
    let mut sim = cluster();
    sim.k("n1").link = false;
    sim.k("n2").link = false;
    run_probing(&mut sim, 1_600, Probe::Refused);
    assert!(sim.state.transition.is_none());
    assert_eq!(sim.state.primary.as_deref(), Some("n0"));
    assert!(sim.primary_changes().is_empty());
}

/// A standby still streaming from the primary proves it alive whatever the
/// monitor's probes say (the monitor alone is cut off, with a firewall that
/// rejects): no failover, as for a plain monitor-side partition.
#[test]
fn a_streaming_standby_vetoes_the_refusal_evidence() {
    let mut sim = cluster();
    sim.k("n0").visible = false;
    run_probing(&mut sim, 3_000, Probe::Refused);
    assert!(sim.state.transition.is_none());
    assert!(sim.primary_changes().is_empty());
}

/// One refusal between successful probes (a restart the monitor caught
/// mid-way) starts no clock: only an unbroken run of refusals counts.
#[test]
fn interrupted_refusals_start_over() {
    let mut sim = cluster();
    sim.k("n0").visible = false;
    sim.k("n1").link = false;
    sim.k("n2").link = false;
    for _ in 0..4 {
        run_probing(&mut sim, 400, Probe::Refused);
        run_probing(&mut sim, 200, Probe::Ok);
    }
    assert!(sim.state.transition.is_none());
    assert_eq!(sim.state.primary.as_deref(), Some("n0"));
}

/// 0 turns the fast path off.
#[test]
fn zero_turns_detection_with_evidence_off() {
    let mut sim = cluster();
    sim.cfg.refused_failure_ms = 0;
    sim.k("n0").alive = false;
    run_probing(&mut sim, 1_800, Probe::Refused);
    assert!(sim.state.transition.is_none());
}

/// Runs until a failover has started (or `limit` ms passed); returns how
/// long after `since` it started.
fn failover_started_after(sim: &mut Sim, since: u64, limit: u64) -> Option<u64> {
    while sim.now < since + limit {
        run_probing(sim, sim.cfg.report_interval_ms, Probe::TimedOut);
        if sim.state.transition.is_some() {
            return Some(sim.now - since);
        }
    }
    None
}

/// A frozen primary (SIGSTOP, or cut from everyone) sends nothing, but its
/// standbys' receivers say "streaming" until `wal_receiver_timeout`. Their
/// reports also say how long the receiver has heard nothing, so the
/// stream stops vouching for the primary after `stream_silence_ms`: the
/// failover starts when the failure timeout ends, not when the receivers
/// time out and report it.
#[test]
fn a_silent_stream_does_not_vouch_for_a_frozen_primary() {
    let mut sim = cluster();
    let frozen_at = sim.now;
    sim.k("n0").silent_since = Some(frozen_at);
    let started = failover_started_after(&mut sim, frozen_at, 5_000).expect("failover");
    assert!(
        started <= sim.cfg.failure_timeout_ms + sim.cfg.report_interval_ms,
        "failover started {started} ms after the freeze"
    );
    run_probing(&mut sim, 3_000, Probe::TimedOut);
    assert_ne!(sim.state.primary.as_deref(), Some("n0"));
    assert_eq!(sim.primary_changes().len(), 1);

    // Without the bound the stream vouches until the receivers time out
    // and report it: later.
    let mut old = cluster();
    old.cfg.stream_silence_ms = 0;
    let frozen_at = old.now;
    old.k("n0").silent_since = Some(frozen_at);
    let later = failover_started_after(&mut old, frozen_at, 5_000).expect("failover");
    assert!(later > started, "{later} ms vs {started} ms");
}

/// The monitor alone lost the primary (its probes time out, no reports)
/// while the standbys still hear from it (keepalives at least every half
/// receiver timeout): the stream keeps vouching and nothing fails over.
#[test]
fn a_stream_that_still_hears_its_primary_vouches_for_it() {
    let mut sim = cluster();
    sim.k("n0").visible = false;
    let since = sim.now;
    assert_eq!(failover_started_after(&mut sim, since, 6_000), None);
    assert_eq!(sim.state.primary.as_deref(), Some("n0"));
}
