//! Steady-state decisions: standby lifecycle, the primary's sync setting, and
//! primary failure detection. Runs after every event, to a fixpoint.
//!
//! Rules implemented here:
//! - `wait_standby -> catchingup` once the primary confirmed an assignment that lists
//!   the standby; `catchingup -> secondary` once it streams, on the primary's
//!   timeline, within `catchup_lag_bytes`; `secondary -> catchingup` when it stops
//!   being sync-healthy while the primary is reachable, or itself goes silent (or
//!   must follow another primary).
//! - Durability (rule 1): primary = `primary` with `ANY 1 (all healthy secondaries)`;
//!   `wait_primary` (async) only while no secondary is healthy; `single` when it has
//!   no standby at all. The primary is only re-configured while it is reachable
//!   (or when its sync set names a removed / maintenance node).
//! - `demoted` (old primary) -> `catchingup` once it reported `demoted` (rule 5).
//! - Failure (rule 2): see [`crate::primary_failed`] (`detect.rs`).

use crate::assign::{assign, assign_full, primary_assignment};
use crate::config::Config;
use crate::detect::primary_failed;
use crate::event::Action;
use crate::states::{ClusterState, NodeRecord, NodeState};
use crate::{failover, transition};

/// Runs the decision rules until nothing changes (bounded).
pub(crate) fn reconcile(st: &mut ClusterState, cfg: &Config, actions: &mut Vec<Action>) {
    for _ in 0..8 {
        let before = (st.generation, st.transition.clone(), st.primary.clone());
        if st.transition.is_some() {
            transition::advance(st, cfg, actions);
        } else if st.primary.is_some()
            && !(primary_failed(st, cfg) && failover::start_failover(st, cfg, actions))
        {
            stable(st, cfg, actions);
        }
        if before == (st.generation, st.transition.clone(), st.primary.clone()) {
            break;
        }
    }
}

/// One pass of the steady-state rules (no transition running).
fn stable(st: &mut ClusterState, cfg: &Config, actions: &mut Vec<Action>) {
    let Some(p) = st.primary.clone() else {
        return;
    };
    let now = st.now_ms;
    let prec = st.nodes[&p].clone();
    for name in st.others(&p) {
        let rec = &st.nodes[&name];
        let follow = Some(p.clone());
        let same_primary = rec.assignment.primary.as_deref() == Some(p.as_str());
        use NodeState::*;
        let (next, primary) = if rec.maintenance {
            (Maintenance, follow)
        } else {
            match rec.assignment.state {
                Maintenance | ReportLsn | FastForward | Draining => (Catchingup, follow),
                WaitStandby if prec.reached() && prec.assignment.standbys.contains(&name) => {
                    (Catchingup, follow)
                }
                WaitStandby => (WaitStandby, follow),
                Catchingup if same_primary && caught_up(rec, &prec, now, cfg) => {
                    (Secondary, follow)
                }
                Catchingup => (Catchingup, follow),
                // A live standby that stopped streaming because the *primary* is
                // unreachable stays a secondary (it is the failover candidate).
                Secondary if same_primary && rec.sync_member(&prec, now, cfg) => {
                    (Secondary, follow)
                }
                Secondary => (Catchingup, follow),
                Demoted if rec.reached() => (Catchingup, follow),
                // Anything writable on a non-primary node is a leftover: fence it.
                Demoted | Promote | Single | WaitPrimary | Primary => (Demoted, None),
                Dropped => continue,
            }
        };
        assign(st, &name, next, primary, actions);
    }
    // An unreachable primary keeps its assignment (it could not apply a new one),
    // except that it must never name a removed / maintenance node as sync standby.
    let stale = prec.assignment.sync_standbys.iter().any(|s| {
        st.nodes
            .get(s)
            .is_none_or(|r| r.is_dropped() || r.maintenance)
    });
    if prec.pg_alive(now, cfg) || stale {
        let (state, sync, standbys) = primary_assignment(st, &p, cfg);
        assign_full(st, &p, state, None, sync, standbys, actions);
    }
}

/// `catchingup -> secondary` condition.
fn caught_up(rec: &NodeRecord, prec: &NodeRecord, now: u64, cfg: &Config) -> bool {
    let same_tl = prec.timeline == 0 || rec.timeline == prec.timeline;
    rec.reached()
        && rec.keeper_alive(now, cfg)
        && rec.pg_running
        && rec.is_in_recovery
        && rec.wal_receiver_streaming
        && same_tl
        && prec.lsn.saturating_sub(rec.lsn) <= cfg.catchup_lag_bytes
}
