//! Rebuilding a monitor's state from its keepers: [`rebuild`].
//!
//! A replacement monitor (monitor epoch > 0, no state file) collects keeper
//! reports, each with the assignment the keeper persisted (`HeldAssignment`),
//! then builds a [`ClusterState`] from them and runs the normal state
//! machine from there. Rules (see `STATE_MACHINE.md`, "Rebuild"):
//!
//! - **Generations** continue strictly above anything any keeper has seen and
//!   above every older monitor's range: the first new assignment is
//!   `max(epoch << 32, max(generation seen) + 1)`, so no assignment of an
//!   older monitor can be accepted, undone or replayed.
//! - **Primary** = the node named by the newest (highest-generation) claim in
//!   the reports: a keeper holding a primary-role or `promote` assignment
//!   claims itself, a standby claims the node it follows. Without any claim,
//!   the control plane's primary (`spec_primary`).
//! - **Single writer**: only that node may keep a writable assignment, and
//!   only if it reported holding one; every other node holding a writable
//!   assignment is assigned `demoted`. If the primary reported holding a
//!   non-writable assignment (the old monitor had demoted it), a failover
//!   from it starts at once; a primary that did not report is re-assigned
//!   its role with the most conservative sync setting (every other node,
//!   `ANY 1`), so a failover away from it needs every standby's final LSN.
//! - Standbys that follow the primary keep `secondary`/`wait_standby`;
//!   every other one is re-pointed (`catchingup`).

use serde::{Deserialize, Serialize};

use crate::assign::{assign, assign_full};
use crate::config::Config;
use crate::event::{Action, KeeperReport};
use crate::states::{ClusterState, NodeRecord, NodeState, SyncConfig, SyncEntry};

/// The assignment a keeper persisted (the last one it accepted, from
/// whichever monitor made it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAssignment {
    pub state: NodeState,
    pub generation: u64,
    /// The node it follows (standby states).
    #[serde(default)]
    pub primary: Option<String>,
    #[serde(default)]
    pub sync_standbys: Vec<String>,
    #[serde(default)]
    pub sync_quorum: u32,
}

/// One keeper's last report to the new monitor, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildReport {
    pub report: KeeperReport,
    /// `None` from keepers that do not send it: their `reported` state at
    /// `generation_seen` stands for it.
    pub held: Option<HeldAssignment>,
}

impl RebuildReport {
    fn held(&self) -> HeldAssignment {
        self.held.clone().unwrap_or(HeldAssignment {
            state: self.report.reported,
            generation: self.report.generation_seen,
            primary: None,
            sync_standbys: vec![],
            sync_quorum: 0,
        })
    }
}

/// A data node of the database as the control plane's spec lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecNode {
    pub name: String,
    pub priority: u8,
    pub maintenance: bool,
}

/// The lowest generation a monitor of `epoch` hands out.
pub fn generation_floor(epoch: u64) -> u64 {
    epoch.min(u64::from(u32::MAX)) << 32
}

/// Who the reports say is the primary, with the generation of that claim.
fn newest_claim(reports: &[&RebuildReport]) -> Option<(String, u64)> {
    let mut best: Option<(String, u64)> = None;
    for report in reports {
        let held = report.held();
        let claimed = if held.state.is_writable() || held.state.is_primary_role() {
            Some(report.report.node.clone())
        } else if matches!(
            held.state,
            NodeState::Secondary
                | NodeState::Catchingup
                | NodeState::WaitStandby
                | NodeState::Maintenance
        ) {
            held.primary.clone()
        } else {
            None
        };
        let Some(claimed) = claimed else { continue };
        // A standby's word for a node that itself says it holds no writable
        // or primary assignment (e.g. pointed at a candidate that never took
        // `promote`) does not make that node the primary.
        let denied = reports.iter().any(|r| {
            r.report.node == claimed && {
                let own = r.held();
                !(own.state.is_writable() || own.state.is_primary_role())
            }
        });
        if claimed != report.report.node && denied {
            continue;
        }
        let newer = match &best {
            None => true,
            Some((name, generation)) => {
                (held.generation, std::cmp::Reverse(&claimed))
                    > (*generation, std::cmp::Reverse(name))
            }
        };
        if newer {
            best = Some((claimed, held.generation));
        }
    }
    best
}

