//! `ReplaceMonitor`: a database's monitor whose host was lost is replaced
//! by a new one on another host (submitted by `monitor_replacer`).
//!
//! 1. Place the new monitor on a connected host that carries no node of
//!    the database (not the lost host); in one change of the record: the old
//!    monitor `desired: deleted` (kept until its host confirms or is
//!    removed), the new monitor node added, the monitor epoch bumped (the
//!    new monitor rebuilds its state from the keepers and hands out
//!    generations from `epoch << 32`), `ha_generation` raised to the new
//!    epoch's floor (primary changes of older monitors are stale), the
//!    monitor token rotated. Keepers follow the new address from their spec.
//! 2. Wait until the new monitor reports in its host's heartbeat, done
//!    rebuilding, with every reachable keeper reporting to it.
//! 3. Mark it ready; event "monitor replaced: <old host> → <new host>".
//!
//! No eligible host: the task fails with the explanation, the database's
//! `error` shows it (cleared by a later success), and one event per
//! distinct reason is recorded.

use std::time::Duration;

use pgfleet_core::placement::{place, PlacementError};
use pgfleet_core::protocol::InstancePhase;
use pgfleet_core::time::now_ms;
use pgfleet_core::{Database, Desired, HostStatus, Node, NodeRole};

use super::create_database::{candidates, host_address, request_for};
use super::params::ReplaceMonitor;
use super::wait::{self, Check};
use super::{TaskError, TaskRun};
use crate::state::AppState;

/// Start of the database `error` a failed replacement leaves.
pub const FAILED_PREFIX: &str = "monitor replacement failed: ";

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    let state = run.state.clone();
    let name = run.task.target.clone();
    let mut params: ReplaceMonitor = run.params()?;
    let step_timeout = Duration::from_millis(state.config.step_timeout_ms);
    for index in run.task.current_step..run.task.steps.len() {
        run.begin_step(index).await?;
        let db = run.database().await?;
        match index {
            0 => {
                let current = db.monitor().cloned();
                let placed = current.as_ref().filter(|m| m.name != params.old_node);
                if let Some(new) = placed {
                    params.new_node = Some(new.name.clone());
                    params.new_host = Some(new.host.clone());
                } else {
                    let (node, host) = place_new_monitor(&state, &db, &params).await?;
                    params.new_node = Some(node);
                    params.new_host = Some(host);
                }
                run.task.params =
                    super::params::TaskParams::ReplaceMonitor(params.clone()).to_json();
                run.message(format!(
                    "new monitor {} on {}",
                    params.new_node.as_deref().unwrap_or_default(),
                    params.new_host.as_deref().unwrap_or_default()
                ))
                .await?;
            }
            1 => {
                let node = params.new_node.clone().unwrap_or_default();
                let host = params.new_host.clone().unwrap_or_default();
                wait::until(
                    &state,
                    step_timeout,
                    &format!("the new monitor on {host} and its keepers"),
                    |state| new_monitor_in_charge(state, &db, &node, &host),
                )
                .await?;
            }
            _ => {
                let node = params.new_node.clone().unwrap_or_default();
                state
                    .update_database(&name, |db| {
                        if let Some(monitor) = db.node_mut(&node) {
                            monitor.ready = true;
                        }
                        if db
                            .error
                            .as_deref()
                            .is_some_and(|e| e.starts_with(FAILED_PREFIX))
                        {
                            db.error = None;
                        }
                    })
                    .await?;
                let new_host = params.new_host.clone().unwrap_or_default();
                let message = format!("monitor replaced: {} → {new_host}", params.old_host);
                let event = serde_json::json!({
                    "at_ms": now_ms(),
                    "kind": "monitor_replaced",
                    "message": message,
                    "reason": params.reason,
                    "old_monitor": params.old_node,
                    "old_host": params.old_host,
                    "new_monitor": node,
                    "new_host": new_host,
                });
                state.store.insert_event(&name, &event).await?;
                tracing::info!(db = %name, old_host = %params.old_host, %new_host, "monitor replaced");
            }
        }
        run.finish_step(index).await?;
    }
    Ok(())
}

