//! Property tests: random fleets (crashes, partitions, lagging links, keepers that
//! do not apply, garbage / duplicated / reordered reports, operator commands).
//! `Sim::apply` checks the invariants after every step (see `common::Checker`):
//! single writer + demote-before-promote, generation monotonic, no promotion
//! behind another reporter, sync set only names eligible nodes, JSON round trip.

mod common;

use common::Sim;
use pgfleet_ha::{health, Event, KeeperReport, NodeState};
use proptest::prelude::*;

const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];
const STATES: [NodeState; 13] = [
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
    NodeState::Dropped,
];

#[derive(Debug, Clone)]
enum Op {
    /// Every reachable keeper reports, then a tick after `dt` ms.
    Round(u16),
    Report(usize),
    Tick(u16),
    /// A health probe: ok, or failed (refused: nothing listened).
    Health(usize, bool, bool),
    Write(u16),
    /// A keeper's LSN moves ahead on its own (it received more WAL than others).
    Bump(usize, u16),
    Crash(usize),
    Revive(usize),
    Hide(usize),
    Show(usize),
    Link(usize, bool),
    Apply(usize, bool),
    Garbage {
        node: usize,
        state: usize,
        back: u8,
        lsn: u16,
        flags: u8,
    },
    Duplicate,
    Replay(u8),
    Add(usize, u8),
    Remove(usize),
    Switchover(usize),
    Maintenance(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NODES.len();
    prop_oneof![
        12 => (100u16..700).prop_map(Op::Round),
        6 => n.clone().prop_map(Op::Report),
        3 => (0u16..3000).prop_map(Op::Tick),
        2 => (n.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(n, ok, refused)| Op::Health(n, ok, refused && !ok)),
        3 => (1u16..5000).prop_map(Op::Write),
        2 => (n.clone(), 1u16..3000).prop_map(|(n, b)| Op::Bump(n, b)),
        2 => n.clone().prop_map(Op::Crash),
        3 => n.clone().prop_map(Op::Revive),
        1 => n.clone().prop_map(Op::Hide),
        2 => n.clone().prop_map(Op::Show),
        2 => (n.clone(), any::<bool>()).prop_map(|(n, b)| Op::Link(n, b)),
        1 => (n.clone(), any::<bool>()).prop_map(|(n, b)| Op::Apply(n, b)),
        2 => (n.clone(), 0..STATES.len(), any::<u8>(), any::<u16>(), any::<u8>()).prop_map(
            |(node, state, back, lsn, flags)| Op::Garbage { node, state, back, lsn, flags }
        ),
        2 => Just(Op::Duplicate),
        2 => any::<u8>().prop_map(Op::Replay),
        2 => (n.clone(), prop_oneof![Just(0u8), 1u8..=100]).prop_map(|(n, p)| Op::Add(n, p)),
        1 => n.clone().prop_map(Op::Remove),
        1 => n.clone().prop_map(Op::Switchover),
        1 => (n, any::<bool>()).prop_map(|(n, b)| Op::Maintenance(n, b)),
    ]
}

fn run(ops: &[Op]) -> Sim {
    let mut sim = Sim::new();
    sim.add("n0", 50);
    for op in ops {
        let now = sim.now;
        match op.clone() {
            Op::Round(dt) => {
                sim.now += u64::from(dt);
                for n in NODES {
                    if sim.state.node(n).is_some() {
                        sim.report(n);
                    }
                }
                sim.tick();
            }
            Op::Report(i) => {
                sim.report(NODES[i]);
            }
            Op::Tick(dt) => {
                sim.now += u64::from(dt);
                sim.tick();
            }
            Op::Health(i, ok, refused) => {
                let _ = sim.apply(Event::HealthCheck {
                    node: NODES[i].into(),
                    ok,
                    refused,
                    now_ms: now,
                });
            }
            Op::Write(b) => sim.write(u64::from(b)),
            Op::Bump(i, b) => set(&mut sim, i, |k| k.lsn += u64::from(b)),
            Op::Crash(i) => set(&mut sim, i, |k| k.alive = false),
            Op::Revive(i) => set(&mut sim, i, |k| k.alive = true),
            Op::Hide(i) => set(&mut sim, i, |k| k.visible = false),
            Op::Show(i) => set(&mut sim, i, |k| k.visible = true),
            Op::Link(i, b) => set(&mut sim, i, |k| k.link = b),
            Op::Apply(i, b) => set(&mut sim, i, |k| k.apply = b),
            Op::Garbage {
                node,
                state,
                back,
                lsn,
                flags,
            } => {
                let r = KeeperReport {
                    node: NODES[node].into(),
                    reported: STATES[state],
                    generation_seen: sim.state.generation.saturating_sub(u64::from(back % 4)),
                    lsn: u64::from(lsn),
                    timeline: 1 + u32::from(flags & 1),
                    pg_running: flags & 2 != 0,
                    is_in_recovery: flags & 4 != 0,
                    wal_receiver_streaming: flags & 8 != 0,
                    upstream_silent_ms: (flags & 16 != 0).then_some(u64::from(lsn) * 8),
                    streaming_standbys: vec![],
                    now_ms: now,
                };
                let _ = sim.apply(Event::KeeperReport(r));
            }
            Op::Duplicate => {
                if let Some(ev) = sim.history.last().cloned() {
                    let _ = sim.apply(ev);
                }
            }
            Op::Replay(back) => {
                let reports: Vec<Event> = sim
                    .history
                    .iter()
                    .filter(|e| matches!(e, Event::KeeperReport(_)))
                    .cloned()
                    .collect();
                if !reports.is_empty() {
                    let ev = reports[reports.len() - 1 - usize::from(back) % reports.len()].clone();
                    let _ = sim.apply(ev);
                }
            }
            Op::Add(i, p) => {
                sim.keepers.entry(NODES[i].into()).or_default();
                let _ = sim.apply(Event::AddNode {
                    node: NODES[i].into(),
                    priority: p,
                    now_ms: now,
                });
            }
            Op::Remove(i) => {
                let _ = sim.apply(Event::RemoveNode {
                    node: NODES[i].into(),
                    now_ms: now,
                });
            }
            Op::Switchover(i) => {
                let _ = sim.apply(Event::Switchover {
                    target: NODES[i].into(),
                    now_ms: now,
                });
            }
            Op::Maintenance(i, on) => {
                let _ = sim.apply(Event::SetMaintenance {
                    node: NODES[i].into(),
                    on,
                    now_ms: now,
                });
            }
        }
        let h = health(&sim.state, sim.now, &sim.cfg);
        assert!(h.writable_nodes.len() <= 1, "{h:?}");
    }
    sim
}

fn set(sim: &mut Sim, i: usize, f: impl FnOnce(&mut common::Keeper)) {
    if let Some(k) = sim.keepers.get_mut(NODES[i]) {
        f(k);
    }
}

proptest! {
    // 400 cases by default; PROPTEST_CASES=N for a longer soak.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
    ))]

    #[test]
    fn invariants_hold_for_random_histories(ops in prop::collection::vec(op(), 1..200)) {
        run(&ops);
    }
}

