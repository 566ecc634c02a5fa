//! A replacement monitor rebuilds its state from the keepers
//! (`pgfleet_ha::rebuild`): generations continue above anything seen and
//! above the older monitors' range, the newest primary keeps its role, no
//! second node is made writable, and a primary that does not report is
//! failed over with the usual quorum rule.

use pgfleet_ha::{
    generation_floor, rebuild, step, Action, Config, Event, HeldAssignment, KeeperReport,
    NodeState, RebuildReport, SpecNode,
};
use proptest::prelude::*;

const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];

fn spec() -> Vec<SpecNode> {
    NODES
        .iter()
        .map(|n| SpecNode {
            name: n.to_string(),
            priority: 50,
            maintenance: false,
        })
        .collect()
}

fn report(
    node: &str,
    state: NodeState,
    generation: u64,
    primary: Option<&str>,
    lsn: u64,
    now: u64,
) -> RebuildReport {
    let writable = state.is_writable() || state.is_primary_role();
    let running = state != NodeState::Demoted;
    RebuildReport {
        report: KeeperReport {
            node: node.into(),
            reported: state,
            generation_seen: generation,
            lsn,
            timeline: 1,
            pg_running: running,
            is_in_recovery: running && !writable,
            wal_receiver_streaming: running && !writable && primary.is_some(),
            upstream_silent_ms: None,
            streaming_standbys: vec![],
            now_ms: now,
        },
        held: Some(HeldAssignment {
            state,
            generation,
            primary: primary.map(str::to_string),
            sync_standbys: if writable {
                vec!["n1".into(), "n2".into(), "n3".into()]
            } else {
                vec![]
            },
            sync_quorum: u32::from(writable),
        }),
    }
}

fn writable(st: &pgfleet_ha::ClusterState) -> Vec<String> {
    st.nodes
        .values()
        .filter(|n| n.assignment.state.is_writable())
        .map(|n| n.name.clone())
        .collect()
}

/// Monitor host lost, everyone else fine: the primary keeps its role, the
/// standbys stay synchronous secondaries, and every generation is above the
/// old monitor's and in the new epoch's range.
#[test]
fn everyone_reports_the_primary_keeps_its_role_above_the_old_generations() {
    let now = 10_000;
    let reports = vec![
        report("n0", NodeState::Primary, 9, None, 500, now),
        report("n1", NodeState::Secondary, 7, Some("n0"), 500, now),
        report("n2", NodeState::Secondary, 8, Some("n0"), 490, now),
        report("n3", NodeState::Secondary, 6, Some("n0"), 480, now),
    ];
    let cfg = Config::default();
    let (st, _) = rebuild(&reports, &spec(), Some("n0"), 1, now, &cfg);
    assert_eq!(st.primary.as_deref(), Some("n0"));
    assert_eq!(writable(&st), vec!["n0".to_string()]);
    assert!(st.transition.is_none());
    for n in st.nodes.values() {
        assert!(n.assignment.generation >= generation_floor(1), "{n:?}");
        if n.name != "n0" {
            assert_eq!(n.assignment.state, NodeState::Secondary);
            assert_eq!(n.assignment.primary.as_deref(), Some("n0"));
        }
    }
    // The normal machine runs on: once the keepers apply the new
    // generation, nothing fails over and the primary stays synchronous.
    let mut state = st;
    for round in 1..5u64 {
        let at = now + round * 200;
        for name in NODES {
            let a = state.assignment(name).unwrap().clone();
            let r = report(name, a.state, a.generation, a.primary.as_deref(), 500, at);
            let (next, actions) = step(&state, &Event::KeeperReport(r.report), &cfg).unwrap();
            assert!(!actions
                .iter()
                .any(|a| matches!(a, Action::PrimaryChanged { .. })));
            state = next;
        }
    }
    assert_eq!(state.primary.as_deref(), Some("n0"));
    assert_eq!(
        state.assignment("n0").unwrap().state,
        NodeState::Primary,
        "{state:?}"
    );
}

