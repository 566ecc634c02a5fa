//! Switchover (rule 6).
//!
//! Old primary `draining` (read-only, sessions terminated, sync settings kept); once
//! it reported `draining` at LSN L and the target reported LSN >= L (same timeline),
//! the target gets `promote`; then the old primary follows it (`catchingup`).
//! Before `promote`, a dead target or `switchover_timeout_ms` aborts (old primary
//! writable again); a primary failure turns it into a failover; during `promote`,
//! an unreachable target is `demoted` and the switchover rolled back to the drained
//! old primary (see `transition.rs`).

use crate::assign::assign_full;
use crate::config::Config;
use crate::detect::primary_failed;
use crate::error::HaError;
use crate::event::Action;
use crate::phase::{new_transition, Next};
use crate::states::{ClusterState, NodeState, SyncConfig, Transition, TransitionKind};

/// Validates and starts a switchover to `target`.
pub(crate) fn start_switchover(
    st: &mut ClusterState,
    target: &str,
    cfg: &Config,
    actions: &mut Vec<Action>,
) -> Result<(), HaError> {
    let now = st.now_ms;
    if st.transition.is_some() {
        return Err(HaError::TransitionInProgress);
    }
    let p = st.primary.clone().ok_or(HaError::NoPrimary)?;
    let refuse = |reason: &str| HaError::TargetNotEligible {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    let t = match st.nodes.get(target) {
        Some(t) if !t.is_dropped() => t,
        _ => return Err(HaError::UnknownNode(target.to_string())),
    };
    if target == p {
        return Err(refuse("it is already the primary"));
    }
    let prec = &st.nodes[&p];
    if !prec.pg_alive(now, cfg) || !prec.assignment.state.is_writable() {
        return Err(HaError::PrimaryUnhealthy(p));
    }
    if t.maintenance || t.assignment.state != NodeState::Secondary || !t.reached() {
        return Err(refuse("it is not a secondary"));
    }
    if !t.keeper_alive(now, cfg) || !t.sync_healthy(now, cfg) {
        return Err(refuse("it is not healthy (unreachable or not streaming)"));
    }
    if prec.lsn.saturating_sub(t.lsn) > cfg.catchup_lag_bytes {
        return Err(refuse("it is not caught up"));
    }
    let a = prec.assignment.clone();
    let sync = SyncConfig {
        standbys: a.sync_standbys,
        quorum: a.sync_quorum,
    };
    let old_pos = prec.pos();
    assign_full(st, &p, NodeState::Draining, None, sync, a.standbys, actions);
    st.transition = Some(new_transition(TransitionKind::Switchover, p, now, old_pos));
    st.transition.as_mut().expect("set").target = Some(target.to_string());
    Ok(())
}

/// Switchover: wait for the old primary to drain and the target to catch up.
pub(crate) fn draining(st: &ClusterState, tr: &mut Transition, cfg: &Config) -> Next {
    let now = st.now_ms;
    if primary_failed(st, cfg) {
        return Next::Abort(format!(
            "primary {} failed during switchover",
            tr.old_primary
        ));
    }
    let target = tr.target.clone().unwrap_or_default();
    let healthy = st.nodes.get(&target).is_some_and(|t| {
        !t.is_dropped()
            && t.assignment.state == NodeState::Secondary
            && t.keeper_alive(now, cfg)
            && t.sync_healthy(now, cfg)
    });
    if !healthy {
        return Next::Abort(format!("switchover target {target} is no longer healthy"));
    }
    if now.saturating_sub(tr.started_ms) > cfg.switchover_timeout_ms {
        return Next::Abort("switchover timed out".into());
    }
    let old = &st.nodes[&tr.old_primary];
    if !old.reached() {
        tr.waiting_on = vec![tr.old_primary.clone()];
        return Next::Wait;
    }
    let drain = old.pos();
    tr.drain_pos = Some(drain);
    let t = &st.nodes[&target];
    if t.timeline == drain.timeline && t.lsn >= drain.lsn {
        tr.reports.insert(target.clone(), t.pos());
        return Next::Promote(target);
    }
    tr.waiting_on = vec![target];
    Next::Wait
}
