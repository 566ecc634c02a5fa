//! Transitions: failover (rule 3) and switchover (rule 6).
//!
//! Failover: old primary `demoted` (+ `Fence`), every reachable standby
//! `report_lsn`; wait for the sync quorum rule on every sync setting that may be in
//! force on the old primary (`|S| - k + 1` members of `S` must report), and for all
//! reachable standbys (up to `report_lsn_timeout_ms`); choose the best promotable
//! reporter by (timeline, LSN, priority, smaller name); if it is behind the most
//! advanced reporter it first goes `fast_forward` from it; then `promote`; once it
//! reports `promote` out of recovery it becomes the primary. A failover that cannot
//! proceed stays blocked (and says why) - unless the old primary comes back, in
//! which case it is aborted and the old primary keeps its role.
//!
//! Switchover: old primary `draining`; once it reported `draining` at LSN L and the
//! target reported LSN >= L, the target gets `promote`; then the old primary follows
//! it (`catchingup`). Before `promote`, a dead target / timeout aborts (old primary
//! writable again); during `promote`, an unreachable target is `demoted` and the
//! switchover rolled back to the drained old primary.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::config::Config;
use crate::event::{Action, HaError, PromotionReason};
use crate::reconcile::{primary_assignment, primary_failed};
use crate::states::{ClusterState, LsnPos, NodeState, Phase, Transition, TransitionKind};
use crate::step::{assign, assign_full};

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
    let sync = crate::states::SyncConfig { standbys: a.sync_standbys, quorum: a.sync_quorum };
    let old_pos = prec.pos();
    assign_full(st, &p, NodeState::Draining, None, sync, a.standbys, actions);
    st.transition = Some(new_transition(TransitionKind::Switchover, p, now, old_pos));
    st.transition.as_mut().expect("set").target = Some(target.to_string());
    Ok(())
}

fn new_transition(kind: TransitionKind, old: String, now: u64, pos: LsnPos) -> Transition {
    Transition {
        kind,
        old_primary: old,
        target: None,
        started_ms: now,
        phase: if kind == TransitionKind::Failover { Phase::CollectLsn } else { Phase::Draining },
        old_primary_pos: pos,
        sync_ack_lsn: None,
        quorum_sets: vec![],
        participants: vec![],
        reports: BTreeMap::new(),
        drain_pos: None,
        waiting_on: vec![],
        blocked: None,
    }
}

/// Starts a failover of the current primary if some reachable secondary with
/// priority > 0 exists. Returns whether it started.
pub(crate) fn start_failover(st: &mut ClusterState, cfg: &Config, actions: &mut Vec<Action>) -> bool {
    let now = st.now_ms;
    let Some(old) = st.primary.clone() else {
        return false;
    };
    let has_candidate = st.nodes.values().any(|n| {
        n.name != old
            && n.assignment.state == NodeState::Secondary
            && !n.maintenance
            && n.priority > 0
            && n.keeper_alive(now, cfg)
    });
    if !has_candidate {
        return false;
    }
    let orec = st.nodes[&old].clone();
    let mut tr = new_transition(TransitionKind::Failover, old.clone(), now, orec.pos());
    tr.sync_ack_lsn = orec.sync_ack_lsn;
    for e in std::iter::once(&orec.applied_sync).chain(orec.sync_history.iter().map(|e| &e.config)) {
        if e.quorum > 0 && !tr.quorum_sets.contains(e) {
            tr.quorum_sets.push(e.clone());
        }
    }
    // Demote before anything else can be promoted (rule 4).
    assign(st, &old, NodeState::Demoted, None, actions);
    actions.push(Action::Fence { node: old });
    st.transition = Some(tr);
    enroll(st, cfg, actions);
    true
}

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
        Phase::CollectLsn => {
            st.transition = Some(tr);
            enroll(st, cfg, actions);
            tr = st.transition.clone().expect("set");
            record_reports(st, &mut tr);
            collect(st, &mut tr, cfg)
        }
        Phase::FastForward { candidate, upstream, target } => {
            fast_forward(st, &mut tr, cfg, &candidate, &upstream, target)
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
            actions.push(Action::TransitionAborted { kind: tr.kind, reason });
            if tr.kind == TransitionKind::Switchover && primary_failed(st, cfg) {
                start_failover(st, cfg, actions);
            }
        }
        Next::AbortPromotion(candidate, reason) => {
            assign(st, &candidate, NodeState::Demoted, None, actions);
            st.transition = None;
            actions.push(Action::TransitionAborted { kind: tr.kind, reason });
        }
        Next::FastForward(candidate, upstream, target) => {
            assign(st, &candidate, NodeState::FastForward, Some(upstream.clone()), actions);
            tr.waiting_on = vec![candidate.clone()];
            tr.phase = Phase::FastForward { candidate, upstream, target };
            st.transition = Some(tr);
        }
        Next::Promote(candidate) => {
            // Rule 4: nobody else may hold a writable assignment.
            if st.nodes.values().any(|n| n.name != candidate && n.assignment.state.is_writable()) {
                tr.blocked = Some("another node still holds a writable assignment".into());
                st.transition = Some(tr);
                return;
            }
            assign(st, &candidate, NodeState::Promote, None, actions);
            tr.waiting_on = vec![candidate.clone()];
            tr.phase = Phase::Promoting { candidate };
            st.transition = Some(tr);
        }
        Next::Finish(candidate) => finish(st, tr, &candidate, cfg, actions),
    }
}

