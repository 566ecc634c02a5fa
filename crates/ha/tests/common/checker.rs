//! The product invariants, checked after every successful step: single writer with
//! demote/drain before promote, monotonic generations, no promotion behind another
//! reporter of the same failover, sync set naming only eligible nodes, JSON round trip.

use std::collections::BTreeMap;

use pgfleet_ha::{Action, ClusterState, Event, LsnPos, NodeState, TransitionKind};

/// Invariant oracle: final positions reported during the current failover.
#[derive(Debug, Default, Clone)]
pub struct Checker {
    reports: BTreeMap<String, LsnPos>,
}

impl Checker {
    /// Checks every product invariant for one successful step.
    pub fn check(
        &mut self,
        prev: &ClusterState,
        event: &Event,
        next: &ClusterState,
        actions: &[Action],
    ) -> Result<(), String> {
        if prev.transition.is_none() {
            self.reports.clear();
        }
        if let Event::KeeperReport(r) = event {
            if let Some(n) = prev.node(&r.node) {
                let a = &n.assignment;
                let counts = matches!(a.state, NodeState::ReportLsn | NodeState::FastForward)
                    && r.reported == a.state
                    && r.generation_seen >= a.generation
                    && r.generation_seen >= n.generation_seen;
                if counts && prev.transition.is_some() {
                    let pos = LsnPos {
                        timeline: r.timeline,
                        lsn: r.lsn,
                    };
                    let e = self.reports.entry(r.node.clone()).or_insert(pos);
                    *e = (*e).max(pos);
                }
            }
        }
        if next.generation < prev.generation {
            return Err("generation decreased".into());
        }
        let mut last = prev.generation;
        for a in actions {
            if let Action::Assign(a) = a {
                if a.generation <= last || a.generation > next.generation {
                    return Err(format!("bad generation order at {a:?}"));
                }
                last = a.generation;
            }
        }
        let writable: Vec<&str> = next
            .nodes
            .values()
            .filter(|n| n.assignment.state.is_writable())
            .map(|n| n.name.as_str())
            .collect();
        if writable.len() > 1 {
            return Err(format!("several writable assignments: {writable:?}"));
        }
        for n in next.nodes.values() {
            if n.assignment.generation > next.generation {
                return Err(format!("{} has a future generation", n.name));
            }
            let newly_promoted = n.assignment.state == NodeState::Promote
                && prev
                    .node(&n.name)
                    .is_none_or(|p| p.assignment.state != NodeState::Promote);
            if newly_promoted {
                self.check_promote(prev, next, &n.name)?;
            }
        }
        if let Some(p) = next.primary.as_deref().and_then(|p| next.node(p)) {
            let a = &p.assignment;
            for s in &a.sync_standbys {
                match next.node(s) {
                    Some(r) if !r.maintenance && !r.is_dropped() && r.name != p.name => {}
                    _ => return Err(format!("sync standby {s} is not an eligible node")),
                }
            }
            if a.sync_quorum as usize > a.sync_standbys.len()
                || (a.sync_quorum == 0) != a.sync_standbys.is_empty()
            {
                return Err(format!("bad quorum {a:?}"));
            }
        }
        let json = serde_json::to_string(next).map_err(|e| e.to_string())?;
        let back: ClusterState = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        if &back != next {
            return Err("JSON round trip changed the state".into());
        }
        Ok(())
    }

    fn check_promote(
        &self,
        prev: &ClusterState,
        next: &ClusterState,
        x: &str,
    ) -> Result<(), String> {
        let others_writable = prev
            .nodes
            .values()
            .any(|n| n.name != x && n.assignment.state.is_writable());
        if others_writable {
            return Err(format!("{x} promoted while another node was writable"));
        }
        let tr = next
            .transition
            .as_ref()
            .ok_or("promote outside a transition")?;
        match tr.kind {
            TransitionKind::Failover => {
                let old = next.node(&tr.old_primary).map(|n| n.assignment.state);
                if old.is_some_and(|s| s != NodeState::Demoted) {
                    return Err(format!("{x} promoted before old primary was demoted"));
                }
                let mine = self
                    .reports
                    .get(x)
                    .copied()
                    .unwrap_or(next.node(x).unwrap().pos());
                for (y, pos) in &self.reports {
                    if y != x && pos.timeline == mine.timeline && pos.lsn > mine.lsn {
                        return Err(format!("{x} promoted at {mine:?} behind {y} at {pos:?}"));
                    }
                }
            }
            TransitionKind::Switchover => {
                let old = next.node(&tr.old_primary).unwrap();
                if old.assignment.state != NodeState::Draining || !old.reached() {
                    return Err("switchover promote before the old primary drained".into());
                }
                if next.node(x).unwrap().lsn < old.lsn {
                    return Err("switchover target behind the drained primary".into());
                }
            }
        }
        Ok(())
    }
}
