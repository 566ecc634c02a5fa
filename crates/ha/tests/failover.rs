//! Failover scenarios: crash, partitions, quorum, priorities, rejoin, aborts.

mod common;

use common::{names, Sim};
use pgfleet_ha::{health, Action, Event, NodeState::*, PromotionReason};

/// Three nodes; the primary crashes; n2 is the most advanced and is promoted.
fn crash_primary_with_n2_ahead() -> Sim {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.write(5_000);
    sim.run(400);
    sim.k("n0").alive = false;
    // n2 had received a little more WAL than n1 before the crash.
    sim.k("n1").lsn = 4_000;
    sim.k("n2").lsn = 5_000;
    sim
}

#[test]
fn primary_crash_fails_over_to_most_advanced_standby() {
    let mut sim = crash_primary_with_n2_ahead();
    sim.run(1_800);
    assert!(
        sim.state.transition.is_none(),
        "no failover before failure_timeout"
    );
    sim.run(400);
    let tr = sim.state.transition.clone().expect("failover started");
    assert_eq!(tr.old_primary, "n0");
    sim.run(1_000);
    sim.expect(&[("n0", Demoted), ("n2", Primary), ("n1", Secondary)]);
    assert_eq!(sim.state.primary.as_deref(), Some("n2"));
    assert_eq!(sim.sync(), (names(&["n1"]), 1));
    assert_eq!(
        sim.state.assignment("n1").unwrap().primary.as_deref(),
        Some("n2")
    );

    // Order: demote + fence before report_lsn, before promote.
    let pos = |f: &dyn Fn(&Action) -> bool| sim.log.iter().position(f).unwrap();
    let demote = pos(&|a| matches!(a, Action::Assign(a) if a.node == "n0" && a.state == Demoted));
    let fence = pos(&|a| matches!(a, Action::Fence { node } if node == "n0"));
    let report = pos(&|a| matches!(a, Action::Assign(a) if a.state == ReportLsn));
    let promote = pos(&|a| matches!(a, Action::Assign(a) if a.state == Promote));
    assert!(demote < fence && fence < report && report < promote);
    assert_eq!(
        sim.assignments_of("n1"),
        vec![WaitStandby, Catchingup, Secondary, ReportLsn, Secondary]
    );
    assert!(!sim.assignments_of("n1").contains(&Promote));

    match sim.primary_changes().as_slice() {
        [Action::PrimaryChanged {
            old,
            new,
            reason,
            generation,
            old_lsn,
            new_lsn,
        }] => {
            assert_eq!(old.as_deref(), Some("n0"));
            assert_eq!(new, "n2");
            assert_eq!(*reason, PromotionReason::Failover);
            assert_eq!(*generation, sim.state.assignment("n2").unwrap().generation);
            assert_eq!(*old_lsn, Some(5_000));
            assert_eq!(*new_lsn, 5_000);
        }
        other => panic!("expected one PrimaryChanged, got {other:?}"),
    }
    let h = health(&sim.state, sim.now, &sim.cfg);
    assert_eq!(h.primary.as_deref(), Some("n2"));
    assert_eq!(h.writable_nodes, names(&["n2"]));
    assert!(!h.failover_in_progress);
}

#[test]
fn old_primary_rejoins_as_standby() {
    let mut sim = crash_primary_with_n2_ahead();
    sim.run(4_000);
    assert_eq!(sim.state.primary.as_deref(), Some("n2"));
    sim.run(2_000);
    sim.expect(&[("n0", Demoted)]);

    sim.k("n0").alive = true;
    sim.run(1_000);
    sim.expect(&[("n0", Secondary), ("n1", Secondary), ("n2", Primary)]);
    assert_eq!(
        sim.assignments_of("n0"),
        vec![Single, WaitPrimary, Primary, Demoted, Catchingup, Secondary]
    );
    assert_eq!(
        sim.state.assignment("n0").unwrap().primary.as_deref(),
        Some("n2")
    );
    assert_eq!(sim.sync(), (names(&["n0", "n1"]), 1));
    assert_eq!(sim.primary_changes().len(), 1);
}

#[test]
fn monitor_side_partition_does_not_fail_over() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.k("n0").visible = false; // the monitor cannot reach n0, standbys can
    sim.run(10_000);
    assert!(sim.state.transition.is_none());
    sim.expect(&[("n0", Primary)]);
    assert!(sim.primary_changes().is_empty());
    let h = health(&sim.state, sim.now, &sim.cfg);
    assert!(
        h.degraded_reasons
            .iter()
            .any(|r| r.contains("standbys still stream")),
        "{h:?}"
    );
    sim.k("n0").visible = true;
    sim.run(400);
    assert!(!health(&sim.state, sim.now, &sim.cfg).degraded);
}