enum Next {
    Wait,
    Abort(String),
    AbortPromotion(String, String),
    FastForward(String, String, LsnPos),
    Promote(String),
    Finish(String),
}

/// Assigns `report_lsn` to every reachable standby not yet participating.
fn enroll(st: &mut ClusterState, cfg: &Config, actions: &mut Vec<Action>) {
    let now = st.now_ms;
    let Some(mut tr) = st.transition.clone() else {
        return;
    };
    let joining: Vec<String> = st
        .nodes
        .values()
        .filter(|n| {
            n.name != tr.old_primary
                && !n.maintenance
                && matches!(n.assignment.state, NodeState::Secondary | NodeState::Catchingup)
                && n.keeper_alive(now, cfg)
        })
        .map(|n| n.name.clone())
        .collect();
    for name in joining {
        assign(st, &name, NodeState::ReportLsn, None, actions);
        if !tr.participants.contains(&name) {
            tr.participants.push(name);
        }
    }
    st.transition = Some(tr);
}

/// Records final positions of participants that reached `report_lsn`/`fast_forward`.
fn record_reports(st: &ClusterState, tr: &mut Transition) {
    for name in &tr.participants {
        let Some(n) = st.nodes.get(name) else { continue };
        let s = n.assignment.state;
        if !n.is_dropped() && n.reached() && matches!(s, NodeState::ReportLsn | NodeState::FastForward) {
            let e = tr.reports.entry(name.clone()).or_insert(n.pos());
            *e = (*e).max(n.pos());
        }
    }
}

