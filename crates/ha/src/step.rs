//! The pure entry points: [`step`] (apply one event) and [`after_restart`].
//!
//! `step` first records the facts carried by the event (or validates and applies an
//! operator command), then runs the reconcile loop (`reconcile::reconcile`) which
//! derives every assignment change from the state.

use crate::assign::assign;
use crate::config::Config;
use crate::error::HaError;
use crate::event::{Action, Event, KeeperReport};
use crate::reconcile;
use crate::states::{ClusterState, NodeRecord, NodeState};

/// Applies one event. Pure: same inputs, same outputs. On `Err` nothing changed.
///
/// The driver must persist the returned state *before* executing the actions.
pub fn step(
    state: &ClusterState,
    event: &Event,
    config: &Config,
) -> Result<(ClusterState, Vec<Action>), HaError> {
    config.validate()?;
    let mut st = state.clone();
    let at = event.now_ms();
    st.now_ms = st.now_ms.max(at);
    let mut actions = Vec::new();
    match event {
        Event::KeeperReport(r) => ingest_report(&mut st, r)?,
        Event::HealthCheck {
            node, ok, refused, ..
        } => {
            let rec = live_node(&mut st, node)?;
            if *ok {
                rec.last_health_ok_ms = max_opt(rec.last_health_ok_ms, at);
                rec.last_pg_ok_ms = max_opt(rec.last_pg_ok_ms, at);
            } else {
                rec.last_health_fail_ms = max_opt(rec.last_health_fail_ms, at);
            }
            // Only an unbroken run of refusals is evidence; a timeout or a
            // failed query says nothing about whether anything listens.
            rec.refused_since_ms = match (*ok, *refused) {
                (false, true) => Some(rec.refused_since_ms.unwrap_or(at)),
                _ => None,
            };
        }
        Event::Tick { .. } => {}
        Event::AddNode { node, priority, .. } => add_node(&mut st, node, *priority, &mut actions)?,
        Event::RemoveNode { node, .. } => remove_node(&mut st, node, &mut actions)?,
        Event::Switchover { target, .. } => {
            crate::switchover::start_switchover(&mut st, target, config, &mut actions)?
        }
        Event::SetMaintenance { node, on, .. } => {
            if st.transition.is_some() {
                return Err(HaError::TransitionInProgress);
            }
            if st.primary.as_deref() == Some(node.as_str()) && *on {
                return Err(HaError::IsPrimary(node.clone()));
            }
            live_node(&mut st, node)?.maintenance = *on;
        }
    }
    reconcile::reconcile(&mut st, config, &mut actions);
    await_reports(state, &st, &mut actions);
    Ok((st, actions))
}

/// Nodes the transition has just started waiting on, that no assignment
/// of this step tells anyway ([`Action::AwaitReport`]).
fn await_reports(before: &ClusterState, after: &ClusterState, actions: &mut Vec<Action>) {
    let Some(tr) = &after.transition else {
        return;
    };
    let waited_before = before
        .transition
        .as_ref()
        .filter(|old| old.started_ms == tr.started_ms && old.kind == tr.kind)
        .map(|old| old.waiting_on.as_slice())
        .unwrap_or_default();
    for node in &tr.waiting_on {
        let assigned = actions
            .iter()
            .any(|a| matches!(a, Action::Assign(x) if &x.node == node));
        if !waited_before.contains(node) && !assigned {
            actions.push(Action::AwaitReport { node: node.clone() });
        }
    }
}

/// Call once after loading a persisted state (monitor restart): every last-seen
/// clock and transition timer restarts at `now_ms`, which gives every node a full
/// `failure_timeout_ms` grace period, so no failover is caused by the monitor's
/// own downtime.
pub fn after_restart(state: &ClusterState, now_ms: u64) -> ClusterState {
    let mut st = state.clone();
    st.now_ms = now_ms;
    for rec in st.nodes.values_mut() {
        for t in [
            &mut rec.last_report_ms,
            &mut rec.last_health_ok_ms,
            &mut rec.last_pg_ok_ms,
            &mut rec.last_streaming_ms,
        ] {
            if t.is_some() {
                *t = Some(now_ms);
            }
        }
        rec.last_health_fail_ms = rec.last_health_fail_ms.map(|_| now_ms);
        rec.refused_since_ms = None;
        rec.assigned_ms = now_ms;
    }
    if let Some(tr) = st.transition.as_mut() {
        tr.started_ms = now_ms;
    }
    st
}

fn max_opt(old: Option<u64>, at: u64) -> Option<u64> {
    Some(old.map_or(at, |o| o.max(at)))
}

fn live_node<'a>(st: &'a mut ClusterState, node: &str) -> Result<&'a mut NodeRecord, HaError> {
    match st.nodes.get_mut(node) {
        Some(rec) if !rec.is_dropped() => Ok(rec),
        _ => Err(HaError::UnknownNode(node.to_string())),
    }
}

