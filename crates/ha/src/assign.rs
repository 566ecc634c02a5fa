//! Setting a node's assignment (the only way one changes: generation bumped,
//! `Action::Assign` emitted) and the assignment rule 1 gives the primary.

use crate::config::Config;
use crate::event::Action;
use crate::states::{ClusterState, NodeState, SyncConfig, SyncEntry};

/// Sets a standby-style assignment (no sync settings). No-op when unchanged.
pub(crate) fn assign(
    st: &mut ClusterState,
    node: &str,
    state: NodeState,
    primary: Option<String>,
    actions: &mut Vec<Action>,
) -> bool {
    assign_full(
        st,
        node,
        state,
        primary,
        SyncConfig::default(),
        vec![],
        actions,
    )
}

/// Sets a full assignment; bumps the generation and emits `Action::Assign` when
/// anything differs from the current one. Returns whether it changed.
pub(crate) fn assign_full(
    st: &mut ClusterState,
    node: &str,
    state: NodeState,
    primary: Option<String>,
    sync: SyncConfig,
    standbys: Vec<String>,
    actions: &mut Vec<Action>,
) -> bool {
    let now = st.now_ms;
    let next = st.generation + 1;
    let Some(rec) = st.nodes.get_mut(node) else {
        return false;
    };
    let a = &rec.assignment;
    if a.generation > 0
        && a.state == state
        && a.primary == primary
        && a.sync_standbys == sync.standbys
        && a.sync_quorum == sync.quorum
        && a.standbys == standbys
    {
        return false;
    }
    rec.assignment.state = state;
    rec.assignment.generation = next;
    rec.assignment.primary = primary;
    rec.assignment.sync_standbys = sync.standbys;
    rec.assignment.sync_quorum = sync.quorum;
    rec.assignment.standbys = standbys;
    rec.assigned_ms = now;
    if state.is_primary_role() || state == NodeState::Promote {
        // Keep every sync setting the node may apply until it confirms a newer
        // one (a promoting node is writable under its own).
        rec.sync_history.push(SyncEntry {
            generation: next,
            config: SyncConfig {
                standbys: rec.assignment.sync_standbys.clone(),
                quorum: rec.assignment.sync_quorum,
            },
        });
    }
    st.generation = next;
    actions.push(Action::Assign(rec.assignment.clone()));
    true
}

/// Rule 1: the writable state and sync setting the primary `p` should have now.
pub(crate) fn primary_assignment(
    st: &ClusterState,
    p: &str,
    cfg: &Config,
) -> (NodeState, SyncConfig, Vec<String>) {
    let now = st.now_ms;
    let others = st.others(p);
    let healthy: Vec<String> = others
        .iter()
        .filter(|n| {
            let r = &st.nodes[n.as_str()];
            r.assignment.state == NodeState::Secondary
                && r.assignment.primary.as_deref() == Some(p)
                && r.sync_member(&st.nodes[p], now, cfg)
        })
        .cloned()
        .collect();
    if others.is_empty() {
        (NodeState::Single, SyncConfig::default(), others)
    } else if healthy.is_empty() {
        (NodeState::WaitPrimary, SyncConfig::default(), others)
    } else {
        let sync = SyncConfig {
            standbys: healthy,
            quorum: 1,
        };
        (NodeState::Primary, sync, others)
    }
}
