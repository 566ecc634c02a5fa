//! Test harness: a simulated fleet of keepers driving `pgfleet_ha::step`; every
//! step goes through the invariant checker (`checker.rs`), in scenarios and
//! proptests alike.
#![allow(dead_code)]

mod checker;

pub use checker::Checker;

use std::collections::BTreeMap;

use pgfleet_ha::{
    after_restart, step, Action, Assignment, ClusterState, Config, Event, HaError, KeeperReport,
    NodeState, StreamingStandby,
};

/// A standby's report first says its receiver gave up on a silent upstream
/// this long after the upstream fell silent: `wal_receiver_timeout` (2 s as
/// the agent configures it), the receiver's next wake-up (it naps up to
/// 100 ms) and the keeper's next observation.
pub const RECEIVER_TIMEOUT_MS: u64 = 2_300;

/// One simulated node: PostgreSQL + keeper.
#[derive(Debug, Clone)]
pub struct Keeper {
    /// Host and PostgreSQL up.
    pub alive: bool,
    /// Monitor <-> node network works (reports and health checks get through).
    pub visible: bool,
    /// Replication network works (standby side).
    pub link: bool,
    /// The keeper applies the assignment it receives when reporting.
    pub apply: bool,
    /// Frozen (SIGSTOP) or cut from everyone since then: no reports, no
    /// WAL, but its standbys' receivers still say "streaming" (hearing
    /// nothing) until `RECEIVER_TIMEOUT_MS` has passed.
    pub silent_since: Option<u64>,
    pub applied: Option<Assignment>,
    pub lsn: u64,
    pub timeline: u32,
    promoted_gen: Option<u64>,
}

impl Default for Keeper {
    fn default() -> Self {
        Keeper {
            alive: true,
            visible: true,
            link: true,
            apply: true,
            silent_since: None,
            applied: None,
            lsn: 0,
            timeline: 1,
            promoted_gen: None,
        }
    }
}

/// A monitor plus simulated keepers.
pub struct Sim {
    pub state: ClusterState,
    pub cfg: Config,
    pub now: u64,
    pub keepers: BTreeMap<String, Keeper>,
    /// Every action produced so far, in order.
    pub log: Vec<Action>,
    /// Every event applied successfully, in order.
    pub history: Vec<Event>,
    pub checker: Checker,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    pub fn new() -> Self {
        Sim {
            state: ClusterState::new(),
            cfg: Config::default(),
            now: 1_000,
            keepers: BTreeMap::new(),
            log: vec![],
            history: vec![],
            checker: Checker::default(),
        }
    }

    /// Builds a healthy cluster: first node primary, the others secondaries.
    pub fn cluster(nodes: &[(&str, u8)]) -> Self {
        let mut sim = Sim::new();
        for (n, p) in nodes {
            sim.add(n, *p);
            sim.run(1_000);
        }
        sim.run(1_000);
        sim
    }

    /// Applies one event through `step`, checks the invariants, records actions.
    pub fn apply(&mut self, ev: Event) -> Result<Vec<Action>, HaError> {
        let (next, actions) = step(&self.state, &ev, &self.cfg)?;
        if let Err(e) = self.checker.check(&self.state, &ev, &next, &actions) {
            panic!("invariant violated after {ev:?}: {e}\nactions: {actions:?}");
        }
        self.state = next;
        self.log.extend(actions.iter().cloned());
        self.history.push(ev);
        Ok(actions)
    }

    /// Applies a list of events (stopping at the first refusal).
    pub fn events(&mut self, evs: Vec<Event>) -> Result<(), HaError> {
        for ev in evs {
            self.apply(ev)?;
        }
        Ok(())
    }

    pub fn add(&mut self, node: &str, priority: u8) {
        self.keepers.entry(node.to_string()).or_default();
        let now = self.now;
        self.apply(Event::AddNode {
            node: node.into(),
            priority,
            now_ms: now,
        })
        .unwrap();
    }

    pub fn tick(&mut self) {
        let now = self.now;
        self.apply(Event::Tick { now_ms: now }).unwrap();
    }

