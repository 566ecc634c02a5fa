//! Planned switchover: happy path, refusals and aborts.

mod common;

use common::{names, Sim};
use pgfleet_ha::{health, Action, Event, HaError, NodeState::*, PromotionReason, TransitionKind};

fn switchover(sim: &mut Sim, target: &str) -> Result<Vec<Action>, HaError> {
    let now = sim.now;
    sim.apply(Event::Switchover {
        target: target.into(),
        now_ms: now,
    })
}

#[test]
fn switchover_happy_path() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.write(7_000);
    sim.run(400);
    switchover(&mut sim, "n1").unwrap();
    sim.expect(&[("n0", Draining), ("n1", Secondary)]);
    // The draining primary keeps replicating synchronously.
    assert_eq!(
        sim.state.assignment("n0").unwrap().sync_standbys,
        names(&["n1", "n2"])
    );
    assert!(health(&sim.state, sim.now, &sim.cfg).failover_in_progress);

    // Writes are refused by the keeper now; n0 reports draining at 7000.
    sim.report("n0");
    sim.expect(&[("n1", Promote)]); // n1 had already reported 7000
    sim.run(1_000);
    sim.expect(&[("n0", Secondary), ("n1", Primary), ("n2", Secondary)]);
    assert_eq!(
        sim.assignments_of("n0"),
        vec![
            Single,
            WaitPrimary,
            Primary,
            Draining,
            Catchingup,
            Secondary
        ]
    );
    assert_eq!(sim.assignments_of("n1").last(), Some(&Primary));
    assert!(sim.assignments_of("n1").contains(&Promote));
    // Synchronous throughout: n2 follows n1 from its promotion and stays in
    // its sync set; n1 is never an asynchronous `wait_primary`.
    assert!(!sim.assignments_of("n1").contains(&WaitPrimary));
    let n2 = sim.assignments_of("n2");
    let first_secondary = n2.iter().position(|s| *s == Secondary).unwrap();
    assert!(
        !n2[first_secondary..].contains(&Catchingup),
        "n2 left the sync set: {n2:?}"
    );
    assert_eq!(sim.sync(), (names(&["n0", "n2"]), 1));
    match sim.primary_changes().as_slice() {
        [Action::PrimaryChanged {
            old,
            new,
            reason,
            old_lsn,
            new_lsn,
            ..
        }] => {
            assert_eq!(old.as_deref(), Some("n0"));
            assert_eq!(new, "n1");
            assert_eq!(*reason, PromotionReason::Switchover);
            assert_eq!(*old_lsn, Some(7_000));
            assert!(*new_lsn >= 7_000);
        }
        other => panic!("{other:?}"),
    }
    assert!(!sim.log.iter().any(|a| matches!(a, Action::Fence { .. })));
}

#[test]
fn switchover_waits_for_target_to_reach_drain_lsn() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.k("n1").link = false; // n1 stops receiving (but is still "healthy" for a moment)
    sim.write(500);
    sim.report("n0");
    sim.report("n1");
    switchover(&mut sim, "n1").unwrap();
    sim.report("n0"); // drained at lsn L
    sim.report("n1"); // still behind L
    assert!(sim.assigned("n1") != Promote);
    sim.k("n1").link = true;
    sim.report("n1");
    sim.expect(&[("n1", Promote)]);
    sim.run(600);
    assert_eq!(sim.state.primary.as_deref(), Some("n1"));
}

#[test]
fn switchover_refusals() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    assert!(matches!(
        switchover(&mut sim, "zz"),
        Err(HaError::UnknownNode(_))
    ));
    assert!(matches!(
        switchover(&mut sim, "n0"),
        Err(HaError::TargetNotEligible { .. })
    ));

    sim.add("n2", 50); // not caught up yet
    assert!(matches!(
        switchover(&mut sim, "n2"),
        Err(HaError::TargetNotEligible { .. })
    ));

    sim.run(1_000);
    sim.k("n2").alive = false;
    sim.run(1_200); // still a secondary, but not heard from for a while
    sim.k("n2").alive = true;
    sim.k("n2").visible = false;
    sim.run(1_000);
    assert!(matches!(
        switchover(&mut sim, "n2"),
        Err(HaError::TargetNotEligible { .. })
    ));
    sim.k("n2").visible = true;
    sim.run(1_000);

    switchover(&mut sim, "n1").unwrap();
    assert_eq!(
        switchover(&mut sim, "n2"),
        Err(HaError::TransitionInProgress)
    );
    let now = sim.now;
    assert_eq!(
        sim.apply(Event::RemoveNode {
            node: "n2".into(),
            now_ms: now
        }),
        Err(HaError::TransitionInProgress)
    );
    assert_eq!(
        sim.apply(Event::RemoveNode {
            node: "n0".into(),
            now_ms: now
        }),
        Err(HaError::IsPrimary("n0".into()))
    );
}