/// Monitor and primary lost together: the primary does not report, so it is
/// failed over after the failure timeout, to the most advanced standby,
/// once every standby reported its final LSN (n − k + 1 for the unknown
/// setting `ANY 1 (every standby)`).
#[test]
fn a_primary_that_does_not_report_is_failed_over_to_the_most_advanced_standby() {
    let now = 10_000;
    let mut reports = vec![
        report("n1", NodeState::Secondary, 7, Some("n0"), 500, now),
        report("n2", NodeState::Secondary, 8, Some("n0"), 520, now),
        report("n3", NodeState::Secondary, 6, Some("n0"), 480, now),
    ];
    // The primary is gone: nobody streams from it.
    for r in reports.iter_mut() {
        r.report.wal_receiver_streaming = false;
    }
    let cfg = Config::default();
    let (mut st, _) = rebuild(&reports, &spec(), Some("n0"), 2, now, &cfg);
    assert_eq!(st.primary.as_deref(), Some("n0"));
    let mut promoted = None;
    for round in 1..60u64 {
        let at = now + round * 200;
        for name in ["n1", "n2", "n3"] {
            let a = st.assignment(name).unwrap().clone();
            let lsn = match name {
                "n2" => 520,
                "n1" => 500,
                _ => 480,
            };
            let reached = a.state;
            let out = a.state == NodeState::Promote;
            let mut r = report(name, reached, a.generation, a.primary.as_deref(), lsn, at);
            if out {
                r.report.is_in_recovery = false;
            }
            r.report.wal_receiver_streaming = false;
            let (next, actions) = step(&st, &Event::KeeperReport(r.report), &cfg).unwrap();
            assert!(writable(&next).len() <= 1, "{next:?}");
            for action in actions {
                if let Action::PrimaryChanged {
                    new, generation, ..
                } = action
                {
                    assert!(generation >= generation_floor(2));
                    promoted = Some(new);
                }
            }
            st = next;
        }
    }
    assert_eq!(promoted.as_deref(), Some("n2"));
    assert_eq!(st.assignment("n0").unwrap().state, NodeState::Demoted);
}

/// The old monitor had demoted the primary and was collecting final LSNs
/// when it was lost: the rebuilt state does not give the primary its role
/// back, it continues the failover.
#[test]
fn a_primary_the_old_monitor_demoted_is_not_made_writable_again() {
    let now = 10_000;
    let reports = vec![
        report("n0", NodeState::Demoted, 12, None, 500, now),
        report("n1", NodeState::ReportLsn, 13, None, 500, now),
        report("n2", NodeState::ReportLsn, 14, None, 500, now),
        report("n3", NodeState::Secondary, 6, Some("n0"), 480, now),
    ];
    let (st, actions) = rebuild(&reports, &spec(), Some("n0"), 1, now, &Config::default());
    assert!(writable(&st).is_empty(), "{st:?}");
    assert!(st.transition.is_some());
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Fence { node } if node == "n0")));
}

/// A standby that follows a newer primary than the control plane knows
/// (the old monitor's last change was not recorded) names the primary.
#[test]
fn the_newest_claim_wins_over_the_control_planes_primary() {
    let now = 10_000;
    let reports = vec![
        report("n0", NodeState::Catchingup, 20, Some("n1"), 400, now),
        report("n1", NodeState::Primary, 19, None, 500, now),
        report("n2", NodeState::Secondary, 21, Some("n1"), 500, now),
    ];
    let (st, _) = rebuild(&reports, &spec(), Some("n0"), 1, now, &Config::default());
    assert_eq!(st.primary.as_deref(), Some("n1"));
    assert_eq!(writable(&st), vec!["n1".to_string()]);
}

fn held_state() -> impl Strategy<Value = NodeState> {
    prop::sample::select(vec![
        NodeState::Single,
        NodeState::WaitPrimary,
        NodeState::Primary,
        NodeState::Draining,
        NodeState::Demoted,
        NodeState::WaitStandby,
        NodeState::Catchingup,
        NodeState::Secondary,
        NodeState::ReportLsn,
        NodeState::FastForward,
        NodeState::Promote,
        NodeState::Maintenance,
    ])
}

fn some_report() -> impl Strategy<Value = Option<(NodeState, u64, Option<usize>, u64)>> {
    prop::option::of((
        held_state(),
        0u64..50,
        prop::option::of(0usize..4),
        0u64..1000,
    ))
}

