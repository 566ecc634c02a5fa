//! The failover recorder (not a task kind): the control plane's record of a
//! primary change. The monitor pushes the change right after promotion;
//! metadata and DNS follow at once, and the change is kept as an event for
//! the failover history and as a finished `PromoteReplica` task (unless a
//! user's switchover task already stands for it).

use pgfleet_core::time::now_ms;
use pgfleet_core::{NodeRole, StepState, Task, TaskKind, TaskState, TaskStep};

use super::params::{PromoteReplica, TaskParams};
use crate::api::agents::PrimaryChanged;
use crate::error::ApiError;
use crate::state::AppState;

/// Applies a primary change pushed by the monitor (or found by the reconcile
/// poll). Returns the id of the task that records it, or `None` when the
/// change was stale or already applied.
pub async fn record_primary_change(
    state: &AppState,
    change: &PrimaryChanged,
) -> Result<Option<i64>, ApiError> {
    let started_ms = now_ms();
    let Some(db) = state.store.get_database(&change.db).await? else {
        return Err(ApiError::not_found("database", &change.db));
    };
    if change.generation <= db.ha_generation {
        return Ok(None);
    }
    if db
        .node(&change.new_primary)
        .is_none_or(|n| n.role == NodeRole::Monitor)
    {
        return Err(ApiError::bad_request(format!(
            "node {:?} is not a data node of {:?}",
            change.new_primary, change.db
        )));
    }
    let old_primary = db.primary().map(|p| p.name.clone());
    let new_primary = change.new_primary.clone();
    let generation = change.generation;
    let mut applied = false;
    let mut moved = false;
    state
        .update_database(&change.db, |db| {
            if generation <= db.ha_generation {
                return;
            }
            applied = true;
            db.ha_generation = generation;
            for node in db.nodes.iter_mut() {
                if node.role == NodeRole::Monitor {
                    continue;
                }
                let role = if node.name == new_primary {
                    NodeRole::Primary
                } else {
                    NodeRole::Replica
                };
                if node.role != role {
                    moved = true;
                    node.role = role;
                }
            }
        })
        .await?;
    if !applied || !moved {
        // Stale, or the same primary under a newer generation (sync-set change).
        return Ok(None);
    }
    let dns_switched_ms = now_ms();
    let event = serde_json::json!({
        "at_ms": started_ms,
        "kind": change.reason,
        "old_primary": old_primary,
        "new_primary": change.new_primary,
        "reason": change.reason,
        "generation": change.generation,
        "detected_at_ms": change.detected_at_ms,
        "promoted_at_ms": change.promoted_at_ms,
        "dns_switched_at_ms": dns_switched_ms,
        "old_primary_lsn": change.old_lsn,
        "new_primary_lsn": change.new_lsn,
    });
    state.store.insert_event(&change.db, &event).await?;
    crate::alerts::raise(
        state,
        crate::alerts::Alert::primary_changed(change, old_primary.as_deref(), event.clone()),
    )
    .await;
    // A user's switchover already has its PromoteReplica task.
    let running = state.store.unfinished_tasks().await?;
    if let Some(task) = running
        .iter()
        .find(|t| t.target == change.db && t.kind == TaskKind::PromoteReplica)
    {
        return Ok(Some(task.id));
    }
    let steps = ["update metadata", "update DNS"]
        .iter()
        .map(|name| TaskStep {
            name: name.to_string(),
            state: StepState::Done,
        })
        .collect();
    let task = Task {
        id: 0,
        kind: TaskKind::PromoteReplica,
        target: change.db.clone(),
        state: TaskState::Succeeded,
        steps,
        current_step: 2,
        progress: 100,
        params: TaskParams::PromoteReplica(PromoteReplica {
            node: None,
            old_primary: old_primary.clone(),
            new_primary: Some(change.new_primary.clone()),
            reason: Some(change.reason.clone()),
            generation: Some(change.generation),
        })
        .to_json(),
        created_at_ms: started_ms,
        started_at_ms: Some(started_ms),
        finished_at_ms: Some(now_ms()),
        error: None,
        message: Some(format!(
            "{} is the primary ({})",
            change.new_primary, change.reason
        )),
    };
    let stored = state.store.insert_task(&task).await?;
    tracing::info!(db = %change.db, new_primary = %change.new_primary, old_primary = ?old_primary, generation, task_id = stored.id, "primary changed");
    Ok(Some(stored.id))
}