/// The random histories must actually exercise the interesting paths.
#[test]
fn random_histories_cover_failover_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = prop::collection::vec(op(), 150..200);
    let (mut changed, mut promote, mut ff, mut blocked, mut aborted) = (0, 0, 0, 0, 0);
    for _ in 0..300 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        let sim = run(&ops);
        let has = |f: &dyn Fn(&pgfleet_ha::Action) -> bool| sim.log.iter().any(f);
        use pgfleet_ha::Action::*;
        changed += has(&|a| matches!(a, PrimaryChanged { .. })) as u32;
        promote += has(&|a| matches!(a, Assign(a) if a.state == NodeState::Promote)) as u32;
        ff += has(&|a| matches!(a, Assign(a) if a.state == NodeState::FastForward)) as u32;
        aborted += has(&|a| matches!(a, TransitionAborted { .. })) as u32;
        blocked += sim
            .state
            .transition
            .as_ref()
            .is_some_and(|t| t.blocked.is_some()) as u32;
    }
    println!("changed {changed} promote {promote} ff {ff} aborted {aborted} blocked {blocked}");
    assert!(
        changed >= 30 && promote >= 30,
        "changed {changed} promote {promote}"
    );
}

/// A long deterministic mix to make sure failovers actually happen in the model.
#[test]
fn random_model_reaches_failovers() {
    let mut sim = Sim::cluster(&[("n0", 50), ("n1", 50), ("n2", 10)]);
    let mut failovers = 0;
    for round in 0..40u64 {
        let p = sim.state.primary.clone().unwrap();
        sim.k(&p).alive = false;
        sim.run(5_000 + round * 37);
        sim.k(&p).alive = true;
        sim.run(3_000);
        failovers = sim.primary_changes().len();
    }
    assert!(failovers >= 30, "only {failovers} failovers");
}
