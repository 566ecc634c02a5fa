//! Readable scenarios: membership, durability (sync set), stale reports, monitor
//! restart, maintenance and removal. Failovers: `failover.rs`; switchovers:
//! `switchover.rs`.

mod common;

use common::{names, Sim};
use pgfleet_ha::{health, Event, NodeState::*, SyncMode};

#[test]
fn standalone_then_one_then_two_replicas() {
    let mut sim = Sim::new();
    sim.add("n0", 50);
    sim.expect(&[("n0", Single)]);
    sim.run(600);
    assert_eq!(sim.sync(), (vec![], 0));
    assert_eq!(
        health(&sim.state, sim.now, &sim.cfg).sync_mode,
        SyncMode::None
    );

    sim.add("n1", 50);
    sim.expect(&[("n0", WaitPrimary), ("n1", WaitStandby)]);
    sim.run(1_000);
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
    assert_eq!(
        sim.assignments_of("n1"),
        vec![WaitStandby, Catchingup, Secondary]
    );
    assert_eq!(sim.assignments_of("n0"), vec![Single, WaitPrimary, Primary]);
    assert_eq!(sim.sync(), (names(&["n1"]), 1));

    sim.add("n2", 50);
    // The new standby is not in the sync set until it caught up.
    sim.expect(&[("n0", Primary), ("n2", WaitStandby)]);
    assert_eq!(sim.sync(), (names(&["n1"]), 1));
    sim.run(1_000);
    sim.expect(&[("n2", Secondary)]);
    assert_eq!(sim.sync(), (names(&["n1", "n2"]), 1));
    let h = health(&sim.state, sim.now, &sim.cfg);
    assert_eq!(h.sync_mode, SyncMode::Sync);
    assert_eq!(h.writable_nodes, names(&["n0"]));
    assert!(!h.degraded, "{:?}", h.degraded_reasons);
}

#[test]
fn replica_loss_shrinks_sync_set_then_falls_back_to_async() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    sim.k("n2").alive = false;
    sim.run(1_000);
    // Not yet failure_timeout: still in the sync set.
    assert_eq!(sim.sync(), (names(&["n1", "n2"]), 1));
    sim.run(1_600);
    assert_eq!(sim.sync(), (names(&["n1"]), 1));
    sim.expect(&[("n0", Primary), ("n2", Catchingup)]);

    sim.k("n1").alive = false;
    sim.run(2_600);
    sim.expect(&[("n0", WaitPrimary)]);
    assert_eq!(sim.sync(), (vec![], 0));
    let h = health(&sim.state, sim.now, &sim.cfg);
    assert_eq!(h.sync_mode, SyncMode::AsyncFallback);
    assert!(h
        .degraded_reasons
        .iter()
        .any(|r| r.contains("async fallback")));

    // A replica comes back and catches up: sync again.
    sim.k("n1").alive = true;
    sim.run(1_000);
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
    assert_eq!(sim.sync(), (names(&["n1"]), 1));
    assert!(sim.state.transition.is_none());
}

#[test]
fn lagging_standby_stays_catchingup() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.k("n1").link = false;
    sim.write(100 << 20);
    sim.run(2_600);
    sim.expect(&[("n0", WaitPrimary), ("n1", Catchingup)]);
    sim.k("n1").link = true;
    sim.run(600);
    sim.expect(&[("n0", Primary), ("n1", Secondary)]);
}