proptest! {
    /// Whatever the keepers hold: every new generation is above all seen
    /// and in the epoch's range; at most one node is writable, and it is
    /// one that reported holding a writable assignment or did not report
    /// (never a node the old monitor had made non-writable); the normal
    /// machine keeps the single writer over the next steps.
    #[test]
    fn rebuilt_states_keep_a_single_writer_and_newer_generations(
        held in prop::collection::vec(some_report(), 4),
        epoch in 1u64..4,
        spec_primary in 0usize..4,
        ticks in prop::collection::vec(0u64..3000, 0..6),
    ) {
        let now = 50_000;
        let mut reports = Vec::new();
        for (i, h) in held.iter().enumerate() {
            if let Some((state, generation, primary, lsn)) = h {
                reports.push(report(NODES[i], *state, *generation, primary.map(|p| NODES[p]), *lsn, now));
            }
        }
        let cfg = Config::default();
        let (st, _) = rebuild(&reports, &spec(), Some(NODES[spec_primary]), epoch, now, &cfg);
        let max_seen = reports.iter().map(|r| r.report.generation_seen).max().unwrap_or(0);
        for n in st.nodes.values() {
            prop_assert!(n.assignment.generation > max_seen);
            prop_assert!(n.assignment.generation >= generation_floor(epoch));
        }
        prop_assert!(st.generation < generation_floor(epoch + 1));
        let writers = writable(&st);
        prop_assert!(writers.len() <= 1, "{:?}", writers);
        for w in &writers {
            if let Some(r) = reports.iter().find(|r| r.report.node == *w) {
                let h = r.held.as_ref().unwrap().state;
                prop_assert!(h.is_writable() || h.is_primary_role(), "{} held {:?}", w, h);
            }
        }
        let json = serde_json::to_string(&st).unwrap();
        prop_assert_eq!(&serde_json::from_str::<pgfleet_ha::ClusterState>(&json).unwrap(), &st);
        let mut state = st;
        let mut at = now;
        for dt in ticks {
            at += dt;
            let (next, _) = step(&state, &Event::Tick { now_ms: at }, &cfg).unwrap();
            prop_assert!(writable(&next).len() <= 1);
            prop_assert!(next.generation >= state.generation);
            state = next;
        }
    }
}

/// The old monitor had chosen n2 and pointed n3 at it, then died before n2
/// took `promote` (n2 still holds `report_lsn`): n3's word does not make n2
/// the primary; the failover from the demoted n0 goes on, nobody writable
/// but the one it promotes.
#[test]
fn a_standby_pointed_at_a_candidate_that_never_promoted_does_not_make_it_primary() {
    let now = 10_000;
    let reports = vec![
        report("n0", NodeState::Demoted, 20, None, 500, now),
        report("n1", NodeState::ReportLsn, 21, None, 480, now),
        report("n2", NodeState::ReportLsn, 22, None, 500, now),
        report("n3", NodeState::Secondary, 24, Some("n2"), 490, now),
    ];
    let (st, _) = rebuild(&reports, &spec(), Some("n0"), 1, now, &Config::default());
    assert_ne!(st.primary.as_deref(), Some("n2"), "{st:?}");
    assert!(writable(&st).is_empty(), "{:?}", writable(&st));
    assert!(st.transition.is_some(), "the failover goes on");
}

/// A node the old monitor was promoting is the primary of the rebuilt
/// state in a primary role, so a failover applies to it if it is down.
#[test]
fn a_node_that_was_being_promoted_is_rebuilt_as_primary() {
    let now = 10_000;
    let reports = vec![
        report("n1", NodeState::Promote, 30, None, 500, now),
        report("n2", NodeState::Secondary, 31, Some("n1"), 500, now),
        report("n3", NodeState::Secondary, 31, Some("n1"), 490, now),
    ];
    let (st, _) = rebuild(&reports, &spec(), Some("n0"), 1, now, &Config::default());
    assert_eq!(st.primary.as_deref(), Some("n1"));
    let state = st.assignment("n1").unwrap().state;
    assert!(state.is_primary_role(), "{state:?}");
}
