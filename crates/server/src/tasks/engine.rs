//! The task engine loop: runs every queued or interrupted task, one tokio task
//! each, and fails a task cleanly when a step errors. Also reaps nodes whose
//! deletion the agents confirmed.

use std::time::Duration;

use pgfleet_core::errors::error_chain;
use pgfleet_core::time::now_ms;
use pgfleet_core::{StepState, Task, TaskState};
use tokio_util::sync::CancellationToken;

use super::TaskRun;
use crate::state::AppState;

pub async fn run(state: AppState, cancel: CancellationToken) {
    loop {
        let woken = state.task_wakeup.notified();
        match state.store.unfinished_tasks().await {
            Ok(tasks) => {
                for task in tasks {
                    start(&state, task);
                }
            }
            Err(error) => tracing::error!(error = %error_chain(&error), "cannot list tasks"),
        }
        reap_deleted_nodes(&state).await;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = woken => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn start(state: &AppState, task: Task) {
    {
        let mut running = state.running_tasks.lock().expect("running lock");
        if !running.insert(task.id) {
            return;
        }
    }
    let state = state.clone();
    tokio::spawn(async move {
        let id = task.id;
        execute(state.clone(), task).await;
        state
            .running_tasks
            .lock()
            .expect("running lock")
            .remove(&id);
    });
}

async fn execute(state: AppState, mut task: Task) {
    if task.state == TaskState::Queued {
        task.state = TaskState::Running;
        task.started_at_ms = Some(now_ms());
    } else {
        tracing::info!(
            task_id = task.id,
            step = task.current_step,
            "resuming task after restart"
        );
    }
    let mut run = TaskRun {
        state: state.clone(),
        task,
    };
    if let Err(error) = run.save().await {
        tracing::error!(task_id = run.task.id, error = %error_chain(&error), "cannot start task");
        return;
    }
    let entry = super::kind_entry(run.task.kind);
    let result = (entry.run)(&mut run).await;
    match result {
        Ok(()) => {
            run.task.state = TaskState::Succeeded;
            run.task.progress = 100;
            run.task.message = Some("done".into());
            tracing::info!(task_id = run.task.id, kind = ?run.task.kind, target = %run.task.target, "task succeeded");
        }
        Err(error) => {
            // The user reads the top message; the log gets every cause.
            let message = error.to_string();
            tracing::warn!(task_id = run.task.id, kind = ?run.task.kind, target = %run.task.target, error = %error_chain(&error), "task failed");
            let index = run.task.current_step;
            if let Some(step) = run.task.steps.get_mut(index) {
                step.state = StepState::Failed;
            }
            run.task.state = TaskState::Failed;
            run.task.error = Some(message.clone());
            run.task.message = Some(message.clone());
            crate::alerts::raise(
                &state,
                crate::alerts::Alert::task_failed(&run.task, &message),
            )
            .await;
            let cleanup = match entry.on_failure {
                Some(on_failure) => on_failure(&run, &message).await,
                None => Ok(()),
            };
            if let Err(error) = cleanup {
                tracing::error!(task_id = run.task.id, error = %error_chain(&error), "cleanup after failure failed");
            }
        }
    }
    run.task.finished_at_ms = Some(now_ms());
    let started_ms = run.task.started_at_ms.unwrap_or(run.task.created_at_ms);
    state.metrics.task_finished(
        run.task.kind,
        run.task.state == TaskState::Succeeded,
        (now_ms() - started_ms).max(0) as f64 / 1000.0,
    );
    if let Err(error) = run.save().await {
        tracing::error!(task_id = run.task.id, error = %error_chain(&error), "cannot store task result");
    }
}

/// Removes nodes marked deleted (outside a database deletion) once their agent
/// confirmed the data is gone.
async fn reap_deleted_nodes(state: &AppState) {
    let Ok(databases) = state.store.list_databases().await else {
        return;
    };
    for db in databases {
        if db.status == pgfleet_core::DbStatus::Deleting {
            continue;
        }
        let mut gone = Vec::new();
        {
            let observed = state.observed.lock().expect("observed lock");
            for node in db
                .nodes
                .iter()
                .filter(|n| n.desired == pgfleet_core::Desired::Deleted)
            {
                if observed.host_status(&node.host, state.host_timeout())
                    != pgfleet_core::HostStatus::Connected
                {
                    continue;
                }
                let confirmed = match node.role {
                    pgfleet_core::NodeRole::Monitor => {
                        // Told and confirmed, or superseded by the current
                        // monitor on the same host.
                        observed.monitor_deletion_confirmed(&node.host, &db.name)
                            || db.monitor().is_some_and(|m| m.host == node.host)
                    }
                    _ => observed
                        .instance(&node.host, &db.name, &node.name)
                        .is_none_or(|i| i.phase == pgfleet_core::protocol::InstancePhase::Deleted),
                };
                if confirmed {
                    gone.push(node.name.clone());
                }
            }
        }
        if !gone.is_empty() {
            let result = state
                .update_database(&db.name, |db| db.nodes.retain(|n| !gone.contains(&n.name)))
                .await;
            if let Err(error) = result {
                tracing::error!(error = %error_chain(&error), "cannot reap deleted nodes");
            }
        }
    }
}