#[test]
fn stale_generation_report_does_not_count() {
    let mut sim = Sim::new();
    sim.add("n0", 50);
    sim.add("n1", 50);
    sim.report("n0");
    sim.report("n0");
    sim.expect(&[("n1", Catchingup)]);
    let gen = sim.state.assignment("n1").unwrap().generation;
    let mut r = pgfleet_ha::KeeperReport {
        node: "n1".into(),
        reported: Catchingup,
        generation_seen: gen - 1, // applied an older assignment
        lsn: 0,
        timeline: 1,
        pg_running: true,
        is_in_recovery: true,
        wal_receiver_streaming: true,
        upstream_silent_ms: None,
        streaming_standbys: vec![],
        now_ms: sim.now,
    };
    sim.apply(Event::KeeperReport(r.clone())).unwrap();
    sim.expect(&[("n1", Catchingup)]);
    r.generation_seen = gen;
    sim.apply(Event::KeeperReport(r.clone())).unwrap();
    sim.expect(&[("n1", Secondary)]);
    // A report from the future is refused.
    r.generation_seen = sim.state.generation + 1;
    assert!(sim.apply(Event::KeeperReport(r)).is_err());
}

#[test]
fn monitor_restart_causes_no_spurious_failover() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    let gen = sim.state.generation;
    sim.restart_monitor(60_000);
    // Only ticks for almost the whole grace period (keepers not reconnected yet).
    for _ in 0..9 {
        sim.now += 200;
        sim.tick();
    }
    assert!(sim.state.transition.is_none());
    sim.run(5_000);
    assert!(sim.state.transition.is_none());
    assert_eq!(sim.state.generation, gen, "no assignment changed");
    sim.expect(&[("n0", Primary), ("n1", Secondary), ("n2", Secondary)]);
}

#[test]
fn monitor_restart_then_real_failure_still_fails_over() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.restart_monitor(30_000);
    sim.k("n0").alive = false;
    sim.run(5_000);
    assert_eq!(sim.state.primary.as_deref(), Some("n1"));
}

#[test]
fn maintenance_and_removal() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 50)]);
    let now = sim.now;
    let err = sim.apply(Event::SetMaintenance {
        node: "n0".into(),
        on: true,
        now_ms: now,
    });
    assert!(err.is_err());
    sim.apply(Event::SetMaintenance {
        node: "n1".into(),
        on: true,
        now_ms: now,
    })
    .unwrap();
    sim.expect(&[("n1", Maintenance)]);
    assert_eq!(sim.sync(), (names(&["n2"]), 1));
    sim.run(400); // n0 confirms the new sync set (until then n1 could hold acked commits)
                  // A maintenance node is never a candidate.
    sim.k("n0").alive = false;
    sim.run(5_000);
    assert_eq!(sim.state.primary.as_deref(), Some("n2"));
    let now = sim.now;
    sim.apply(Event::SetMaintenance {
        node: "n1".into(),
        on: false,
        now_ms: now,
    })
    .unwrap();
    sim.run(1_000);
    sim.expect(&[("n1", Secondary)]);

    let now = sim.now;
    assert!(sim
        .apply(Event::RemoveNode {
            node: "n2".into(),
            now_ms: now
        })
        .is_err());
    sim.apply(Event::RemoveNode {
        node: "n1".into(),
        now_ms: now,
    })
    .unwrap();
    sim.expect(&[("n1", Dropped), ("n2", WaitPrimary)]);
    sim.run(400);
    assert!(
        sim.state.node("n1").is_none(),
        "record removed once the keeper confirmed"
    );
    let now = sim.now;
    assert!(sim
        .apply(Event::RemoveNode {
            node: "n1".into(),
            now_ms: now
        })
        .is_err());
}

#[test]
fn events_and_actions_round_trip_through_json() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50)]);
    sim.k("n0").alive = false;
    sim.run(4_000);
    for ev in &sim.history {
        let json = serde_json::to_string(ev).unwrap();
        assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), ev);
    }
    for a in &sim.log {
        let json = serde_json::to_string(a).unwrap();
        assert_eq!(
            &serde_json::from_str::<pgfleet_ha::Action>(&json).unwrap(),
            a
        );
    }
    let json = serde_json::to_value(&sim.state).unwrap();
    assert_eq!(json["nodes"]["n0"]["assignment"]["state"], "demoted");
    assert_eq!(json["primary"], "n1");
}