/// Records a keeper report. Reports older (by `generation_seen`) than the last one
/// accepted from the same keeper are reordered/duplicated messages: ignored.
fn ingest_report(st: &mut ClusterState, r: &KeeperReport) -> Result<(), HaError> {
    if r.generation_seen > st.generation {
        return Err(HaError::FutureGeneration {
            node: r.node.clone(),
            seen: r.generation_seen,
            current: st.generation,
        });
    }
    let is_primary = st.primary.as_deref() == Some(r.node.as_str());
    let rec = st
        .nodes
        .get_mut(&r.node)
        .ok_or_else(|| HaError::UnknownNode(r.node.clone()))?;
    if rec.is_dropped() {
        if r.reported == NodeState::Dropped
            && r.generation_seen >= rec.assignment.generation
            && !referenced(st, &r.node)
        {
            st.nodes.remove(&r.node);
        }
        return Ok(());
    }
    if r.generation_seen < rec.generation_seen {
        return Ok(());
    }
    let at = r.now_ms;
    rec.generation_seen = r.generation_seen;
    rec.reported = Some(r.reported);
    rec.last_report_ms = max_opt(rec.last_report_ms, at);
    if r.pg_running {
        rec.last_pg_ok_ms = max_opt(rec.last_pg_ok_ms, at);
        rec.refused_since_ms = None;
    }
    if r.pg_running && r.is_in_recovery && r.wal_receiver_streaming {
        rec.last_streaming_ms = max_opt(rec.last_streaming_ms, at);
    }
    rec.lsn = r.lsn;
    rec.timeline = r.timeline;
    rec.pg_running = r.pg_running;
    rec.is_in_recovery = r.is_in_recovery;
    rec.wal_receiver_streaming = r.wal_receiver_streaming;
    rec.upstream_heard_ms = r.upstream_silent_ms.map(|silent| at.saturating_sub(silent));
    rec.streaming_standbys = r.streaming_standbys.clone();
    if !is_primary {
        return Ok(());
    }
    if let Some(idx) = rec
        .sync_history
        .iter()
        .rposition(|e| e.generation <= r.generation_seen)
    {
        rec.applied_sync = rec.sync_history[idx].config.clone();
        rec.sync_history.drain(..idx);
    }
    if r.is_in_recovery || !r.pg_running {
        return Ok(());
    }
    // Facts only a running primary can tell: who streams, what the quorum acknowledged.
    let applied = rec.applied_sync.clone();
    let mut flushes: Vec<u64> = r
        .streaming_standbys
        .iter()
        .filter(|s| applied.standbys.contains(&s.name))
        .map(|s| s.flush_lsn)
        .collect();
    flushes.sort_unstable_by(|a, b| b.cmp(a));
    let k = applied.quorum as usize;
    if k > 0 && flushes.len() >= k {
        let ack = flushes[k - 1];
        rec.sync_ack_lsn = Some(rec.sync_ack_lsn.map_or(ack, |o| o.max(ack)));
    }
    let streaming: Vec<String> = r
        .streaming_standbys
        .iter()
        .map(|s| s.name.clone())
        .collect();
    for name in streaming {
        if let Some(sb) = st.nodes.get_mut(&name) {
            if name != r.node && !sb.is_dropped() {
                sb.last_streaming_ms = max_opt(sb.last_streaming_ms, at);
            }
        }
    }
    Ok(())
}

/// Whether some assignment or possibly-in-force sync setting still names `node`.
fn referenced(st: &ClusterState, node: &str) -> bool {
    st.nodes.values().any(|n| {
        n.assignment.primary.as_deref() == Some(node)
            || n.assignment.sync_standbys.iter().any(|s| s == node)
            || n.assignment.standbys.iter().any(|s| s == node)
            || n.sync_history
                .iter()
                .any(|e| e.config.standbys.iter().any(|s| s == node))
    })
}

fn add_node(
    st: &mut ClusterState,
    node: &str,
    priority: u8,
    actions: &mut Vec<Action>,
) -> Result<(), HaError> {
    if priority > 100 {
        return Err(HaError::InvalidPriority(priority));
    }
    if st.nodes.get(node).is_some_and(|n| !n.is_dropped()) {
        return Err(HaError::NodeExists(node.to_string()));
    }
    let now = st.now_ms;
    st.nodes
        .insert(node.to_string(), NodeRecord::new(node, priority, now));
    if st.primary.is_none() {
        st.primary = Some(node.to_string());
        assign(st, node, NodeState::Single, None, actions);
    } else {
        let follow = if st.transition.is_some() {
            None
        } else {
            st.primary.clone()
        };
        assign(st, node, NodeState::WaitStandby, follow, actions);
    }
    Ok(())
}

fn remove_node(
    st: &mut ClusterState,
    node: &str,
    actions: &mut Vec<Action>,
) -> Result<(), HaError> {
    live_node(st, node)?;
    if st.primary.as_deref() == Some(node) {
        return Err(HaError::IsPrimary(node.to_string()));
    }
    if st.transition.is_some() {
        return Err(HaError::TransitionInProgress);
    }
    st.nodes.get_mut(node).expect("checked").maintenance = false;
    assign(st, node, NodeState::Dropped, None, actions);
    Ok(())
}