/// Failover: decide once enough final LSNs are in.
fn collect(st: &ClusterState, tr: &mut Transition, cfg: &Config) -> Next {
    let now = st.now_ms;
    let alive = |n: &str| st.nodes.get(n).is_some_and(|r| !r.is_dropped() && r.keeper_alive(now, cfg));
    let reports: BTreeMap<String, LsnPos> = tr
        .reports
        .iter()
        .filter(|(n, _)| st.nodes.get(n.as_str()).is_some_and(|r| !r.is_dropped()))
        .map(|(n, p)| (n.clone(), *p))
        .collect();
    let mut blocked = Vec::new();
    for qs in &tr.quorum_sets {
        let need = qs.standbys.len() + 1 - (qs.quorum as usize).min(qs.standbys.len());
        let have = qs.standbys.iter().filter(|s| reports.contains_key(*s)).count();
        if have < need {
            let missing: Vec<String> =
                qs.standbys.iter().filter(|s| !reports.contains_key(*s)).cloned().collect();
            let unreachable: Vec<&String> = missing.iter().filter(|m| !alive(m)).collect();
            if missing.len() - unreachable.len() < need - have {
                blocked.push(format!(
                    "sync quorum ANY {} of [{}] needs {need} final LSNs, has {have}; unreachable: [{}]",
                    qs.quorum,
                    qs.standbys.join(", "),
                    unreachable.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            tr.waiting_on.extend(missing);
        }
    }
    let pending: Vec<String> = tr
        .participants
        .iter()
        .filter(|p| !reports.contains_key(*p) && alive(p))
        .filter(|p| st.nodes[p.as_str()].assignment.state == NodeState::ReportLsn)
        .cloned()
        .collect();
    let patient = now.saturating_sub(tr.started_ms) < cfg.report_lsn_timeout_ms;
    if patient {
        tr.waiting_on.extend(pending);
    }
    tr.waiting_on.sort();
    tr.waiting_on.dedup();
    if !patient && blocked.is_empty() && !tr.waiting_on.is_empty() {
        blocked.push(format!(
            "timed out waiting for the final LSN of [{}]",
            tr.waiting_on.join(", ")
        ));
    }
    if blocked.is_empty() && reports.is_empty() && tr.waiting_on.is_empty() {
        blocked.push("no standby reported its final LSN and none is reachable".into());
    }
    if blocked.is_empty() && tr.waiting_on.is_empty() {
        match choose(st, &reports, tr, cfg) {
            Ok(next) => return next,
            Err(reason) => blocked.push(reason),
        }
    }
    if blocked.is_empty() {
        return Next::Wait;
    }
    tr.blocked = Some(blocked.join("; "));
    let old = &st.nodes[&tr.old_primary];
    let back = old.last_pg_ok_ms.is_some_and(|t| t > tr.started_ms) && old.pg_alive(now, cfg);
    if back {
        return Next::Abort(format!(
            "old primary {} is reachable again and the failover is blocked: {}",
            tr.old_primary,
            tr.blocked.as_deref().unwrap_or("")
        ));
    }
    Next::Wait
}

/// Picks the candidate among reporters (or explains why none can be promoted).
fn choose(
    st: &ClusterState,
    reports: &BTreeMap<String, LsnPos>,
    tr: &Transition,
    cfg: &Config,
) -> Result<Next, String> {
    let now = st.now_ms;
    let best = *reports.values().max().ok_or("no final LSN reported")?;
    if let Some(ack) = tr.sync_ack_lsn {
        if best.lsn < ack {
            return Err(format!("no standby reported the sync-acknowledged LSN {ack}"));
        }
    }
    let chosen = reports
        .iter()
        .filter(|(n, _)| {
            let r = &st.nodes[n.as_str()];
            r.priority > 0 && !r.maintenance && r.keeper_alive(now, cfg)
        })
        .max_by_key(|(n, p)| (**p, st.nodes[n.as_str()].priority, Reverse(n.as_str())))
        .map(|(n, p)| (n.clone(), *p));
    let Some((chosen, pos)) = chosen else {
        return Err("no reachable standby with priority > 0 reported its LSN".into());
    };
    if pos >= best {
        return Ok(Next::Promote(chosen));
    }
    let upstream = reports
        .iter()
        .find(|(n, p)| **p == best && st.nodes[n.as_str()].keeper_alive(now, cfg))
        .map(|(n, _)| n.clone());
    match upstream {
        Some(u) => Ok(Next::FastForward(chosen, u, best)),
        None => Err(format!(
            "the most advanced standby (lsn {}) is unreachable and {chosen} is behind it",
            best.lsn
        )),
    }
}

fn fast_forward(
    st: &ClusterState,
    tr: &mut Transition,
    cfg: &Config,
    candidate: &str,
    upstream: &str,
    target: LsnPos,
) -> Next {
    let now = st.now_ms;
    let c = &st.nodes[candidate];
    let others_best = tr
        .reports
        .iter()
        .filter(|(n, _)| n.as_str() != candidate)
        .map(|(_, p)| *p)
        .max()
        .unwrap_or_default()
        .max(target);
    let pos = tr.reports.get(candidate).copied().unwrap_or_default();
    if c.reached() && pos >= others_best {
        return Next::Promote(candidate.to_string());
    }
    tr.waiting_on = vec![candidate.to_string()];
    for (n, what) in [(candidate, "candidate"), (upstream, "fast-forward source")] {
        if !st.nodes.get(n).is_some_and(|r| r.keeper_alive(now, cfg)) {
            tr.blocked = Some(format!("{what} {n} is unreachable"));
        }
    }
    Next::Wait
}

/// Switchover: wait for the old primary to drain and the target to catch up.
fn draining(st: &ClusterState, tr: &mut Transition, cfg: &Config) -> Next {
    let now = st.now_ms;
    if primary_failed(st, cfg) {
        return Next::Abort(format!("primary {} failed during switchover", tr.old_primary));
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

/// The candidate confirmed its promotion: it becomes the primary.
fn finish(st: &mut ClusterState, tr: Transition, new: &str, cfg: &Config, actions: &mut Vec<Action>) {
    let now = st.now_ms;
    let switchover = tr.kind == TransitionKind::Switchover;
    let pre = tr.reports.get(new).copied().unwrap_or_default();
    st.primary = Some(new.to_string());
    st.transition = None;
    for name in [new, tr.old_primary.as_str()] {
        if let Some(r) = st.nodes.get_mut(name) {
            r.sync_history.clear();
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
        let pos = match r.assignment.state {
            NodeState::ReportLsn | NodeState::FastForward => tr.reports.get(&name).copied(),
            NodeState::Secondary if switchover => Some(r.pos()),
            _ => continue,
        };
        let close = pos.is_some_and(|p| {
            p.timeline == pre.timeline && p.lsn <= pre.lsn && pre.lsn - p.lsn <= cfg.catchup_lag_bytes
        });
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
    let old_lsn = tr.drain_pos.map(|p| p.lsn).or_else(|| old.last_report_ms.map(|_| tr.old_primary_pos.lsn));
    let n = &st.nodes[new];
    actions.push(Action::PrimaryChanged {
        old: Some(tr.old_primary.clone()),
        new: new.to_string(),
        reason: if switchover { PromotionReason::Switchover } else { PromotionReason::Failover },
        generation: n.assignment.generation,
        old_lsn,
        new_lsn: n.lsn,
    });
}