#[test]
fn successful_health_checks_keep_the_primary_alive() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.k("n0").visible = false; // keeper silent ...
    sim.k("n1").link = false; // ... and no standby streams
    for _ in 0..30 {
        sim.run(200);
        let now = sim.now;
        sim.apply(Event::HealthCheck {
            node: "n0".into(),
            ok: true,
            refused: false,
            now_ms: now,
        })
        .unwrap();
    }
    assert!(sim.state.transition.is_none());
    sim.expect(&[("n0", WaitPrimary), ("n1", Catchingup)]);
    // The keeper is reachable again and n1 streams again: back to sync.
    sim.k("n0").visible = true;
    sim.k("n1").link = true;
    sim.run(1_000);
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
    assert!(sim.primary_changes().is_empty());
}

#[test]
fn not_enough_standbys_reporting_blocks_promotion() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.k("n0").alive = false;
    sim.k("n2").alive = false; // crashes together with the primary
    sim.run(8_000);
    let tr = sim.state.transition.clone().expect("failover started");
    assert!(
        tr.blocked.as_deref().unwrap().contains("sync quorum"),
        "{tr:?}"
    );
    assert!(!sim
        .log
        .iter()
        .any(|a| matches!(a, Action::Assign(a) if a.state == Promote)));
    let h = health(&sim.state, sim.now, &sim.cfg);
    assert!(h.failover_in_progress);
    assert!(h.degraded_reasons.iter().any(|r| r.contains("blocked")));
    assert_eq!(h.transition.unwrap().waiting_on, names(&["n2"]));

    // n2 comes back: it reports its LSN, quorum is met, failover completes.
    sim.k("n2").alive = true;
    sim.run(1_000);
    assert!(sim.state.transition.is_none());
    assert!(matches!(sim.state.primary.as_deref(), Some("n1" | "n2")));
}

#[test]
fn standby_lost_before_primary_is_not_needed_for_quorum() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.k("n2").alive = false;
    sim.run(3_000); // n2 dropped from the sync set, n0 applied it
    assert_eq!(sim.sync(), (names(&["n1"]), 1));
    sim.k("n0").alive = false;
    sim.run(4_000);
    assert_eq!(sim.state.primary.as_deref(), Some("n1"));
    sim.expect(&[("n1", WaitPrimary), ("n2", Catchingup)]);
}

#[test]
fn priority_zero_is_never_promoted_but_can_feed_the_candidate() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 0), ("n2", 50)]);
    sim.write(1_000);
    sim.run(400);
    sim.k("n0").alive = false;
    sim.k("n1").lsn = 1_000;
    sim.k("n2").lsn = 900; // the promotable standby is behind
    sim.run(6_000);
    assert_eq!(sim.state.primary.as_deref(), Some("n2"));
    assert!(!sim.assignments_of("n1").contains(&Promote));
    assert!(sim.assignments_of("n2").contains(&FastForward));
    let ff = sim.log.iter().find_map(|a| match a {
        Action::Assign(a) if a.state == FastForward => Some(a.primary.clone()),
        _ => None,
    });
    assert_eq!(ff, Some(Some("n1".to_string())));
    sim.expect(&[("n1", Secondary), ("n2", Primary)]);
}

#[test]
fn only_priority_zero_standbys_means_no_failover() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 0)]);
    sim.k("n0").alive = false;
    sim.run(6_000);
    assert!(sim.state.transition.is_none());
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
    let h = health(&sim.state, sim.now, &sim.cfg);
    assert!(
        h.degraded_reasons.iter().any(|r| r.contains("has failed")),
        "{h:?}"
    );
}

#[test]
fn failover_aborted_when_old_primary_returns_while_blocked() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.k("n0").visible = false;
    sim.k("n2").alive = false;
    sim.k("n1").link = false; // nobody streams, so n0 looks failed
    sim.run(4_000);
    assert!(sim
        .state
        .transition
        .as_ref()
        .is_some_and(|t| t.blocked.is_some()));
    // n0 never saw `demoted` (keeper unreachable) and is reachable again.
    sim.k("n0").apply = false;
    sim.k("n0").visible = true;
    sim.run(200);
    assert!(sim.state.transition.is_none());
    assert!(sim
        .log
        .iter()
        .any(|a| matches!(a, Action::TransitionAborted { .. })));
    assert_eq!(sim.state.primary.as_deref(), Some("n0"));
    assert!(sim.assigned("n0").is_writable());
    sim.k("n0").apply = true;
    sim.k("n1").link = true;
    sim.run(1_000);
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
}