/// Builds the state of a replacement monitor of `epoch` from the keepers'
/// reports (at most one per node; nodes not in `nodes` are ignored) and the
/// spec's data nodes, at `now_ms`. Pure. The returned actions are the
/// assignments made (and a `Fence` when a failover starts at once); the
/// driver persists the state before answering any keeper.
pub fn rebuild(
    reports: &[RebuildReport],
    nodes: &[SpecNode],
    spec_primary: Option<&str>,
    epoch: u64,
    now_ms: u64,
    config: &Config,
) -> (ClusterState, Vec<Action>) {
    let known = |name: &str| nodes.iter().any(|n| n.name == name);
    let mut reporting: Vec<&RebuildReport> = Vec::new();
    for report in reports {
        let duplicate = reporting
            .iter()
            .any(|r| r.report.node == report.report.node);
        if known(&report.report.node) && !duplicate {
            reporting.push(report);
        }
    }
    let report_of = |name: &str| reporting.iter().find(|r| r.report.node == name).copied();
    let max_seen = reporting
        .iter()
        .map(|r| r.report.generation_seen.max(r.held().generation))
        .max()
        .unwrap_or(0);
    let first = generation_floor(epoch).max(max_seen + 1);
    let mut st = ClusterState {
        generation: first - 1,
        now_ms,
        ..ClusterState::default()
    };
    for node in nodes {
        let mut record = NodeRecord::new(&node.name, node.priority.min(100), now_ms);
        record.maintenance = node.maintenance;
        if let Some(r) = report_of(&node.name).map(|r| &r.report) {
            let at = r.now_ms.min(now_ms);
            record.reported = Some(r.reported);
            record.generation_seen = r.generation_seen;
            record.last_report_ms = Some(at);
            record.last_pg_ok_ms = r.pg_running.then_some(at);
            record.last_streaming_ms =
                (r.pg_running && r.is_in_recovery && r.wal_receiver_streaming).then_some(at);
            record.lsn = r.lsn;
            record.timeline = r.timeline;
            record.pg_running = r.pg_running;
            record.is_in_recovery = r.is_in_recovery;
            record.wal_receiver_streaming = r.wal_receiver_streaming;
            record.streaming_standbys = r.streaming_standbys.clone();
        }
        st.nodes.insert(node.name.clone(), record);
    }
    let primary = newest_claim(&reporting)
        .map(|(name, _)| name)
        .filter(|name| known(name))
        .or_else(|| spec_primary.filter(|p| known(p)).map(str::to_string));
    let mut actions = Vec::new();
    let Some(primary) = primary else {
        // No primary known at all: nobody is made writable.
        for node in nodes {
            assign(
                &mut st,
                &node.name,
                NodeState::Catchingup,
                None,
                &mut actions,
            );
        }
        return (st, actions);
    };
    st.primary = Some(primary.clone());
    let others: Vec<String> = st.others(&primary);
    // The most conservative sync setting: a failover needs every standby.
    let everyone = SyncConfig {
        standbys: others.clone(),
        quorum: u32::from(!others.is_empty()),
    };
    let held_by_primary = report_of(&primary).map(|r| r.held());
    let (state, sync) = match &held_by_primary {
        // A node that was being promoted is the primary now (so that, if it
        // is down, the usual failover applies to it), under the most
        // conservative sync setting.
        Some(held) if held.state == NodeState::Promote => {
            if others.is_empty() {
                (NodeState::Single, SyncConfig::default())
            } else {
                (NodeState::Primary, everyone.clone())
            }
        }
        Some(held) if held.state.is_writable() || held.state.is_primary_role() => (
            held.state,
            SyncConfig {
                standbys: held.sync_standbys.clone(),
                quorum: held.sync_quorum,
            },
        ),
        _ if others.is_empty() => (NodeState::Single, SyncConfig::default()),
        _ => (NodeState::Primary, everyone.clone()),
    };
    assign_full(
        &mut st,
        &primary,
        state,
        None,
        sync,
        others.clone(),
        &mut actions,
    );
    if let Some(record) = st.nodes.get_mut(&primary) {
        // What may be in force on it: the setting it holds, an older one it
        // may not have replaced yet (unknown: assume every standby).
        record.applied_sync = everyone.clone();
        record.sync_history.insert(
            0,
            SyncEntry {
                generation: first - 1,
                config: everyone,
            },
        );
    }
    for name in &others {
        let held = report_of(name).map(|r| r.held());
        let follows = held
            .as_ref()
            .is_some_and(|h| h.primary.as_deref() == Some(primary.as_str()));
        let next = match held.as_ref().map(|h| h.state) {
            _ if st.nodes[name].maintenance => NodeState::Maintenance,
            Some(s) if s.is_writable() => NodeState::Demoted,
            Some(NodeState::Secondary) if follows => NodeState::Secondary,
            Some(NodeState::WaitStandby) if follows => NodeState::WaitStandby,
            Some(NodeState::Demoted) => NodeState::Demoted,
            _ => NodeState::Catchingup,
        };
        let upstream = (next != NodeState::Demoted).then(|| primary.clone());
        assign(&mut st, name, next, upstream, &mut actions);
        if next == NodeState::Demoted && held.is_some_and(|h| h.state.is_writable()) {
            actions.push(Action::Fence { node: name.clone() });
        }
    }
    // The old monitor had demoted the primary (or it holds a standby
    // state): it is not writable, so a failover from it starts now.
    let primary_not_writable = held_by_primary
        .as_ref()
        .is_some_and(|h| !(h.state.is_writable() || h.state.is_primary_role()));
    if primary_not_writable {
        crate::failover::begin_failover(&mut st, config, &mut actions);
    }
    debug_assert!(
        st.nodes
            .values()
            .filter(|n| n.assignment.state.is_writable())
            .count()
            <= 1
    );
    (st, actions)
}
