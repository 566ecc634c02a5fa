//! Transition driver shared by failover and switchover: [`advance`] runs one
//! decision of the current phase (see `failover.rs` and `switchover.rs`) and applies
//! its outcome; [`finish`] installs the promoted node as primary.
//!
//! Rule 4 (single writer) is enforced here: `promote` is only assigned when no other
//! node holds a writable assignment (the old primary is `demoted` or `draining`).

use crate::assign::primary_assignment;
use crate::assign::{assign, assign_full};
use crate::config::Config;
use crate::detect::primary_failed;
use crate::event::{Action, PromotionReason};
use crate::failover::{
    collect, enroll, fast_forward, old_primary_back, record_reports, start_failover,
};
use crate::phase::Next;
use crate::states::{
    ClusterState, LsnPos, NodeState, Phase, SyncConfig, Transition, TransitionKind,
};
use crate::switchover::draining;

/// Advances the running transition by one decision.
pub(crate) fn advance(st: &mut ClusterState, cfg: &Config, actions: &mut Vec<Action>) {
    let Some(tr) = st.transition.clone() else {
        return;
    };
    let mut tr = tr;
    tr.blocked = None;
    tr.waiting_on.clear();
    if tr.kind == TransitionKind::Failover {
        record_reports(st, &mut tr);
    }
    let next = match tr.phase.clone() {
        Phase::Draining => draining(st, &mut tr, cfg),
        Phase::CollectLsn | Phase::FastForward { .. }
            if old_primary_back(st, &tr, cfg).is_some() =>
        {
            old_primary_back(st, &tr, cfg).expect("checked")
        }
        Phase::CollectLsn => {
            st.transition = Some(tr);
            enroll(st, cfg, actions);
            tr = st.transition.clone().expect("set");
            record_reports(st, &mut tr);
            collect(st, &mut tr, cfg)
        }
        Phase::FastForward {
            candidate,
            upstream,
            target,
        } => fast_forward(st, &mut tr, cfg, &candidate, &upstream, target),
        Phase::Promoting { candidate } if !st.nodes.contains_key(&candidate) => {
            tr.blocked = Some(format!("promotion candidate {candidate} is unknown"));
            Next::Wait
        }
        Phase::Promoting { candidate } => {
            let c = &st.nodes[&candidate];
            if c.reached() && c.pg_running && !c.is_in_recovery {
                Next::Finish(candidate)
            } else if tr.kind == TransitionKind::Switchover && !c.keeper_alive(st.now_ms, cfg) {
                // The old primary is intact (drained, read-only): roll back to it.
                // The target gets `demoted` first; if it did promote while cut off,
                // its keeper fences itself (no monitor, no standby) and later rewinds.
                Next::AbortPromotion(candidate.clone(), format!(
                    "switchover target {candidate} became unreachable before confirming its promotion"
                ))
            } else {
                if !c.keeper_alive(st.now_ms, cfg) {
                    tr.blocked = Some(format!(
                        "{candidate} is unreachable; its promotion is not confirmed"
                    ));
                }
                tr.waiting_on = vec![candidate];
                Next::Wait
            }
        }
    };
    match next {
        Next::Wait => st.transition = Some(tr),
        Next::Abort(reason) => {
            st.transition = None;
            actions.push(Action::TransitionAborted {
                kind: tr.kind,
                reason,
            });
            if tr.kind == TransitionKind::Switchover && primary_failed(st, cfg) {
                start_failover(st, cfg, actions);
            }
        }
        Next::AbortPromotion(candidate, reason) => {
            assign(st, &candidate, NodeState::Demoted, None, actions);
            st.transition = None;
            actions.push(Action::TransitionAborted {
                kind: tr.kind,
                reason,
            });
        }
        Next::FastForward(candidate, upstream, target) => {
            assign(
                st,
                &candidate,
                NodeState::FastForward,
                Some(upstream.clone()),
                actions,
            );
            tr.waiting_on = vec![candidate.clone()];
            tr.phase = Phase::FastForward {
                candidate,
                upstream,
                target,
            };
            st.transition = Some(tr);
        }
        Next::Promote(candidate) => {
            // Rule 4: nobody else may hold a writable assignment.
            if st
                .nodes
                .values()
                .any(|n| n.name != candidate && n.assignment.state.is_writable())
            {
                tr.blocked = Some("another node still holds a writable assignment".into());
                st.transition = Some(tr);
                return;
            }
            // Synchronous from its first writable moment: the close reporters
            // (the ones `finish` makes its sync standbys) confirm every commit,
            // so nothing it acknowledges before `finish` is on it alone.
            let sync = promote_sync(st, &tr, &candidate, cfg);
            let followers = sync.standbys.clone();
            assign_full(
                st,
                &candidate,
                NodeState::Promote,
                None,
                sync,
                vec![],
                actions,
            );
            // Its synchronous standbys follow it from now (cascading until
            // the promotion ends, then on its new timeline), so its first
            // commits are confirmed without waiting for `finish`.
            for name in followers {
                assign(
                    st,
                    &name,
                    NodeState::Secondary,
                    Some(candidate.clone()),
                    actions,
                );
            }
            tr.waiting_on = vec![candidate.clone()];
            tr.phase = Phase::Promoting { candidate };
            st.transition = Some(tr);
        }
        Next::Finish(candidate) => finish(st, tr, &candidate, cfg, actions),
    }
}