#[test]
fn failover_aborted_when_old_primary_returns_before_promotion() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.k("n0").visible = false;
    sim.k("n1").link = false;
    sim.run(2_200);
    sim.expect(&[("n0", Demoted), ("n1", ReportLsn)]);
    sim.k("n0").visible = true; // back, and its keeper had not applied `demoted`
    sim.k("n0").apply = false;
    sim.run(200);
    assert!(sim.state.transition.is_none());
    sim.expect(&[("n0", WaitPrimary), ("n1", Catchingup)]);
    sim.k("n0").apply = true;
    sim.k("n1").link = true;
    sim.run(600);
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
    assert!(sim.primary_changes().is_empty());
}

#[test]
fn fenced_old_primary_does_not_stop_the_failover() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.k("n0").visible = false;
    sim.k("n1").link = false;
    sim.k("n1").visible = false; // n1 cannot report yet
    sim.run(2_000);
    sim.k("n1").visible = true;
    sim.run(200);
    sim.expect(&[("n0", Demoted), ("n1", ReportLsn)]);
    sim.k("n1").visible = false;
    sim.k("n0").visible = true; // n0 applies `demoted` and says so
    sim.run(200);
    sim.expect(&[("n0", Demoted)]);
    sim.k("n1").visible = true;
    sim.run(600);
    assert_eq!(sim.state.primary.as_deref(), Some("n1"));
}

/// Found on a loaded machine: the standbys' streams broke a moment before the
/// primary's last sign of life reached the monitor. For a failure timeout
/// the dead primary still looked alive, and the standbys were demoted out
/// of the sync set, leaving no candidate. They must stay candidates.
#[test]
fn standbys_losing_the_stream_just_before_the_primary_dies_stay_candidates() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.write(5_000);
    sim.run(400);
    sim.k("n1").link = false;
    sim.k("n2").link = false;
    sim.run(300);
    sim.k("n0").alive = false;
    sim.run(4_000);
    let primary = sim.state.primary.clone().expect("a primary");
    assert_ne!(primary, "n0", "a standby was promoted");
    assert_eq!(sim.assigned("n0"), Demoted);
}

/// A standby whose stream stays broken while the primary keeps running
/// leaves the sync set (commits must not block on it forever).
#[test]
fn a_standby_broken_while_the_primary_lives_leaves_the_sync_set() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.write(5_000);
    sim.run(400);
    sim.k("n1").link = false;
    sim.run(6_000);
    assert_eq!(sim.state.primary.as_deref(), Some("n0"));
    assert_eq!(sim.sync(), (names(&["n2"]), 1));
    assert_ne!(sim.assigned("n1"), Secondary);
}

/// A promoted standby is writable from the moment it leaves recovery: it
/// must be synchronous from then on, not from when the failover finishes,
/// so nothing it acknowledges in between lives on it alone.
#[test]
fn the_candidate_is_promoted_under_a_synchronous_setting() {
    let mut sim = crash_primary_with_n2_ahead();
    sim.run(3_400);
    let promote = sim
        .log
        .iter()
        .find_map(|a| match a {
            Action::Assign(a) if a.node == "n2" && a.state == Promote => Some(a.clone()),
            _ => None,
        })
        .expect("n2 was assigned promote");
    assert_eq!(promote.sync_standbys, names(&["n1"]));
    assert_eq!(promote.sync_quorum, 1);
    // Its standby follows it from the promote assignment on (cascading until
    // the promotion ends), not only once the failover finished.
    let follow = sim
        .log
        .iter()
        .position(|a| {
            matches!(a, Action::Assign(a) if a.node == "n1" && a.state == Secondary
                && a.primary.as_deref() == Some("n2") && a.generation > promote.generation)
        })
        .expect("n1 follows n2");
    let primary = sim
        .log
        .iter()
        .position(|a| matches!(a, Action::Assign(a) if a.node == "n2" && a.state == Primary))
        .expect("n2 primary");
    assert!(follow < primary, "n1 was pointed at n2 only at finish");
    // Once primary, a failover away from it still counts the setting it was
    // promoted under until it confirmed a newer one.
    assert_eq!(sim.state.primary.as_deref(), Some("n2"));
    assert!(sim.state.nodes["n2"]
        .sync_history
        .iter()
        .all(|e| e.generation >= promote.generation));
}
