//! Read-only view of a cluster for the driver, the API and the UI: [`health`].

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::detect::primary_failed;
use crate::states::{ClusterState, NodeState, Phase, TransitionKind};

/// How commits are protected right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Primary waits for `ANY sync_quorum (sync_standbys)`.
    Sync,
    /// Standbys exist but none is usable: commits are async (degraded).
    AsyncFallback,
    /// No standby at all (`single`), or no writable primary.
    None,
}

/// One node as seen by the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub name: String,
    pub assigned: NodeState,
    pub generation: u64,
    pub reported: Option<NodeState>,
    /// Keeper reported the assigned state at the assignment's generation.
    pub reached: bool,
    pub keeper_reachable: bool,
    pub pg_reachable: bool,
    pub in_sync_set: bool,
    pub priority: u8,
    pub maintenance: bool,
    pub lsn: u64,
    pub timeline: u32,
    /// Bytes behind the primary's last reported LSN (standbys only).
    pub lag_bytes: Option<u64>,
    pub last_report_age_ms: Option<u64>,
}

/// A running failover or switchover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionStatus {
    pub kind: TransitionKind,
    pub old_primary: String,
    pub target: Option<String>,
    /// `draining`, `collect_lsn`, `fast_forward` or `promoting`.
    pub phase: String,
    pub candidate: Option<String>,
    pub started_ms: u64,
    pub waiting_on: Vec<String>,
    /// Why it cannot proceed (None while it progresses normally).
    pub blocked: Option<String>,
}

/// Summary of one database cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHealth {
    pub primary: Option<String>,
    /// Nodes assigned a writable state (`promote` only once confirmed). At most one.
    pub writable_nodes: Vec<String>,
    pub sync_mode: SyncMode,
    pub sync_standbys: Vec<String>,
    pub sync_quorum: u32,
    /// True during a failover *or* a switchover (see `transition.kind`).
    pub failover_in_progress: bool,
    pub transition: Option<TransitionStatus>,
    pub degraded: bool,
    pub degraded_reasons: Vec<String>,
    pub nodes: Vec<NodeHealth>,
}

/// Computes the health summary at `now_ms`. Pure.
pub fn health(state: &ClusterState, now_ms: u64, config: &Config) -> ClusterHealth {
    let now = now_ms.max(state.now_ms);
    let mut st = state.clone();
    st.now_ms = now;
    let mut reasons = Vec::new();
    let prec = st.primary_record();
    let (sync_standbys, sync_quorum) = prec
        .map(|p| (p.assignment.sync_standbys.clone(), p.assignment.sync_quorum))
        .unwrap_or_default();
    let has_standbys = prec.is_some_and(|p| !st.others(&p.name).is_empty());
    let sync_mode = match prec.map(|p| p.assignment.state) {
        Some(NodeState::Primary) => SyncMode::Sync,
        Some(NodeState::Draining) if sync_quorum > 0 => SyncMode::Sync,
        Some(NodeState::WaitPrimary | NodeState::Draining) if has_standbys => {
            SyncMode::AsyncFallback
        }
        _ => SyncMode::None,
    };
    let writable_nodes: Vec<String> = st
        .nodes
        .values()
        .filter(|n| {
            let s = n.assignment.state;
            (s.is_writable() && s != NodeState::Promote) || (s == NodeState::Promote && n.reached())
        })
        .map(|n| n.name.clone())
        .collect();
    match prec {
        None => reasons.push("no primary".to_string()),
        Some(p) => {
            if sync_mode == SyncMode::AsyncFallback {
                reasons.push(format!(
                    "primary {} is in async fallback (no healthy synchronous standby)",
                    p.name
                ));
            }
            if st.transition.is_none() && !p.pg_alive(now, config) {
                if primary_failed(&st, config) {
                    reasons.push(format!(
                        "primary {} has failed and no reachable secondary with priority > 0 can take over",
                        p.name
                    ));
                } else {
                    reasons.push(format!(
                        "primary {} is unreachable from the monitor but standbys still stream from it (no failover)",
                        p.name
                    ));
                }
            }
        }
    }
    let transition = st.transition.as_ref().map(|tr| {
        let (phase, candidate) = match &tr.phase {
            Phase::Draining => ("draining", tr.target.clone()),
            Phase::CollectLsn => ("collect_lsn", None),
            Phase::FastForward { candidate, .. } => ("fast_forward", Some(candidate.clone())),
            Phase::Promoting { candidate } => ("promoting", Some(candidate.clone())),
        };
        let what = match tr.kind {
            TransitionKind::Failover => "failover",
            TransitionKind::Switchover => "switchover",
        };
        match &tr.blocked {
            Some(b) => reasons.push(format!("{what} from {} blocked: {b}", tr.old_primary)),
            None => reasons.push(format!(
                "{what} from {} in progress ({phase})",
                tr.old_primary
            )),
        }
        TransitionStatus {
            kind: tr.kind,
            old_primary: tr.old_primary.clone(),
            target: tr.target.clone(),
            phase: phase.to_string(),
            candidate,
            started_ms: tr.started_ms,
            waiting_on: tr.waiting_on.clone(),
            blocked: tr.blocked.clone(),
        }
    });
    let primary_lsn = prec.map(|p| p.lsn);
    let mut nodes = Vec::new();
    for n in st.nodes.values().filter(|n| !n.is_dropped()) {
        let is_primary = st.primary.as_deref() == Some(n.name.as_str());
        let lag = if is_primary {
            None
        } else {
            primary_lsn.map(|p| p.saturating_sub(n.lsn))
        };
        let keeper = n.keeper_alive(now, config);
        let age = n.last_report_ms.map(|t| now.saturating_sub(t));
        if !is_primary {
            let s = n.assignment.state;
            if n.maintenance {
                reasons.push(format!("{} is in maintenance", n.name));
            } else if !keeper {
                reasons.push(format!("{}: keeper unreachable", n.name));
            } else if matches!(s, NodeState::WaitStandby | NodeState::Catchingup) {
                reasons.push(format!(
                    "{} is catching up (lag {} bytes)",
                    n.name,
                    lag.unwrap_or(0)
                ));
            } else if s == NodeState::Demoted {
                reasons.push(format!(
                    "{} is demoted (former primary, not yet rejoined)",
                    n.name
                ));
            }
        }
        if keeper && age.is_some_and(|a| a > 3 * config.report_interval_ms) {
            reasons.push(format!(
                "{}: keeper report late ({} ms)",
                n.name,
                age.unwrap_or(0)
            ));
        }
        if !n.reached() && now.saturating_sub(n.assigned_ms) > config.failure_timeout_ms {
            reasons.push(format!(
                "{} has not applied its assignment ({:?}, generation {})",
                n.name, n.assignment.state, n.assignment.generation
            ));
        }
        nodes.push(NodeHealth {
            name: n.name.clone(),
            assigned: n.assignment.state,
            generation: n.assignment.generation,
            reported: n.reported,
            reached: n.reached(),
            keeper_reachable: keeper,
            pg_reachable: n.pg_alive(now, config),
            in_sync_set: sync_standbys.contains(&n.name),
            priority: n.priority,
            maintenance: n.maintenance,
            lsn: n.lsn,
            timeline: n.timeline,
            lag_bytes: lag,
            last_report_age_ms: age,
        });
    }
    ClusterHealth {
        primary: st.primary.clone(),
        writable_nodes,
        sync_mode,
        sync_standbys,
        sync_quorum,
        failover_in_progress: st.transition.is_some(),
        transition,
        degraded: !reasons.is_empty(),
        degraded_reasons: reasons,
        nodes,
    }
}