/// Chooses the host, then records the switch in one change of the record.
async fn place_new_monitor(
    state: &AppState,
    db: &Database,
    params: &ReplaceMonitor,
) -> Result<(String, String), TaskError> {
    let hosts = candidates(state).await?;
    // Apart from every live node of the database, and not on the lost host.
    // A host that still has a replaced monitor of the database (not yet
    // confirmed gone) may take the new one: its spec supersedes the old.
    let request = request_for(state, db, std::slice::from_ref(&params.old_host)).await?;
    let host = place(&hosts, &request).map_err(|error| {
        let connected: Vec<&str> = hosts
            .iter()
            .filter(|h| h.connected)
            .map(|h| h.name.as_str())
            .collect();
        let why = match error {
            PlacementError::AntiAffinity { .. } => format!(
                "every connected host ({}) carries a node of {}",
                connected.join(", "),
                db.name
            ),
            other => other.to_string(),
        };
        TaskError::Refused(format!(
            "no eligible host for the new monitor of {}: {why}; add a host to the fleet",
            db.name
        ))
    })?;
    let address = host_address(state, &host).await?;
    let epoch = db.monitor_epoch + 1;
    let mut node = format!("{}-monitor-{}", db.name, epoch + 1);
    while db.node(&node).is_some() {
        node.push('x');
    }
    let old = params.old_node.clone();
    let (new_node, new_host) = (node.clone(), host.clone());
    state
        .update_database(&db.name, |db| {
            if db.monitor().is_some_and(|m| m.name != old) {
                return; // placed meanwhile (a resumed task)
            }
            if let Some(old) = db.node_mut(&old) {
                old.desired = Desired::Deleted;
                old.ready = false;
            }
            db.nodes.push(Node {
                name: new_node.clone(),
                role: NodeRole::Monitor,
                host: new_host.clone(),
                address: address.clone(),
                port: 0,
                desired: Desired::Running,
                priority: 0,
                maintenance: false,
                ready: false,
                removing: false,
                created_at_ms: now_ms(),
            });
            db.monitor_epoch = epoch;
            let floor = pgfleet_ha::generation_floor(epoch);
            db.ha_generation = db.ha_generation.max(floor.saturating_sub(1));
            db.monitor_token = pgfleet_core::secrets::random_token(40);
        })
        .await?;
    tracing::info!(db = %db.name, old_host = %params.old_host, new_host = %host, epoch, "new monitor placed");
    Ok((node, host))
}

/// The new monitor reports, done rebuilding, and every data node whose host
/// is connected and whose server runs is reachable to it.
fn new_monitor_in_charge(state: &AppState, db: &Database, node: &str, host: &str) -> Check<()> {
    let observed = state.observed.lock().expect("observed lock");
    if observed.host_status(host, state.host_timeout()) != HostStatus::Connected {
        return Check::Wait;
    }
    let Some(monitor) = observed.monitor(host, &db.name) else {
        return Check::Wait;
    };
    let rebuilding = monitor.state.get("rebuilding").and_then(|v| v.as_bool());
    if monitor.node != node || !monitor.running || rebuilding != Some(false) {
        return Check::Wait;
    }
    let Some(health) = monitor
        .state
        .get("health")
        .and_then(|h| serde_json::from_value::<pgfleet_ha::ClusterHealth>(h.clone()).ok())
    else {
        return Check::Wait;
    };
    if health.primary.is_none() {
        return Check::Wait;
    }
    let data_nodes = db
        .nodes
        .iter()
        .filter(|n| n.role != NodeRole::Monitor && n.desired != Desired::Deleted && !n.removing);
    for data in data_nodes {
        let reachable = observed.host_status(&data.host, state.host_timeout())
            == HostStatus::Connected
            && observed
                .instance(&data.host, &db.name, &data.name)
                .is_some_and(|i| i.phase == InstancePhase::Running);
        if !reachable {
            continue;
        }
        let reports = health
            .nodes
            .iter()
            .any(|n| n.name == data.name && n.keeper_reachable);
        if !reports {
            return Check::Wait;
        }
    }
    Check::Done(())
}

/// Shows why the replacement failed in the database's `error`, and records
/// the reason as an event unless the last failure said the same.
pub async fn on_failure(run: &TaskRun, message: &str) -> Result<(), TaskError> {
    let name = &run.task.target;
    let shown = format!("{FAILED_PREFIX}{message}");
    let mut repeated = false;
    let shown_clone = shown.clone();
    run.state
        .update_database(name, |db| {
            repeated = db.error.as_deref() == Some(shown_clone.as_str());
            if db.error.is_none()
                || db
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(FAILED_PREFIX))
            {
                db.error = Some(shown_clone);
            }
        })
        .await?;
    if !repeated {
        let event = serde_json::json!({
            "at_ms": now_ms(),
            "kind": "monitor_replacement_failed",
            "message": shown,
            "task_id": run.task.id,
        });
        run.state.store.insert_event(name, &event).await?;
    }
    Ok(())
}