/// Whether `name`, a participant of the transition, is close enough to the
/// candidate's position `pre` to be its synchronous standby at once; `None`
/// for nodes that take no part (they keep their assignment).
fn closeness(
    st: &ClusterState,
    tr: &Transition,
    pre: LsnPos,
    name: &str,
    cfg: &Config,
) -> Option<bool> {
    let r = &st.nodes[name];
    // Pointed at the candidate with its promotion: it follows it already
    // (its position may be past `pre`, on the new timeline); keep it.
    let candidate = match &tr.phase {
        Phase::Promoting { candidate } => Some(candidate.as_str()),
        _ => None,
    };
    if r.assignment.state == NodeState::Secondary
        && candidate.is_some()
        && r.assignment.primary.as_deref() == candidate
    {
        return None;
    }
    let pos = match r.assignment.state {
        NodeState::ReportLsn | NodeState::FastForward => tr.reports.get(name).copied(),
        NodeState::Secondary if tr.kind == TransitionKind::Switchover => Some(r.pos()),
        _ => return None,
    };
    Some(pos.is_some_and(|p| {
        p.timeline == pre.timeline && p.lsn <= pre.lsn && pre.lsn - p.lsn <= cfg.catchup_lag_bytes
    }))
}

/// The sync setting a candidate is promoted under: `ANY 1` of the
/// participants `finish` will make its synchronous standbys (close to it,
/// keeper alive, not in maintenance); none when there are none (it will be
/// `wait_primary`).
fn promote_sync(st: &ClusterState, tr: &Transition, candidate: &str, cfg: &Config) -> SyncConfig {
    let pre = tr.reports.get(candidate).copied().unwrap_or_default();
    let now = st.now_ms;
    let standbys: Vec<String> = st
        .others(candidate)
        .into_iter()
        .filter(|name| *name != tr.old_primary)
        .filter(|name| {
            let r = &st.nodes[name.as_str()];
            closeness(st, tr, pre, name, cfg) == Some(true)
                && r.keeper_alive(now, cfg)
                && !r.maintenance
        })
        .collect();
    if standbys.is_empty() {
        SyncConfig::default()
    } else {
        SyncConfig {
            standbys,
            quorum: 1,
        }
    }
}

/// The candidate confirmed its promotion: it becomes the primary.
fn finish(
    st: &mut ClusterState,
    tr: Transition,
    new: &str,
    cfg: &Config,
    actions: &mut Vec<Action>,
) {
    let now = st.now_ms;
    let switchover = tr.kind == TransitionKind::Switchover;
    let pre = tr.reports.get(new).copied().unwrap_or_default();
    st.primary = Some(new.to_string());
    st.transition = None;
    for name in [new, tr.old_primary.as_str()] {
        if let Some(r) = st.nodes.get_mut(name) {
            // The sync setting it was promoted under stays until it confirms
            // a newer one: commits it acknowledged were confirmed under it.
            let promoted_at = (name == new && r.assignment.state == NodeState::Promote)
                .then_some(r.assignment.generation);
            r.sync_history
                .retain(|e| promoted_at.is_some_and(|g| e.generation >= g));
            r.applied_sync = Default::default();
            r.sync_ack_lsn = None;
        }
    }
    for name in st.others(new) {
        let r = &st.nodes[&name];
        let follow = Some(new.to_string());
        if name == tr.old_primary {
            if switchover {
                assign(st, &name, NodeState::Catchingup, follow, actions);
            }
            continue;
        }
        let Some(close) = closeness(st, &tr, pre, &name, cfg) else {
            continue;
        };
        let next = if close && r.keeper_alive(now, cfg) && !r.maintenance {
            NodeState::Secondary
        } else {
            NodeState::Catchingup
        };
        assign(st, &name, next, follow, actions);
    }
    let (state, sync, standbys) = primary_assignment(st, new, cfg);
    assign_full(st, new, state, None, sync, standbys, actions);
    let old = &st.nodes[&tr.old_primary];
    let old_lsn = tr
        .drain_pos
        .map(|p| p.lsn)
        .or_else(|| old.last_report_ms.map(|_| tr.old_primary_pos.lsn));
    let n = &st.nodes[new];
    actions.push(Action::PrimaryChanged {
        old: Some(tr.old_primary.clone()),
        new: new.to_string(),
        reason: if switchover {
            PromotionReason::Switchover
        } else {
            PromotionReason::Failover
        },
        generation: n.assignment.generation,
        old_lsn,
        new_lsn: n.lsn,
    });
}
