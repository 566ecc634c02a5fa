//! Failover (rule 3).
//!
//! Old primary `demoted` (+ `Fence`), every reachable standby `report_lsn`; wait for
//! the sync quorum rule on every sync setting that may be in force on the old primary
//! (`|S| - k + 1` members of `S` must report), and for all reachable standbys (up to
//! `report_lsn_timeout_ms`); choose the best promotable reporter by (timeline, LSN,
//! priority, smaller name); if it is behind the most advanced reporter it first goes
//! `fast_forward` from it; then `promote`; once it reports `promote` out of recovery
//! it becomes the primary (`transition::finish`). A failover that cannot proceed
//! stays blocked (and says why). If the old primary shows PostgreSQL up again
//! without having confirmed `demoted` before anyone was assigned `promote`, the
//! failover is aborted and the old primary keeps its role.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::assign::assign;
use crate::config::Config;
use crate::event::Action;
use crate::phase::{new_transition, Next};
use crate::states::{ClusterState, LsnPos, NodeState, Transition, TransitionKind};

/// Starts a failover of the current primary if some reachable secondary with
/// priority > 0 exists. Returns whether it started.
pub(crate) fn start_failover(
    st: &mut ClusterState,
    cfg: &Config,
    actions: &mut Vec<Action>,
) -> bool {
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
    begin_failover(st, cfg, actions)
}

/// Starts a failover of the current primary without looking for a
/// candidate first (a rebuilt monitor whose primary was already demoted:
/// standbys join as they report). Returns whether it started.
pub(crate) fn begin_failover(
    st: &mut ClusterState,
    cfg: &Config,
    actions: &mut Vec<Action>,
) -> bool {
    let now = st.now_ms;
    let Some(old) = st.primary.clone() else {
        return false;
    };
    let orec = st.nodes[&old].clone();
    let mut tr = new_transition(TransitionKind::Failover, old.clone(), now, orec.pos());
    tr.sync_ack_lsn = orec.sync_ack_lsn;
    for e in std::iter::once(&orec.applied_sync).chain(orec.sync_history.iter().map(|e| &e.config))
    {
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

/// Assigns `report_lsn` to every reachable standby not yet participating.
pub(crate) fn enroll(st: &mut ClusterState, cfg: &Config, actions: &mut Vec<Action>) {
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
                && matches!(
                    n.assignment.state,
                    NodeState::Secondary | NodeState::Catchingup
                )
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
pub(crate) fn record_reports(st: &ClusterState, tr: &mut Transition) {
    for name in &tr.participants {
        let Some(n) = st.nodes.get(name) else {
            continue;
        };
        let s = n.assignment.state;
        if !n.is_dropped()
            && n.reached()
            && matches!(s, NodeState::ReportLsn | NodeState::FastForward)
        {
            let e = tr.reports.entry(name.clone()).or_insert(n.pos());
            *e = (*e).max(n.pos());
        }
    }
}

/// Failover: decide once enough final LSNs are in.
pub(crate) fn collect(st: &ClusterState, tr: &mut Transition, cfg: &Config) -> Next {
    let now = st.now_ms;
    let alive = |n: &str| {
        st.nodes
            .get(n)
            .is_some_and(|r| !r.is_dropped() && r.keeper_alive(now, cfg))
    };
    let reports: BTreeMap<String, LsnPos> = tr
        .reports
        .iter()
        .filter(|(n, _)| st.nodes.get(n.as_str()).is_some_and(|r| !r.is_dropped()))
        .map(|(n, p)| (n.clone(), *p))
        .collect();
    let mut blocked = Vec::new();
    for qs in &tr.quorum_sets {
        let need = qs.standbys.len() + 1 - (qs.quorum as usize).min(qs.standbys.len());
        let have = qs
            .standbys
            .iter()
            .filter(|s| reports.contains_key(*s))
            .count();
        if have < need {
            let missing: Vec<String> = qs
                .standbys
                .iter()
                .filter(|s| !reports.contains_key(*s))
                .cloned()
                .collect();
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
    Next::Wait
}

/// The old primary shows PostgreSQL up again (keeper report or health check newer
/// than the failover) without having confirmed `demoted`: as long as nobody was
/// assigned `promote`, the failover is aborted and it keeps its role.
pub(crate) fn old_primary_back(st: &ClusterState, tr: &Transition, cfg: &Config) -> Option<Next> {
    let old = st.nodes.get(&tr.old_primary)?;
    let back = old.last_pg_ok_ms.is_some_and(|t| t > tr.started_ms)
        && old.pg_alive(st.now_ms, cfg)
        && !old.reached();
    back.then(|| {
        Next::Abort(format!(
            "old primary {} is reachable again before any promotion",
            tr.old_primary
        ))
    })
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
            return Err(format!(
                "no standby reported the sync-acknowledged LSN {ack}"
            ));
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

pub(crate) fn fast_forward(
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