    /// Advances time by `ms` in report intervals; every reachable keeper reports.
    pub fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += self.cfg.report_interval_ms;
            let names: Vec<String> = self.keepers.keys().cloned().collect();
            for n in names {
                self.report(&n);
            }
            self.tick();
        }
    }

    pub fn k(&mut self, node: &str) -> &mut Keeper {
        self.keepers.get_mut(node).expect("no such keeper")
    }

    /// The keeper's current report (applying its assignment first), if deliverable.
    pub fn keeper_report(&mut self, node: &str) -> Option<KeeperReport> {
        let assignment = self.state.assignment(node).cloned();
        let k = self.keepers.get_mut(node)?;
        if !k.alive || !k.visible || k.silent_since.is_some() {
            return None;
        }
        if k.apply {
            k.applied = assignment.or(k.applied.take());
        }
        let a = k.applied.clone()?;
        if a.state == NodeState::Promote && k.promoted_gen != Some(a.generation) {
            k.timeline += 1;
            k.promoted_gen = Some(a.generation);
        }
        let upstream = self.upstream(node);
        if let Some(u) = &upstream {
            let (lsn, tl) = (self.keepers[u].lsn, self.keepers[u].timeline);
            let k = self.keepers.get_mut(node).unwrap();
            k.lsn = lsn;
            k.timeline = tl;
        }
        let k = &self.keepers[node];
        let primary_like = a.state.is_primary_role() || a.state == NodeState::Promote;
        let stopped = matches!(a.state, NodeState::Demoted | NodeState::Dropped);
        let streaming_standbys = if primary_like {
            self.keepers
                .iter()
                .filter(|(n, _)| self.upstream(n).as_deref() == Some(node))
                .map(|(n, s)| StreamingStandby {
                    name: n.clone(),
                    flush_lsn: s.lsn,
                })
                .collect()
        } else {
            vec![]
        };
        Some(KeeperReport {
            node: node.into(),
            reported: a.state,
            generation_seen: a.generation,
            lsn: k.lsn,
            timeline: k.timeline,
            pg_running: !stopped,
            is_in_recovery: !primary_like && !stopped,
            wal_receiver_streaming: upstream.is_some(),
            upstream_silent_ms: upstream.as_ref().map(|u| {
                let since = self.keepers[u].silent_since.unwrap_or(self.now);
                self.now.saturating_sub(since)
            }),
            streaming_standbys,
            now_ms: self.now,
        })
    }

    /// Whom `node` currently streams from in the simulation.
    pub fn upstream(&self, node: &str) -> Option<String> {
        let k = self.keepers.get(node)?;
        let a = k.applied.as_ref()?;
        let streams = matches!(
            a.state,
            NodeState::Catchingup
                | NodeState::Secondary
                | NodeState::Maintenance
                | NodeState::FastForward
        );
        let u = a.primary.clone()?;
        let up = self.keepers.get(&u)?;
        let receiver_timed_out = up
            .silent_since
            .is_some_and(|t| self.now.saturating_sub(t) > RECEIVER_TIMEOUT_MS);
        let up_running = up.alive
            && !receiver_timed_out
            && up
                .applied
                .as_ref()
                .is_some_and(|ua| !matches!(ua.state, NodeState::Demoted | NodeState::Dropped));
        (streams && k.alive && k.link && up_running).then_some(u)
    }

    /// Sends the keeper's report if it is deliverable.
    pub fn report(&mut self, node: &str) -> Option<Vec<Action>> {
        let r = self.keeper_report(node)?;
        self.apply(Event::KeeperReport(r)).ok()
    }

    /// Writes `bytes` of WAL on whichever simulated node thinks it is writable.
    pub fn write(&mut self, bytes: u64) {
        for k in self.keepers.values_mut() {
            if k.alive
                && k.silent_since.is_none()
                && k.applied.as_ref().is_some_and(|a| a.state.is_writable())
            {
                k.lsn += bytes;
            }
        }
    }

    pub fn assigned(&self, node: &str) -> NodeState {
        self.state.assignment(node).expect("no such node").state
    }

    pub fn expect(&self, want: &[(&str, NodeState)]) {
        for (n, s) in want {
            assert_eq!(
                self.assigned(n),
                *s,
                "assignment of {n}; state: {:#?}",
                self.state.nodes[*n]
            );
        }
    }

    /// `(sync_standbys, sync_quorum)` of the current primary's assignment.
    pub fn sync(&self) -> (Vec<String>, u32) {
        let p = self.state.primary.clone().expect("no primary");
        let a = self.state.assignment(&p).unwrap();
        (a.sync_standbys.clone(), a.sync_quorum)
    }

    /// The sequence of states assigned to `node` so far.
    pub fn assignments_of(&self, node: &str) -> Vec<NodeState> {
        let mut v: Vec<NodeState> = vec![];
        for a in &self.log {
            if let Action::Assign(a) = a {
                if a.node == node && v.last() != Some(&a.state) {
                    v.push(a.state);
                }
            }
        }
        v
    }

    pub fn primary_changes(&self) -> Vec<Action> {
        self.log
            .iter()
            .filter(|a| matches!(a, Action::PrimaryChanged { .. }))
            .cloned()
            .collect()
    }

    /// Simulates a monitor restart: JSON round trip, downtime, `after_restart`.
    pub fn restart_monitor(&mut self, downtime_ms: u64) {
        let json = serde_json::to_string_pretty(&self.state).unwrap();
        self.now += downtime_ms;
        let loaded: ClusterState = serde_json::from_str(&json).unwrap();
        self.state = after_restart(&loaded, self.now);
        self.checker = Checker::default();
    }
}

pub fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