#[test]
fn switchover_refused_when_primary_unhealthy() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.k("n0").visible = false;
    sim.run(2_400);
    assert!(matches!(
        switchover(&mut sim, "n1"),
        Err(HaError::PrimaryUnhealthy(_))
    ));
}

#[test]
fn switchover_aborts_when_target_dies_before_draining_completes() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.k("n0").visible = false; // n0 does not report `draining` for now
    switchover(&mut sim, "n1").unwrap();
    sim.k("n1").alive = false;
    sim.run(2_200);
    sim.k("n0").visible = true;
    sim.run(1_000);
    assert!(sim.state.transition.is_none());
    assert!(sim.log.iter().any(|a| matches!(
        a,
        Action::TransitionAborted {
            kind: TransitionKind::Switchover,
            ..
        }
    )));
    assert!(!sim
        .log
        .iter()
        .any(|a| matches!(a, Action::Assign(a) if a.state == Promote)));
    sim.expect(&[("n0", Primary), ("n1", Catchingup), ("n2", Secondary)]);
    assert!(sim.primary_changes().is_empty());
}

#[test]
fn switchover_rolls_back_when_target_dies_during_promotion() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.k("n1").alive = false; // dies right after its last report
    switchover(&mut sim, "n1").unwrap();
    sim.run(200);
    sim.expect(&[("n1", Promote), ("n0", Draining)]);
    sim.run(2_400);
    assert!(sim.state.transition.is_none());
    sim.expect(&[("n0", Primary), ("n1", Demoted), ("n2", Secondary)]);
    assert!(sim.primary_changes().is_empty());
    // n1 comes back: it confirms `demoted`, then rejoins behind n0.
    sim.k("n1").alive = true;
    sim.run(1_000);
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
    assert_eq!(sim.sync(), (names(&["n1", "n2"]), 1));
}

#[test]
fn switchover_times_out_if_primary_never_drains() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.k("n0").apply = false; // keeper ignores the draining order
    switchover(&mut sim, "n1").unwrap();
    sim.run(sim.cfg.switchover_timeout_ms + 400);
    assert!(sim.state.transition.is_none());
    sim.k("n0").apply = true;
    sim.run(400);
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
}

#[test]
fn primary_crash_during_switchover_becomes_failover() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.k("n0").alive = false;
    switchover(&mut sim, "n1").unwrap();
    sim.run(5_000);
    assert!(sim
        .log
        .iter()
        .any(|a| matches!(a, Action::Fence { node } if node == "n0")));
    match sim.primary_changes().as_slice() {
        [Action::PrimaryChanged { reason, .. }] => assert_eq!(*reason, PromotionReason::Failover),
        other => panic!("{other:?}"),
    }
    sim.expect(&[("n0", Demoted)]);
}

/// A standby pointed at the switchover target with its promotion, that
/// already reports the target's new timeline when the switchover finishes,
/// stays its synchronous standby (it is not sent back to `catchingup`, which
/// would leave the new primary asynchronous).
#[test]
fn a_standby_already_following_the_target_stays_in_its_sync_set() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.write(7_000);
    sim.run(400);
    switchover(&mut sim, "n1").unwrap();
    sim.report("n0");
    sim.expect(&[("n1", Promote), ("n2", Secondary)]);
    assert_eq!(
        sim.state.assignment("n2").unwrap().primary.as_deref(),
        Some("n1")
    );
    // n2 streams from n1 and is on its new timeline before n1 confirms.
    sim.k("n2").timeline += 1;
    sim.k("n2").lsn = 7_100;
    sim.report("n2");
    sim.run(1_000);
    sim.expect(&[("n1", Primary), ("n2", Secondary)]);
    assert!(!sim.assignments_of("n1").contains(&WaitPrimary));
    assert!(sim.sync().0.contains(&"n2".to_string()), "{:?}", sim.sync());
}

/// The drained primary's report leaves the switchover waiting on the
/// target's position: the core says so once ([`Action::AwaitReport`]), so
/// that its driver can ask the target to report now instead of at its next
/// interval; the target's report then starts the promotion.
#[test]
fn a_switchover_waiting_on_the_target_asks_for_its_report_once() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.write(7_000);
    sim.run(400);
    sim.write(500); // n1 has not reported this yet
    switchover(&mut sim, "n1").unwrap();
    let awaits = |actions: &[Action]| -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::AwaitReport { node } => Some(node.clone()),
                _ => None,
            })
            .collect()
    };
    let drained = sim.report("n0").unwrap();
    sim.expect(&[("n0", Draining), ("n1", Secondary)]);
    assert_eq!(awaits(&drained), vec!["n1".to_string()]);
    let again = sim.report("n0").unwrap();
    assert!(awaits(&again).is_empty(), "asked once: {again:?}");
    sim.report("n1");
    sim.expect(&[("n1", Promote)]);
}
