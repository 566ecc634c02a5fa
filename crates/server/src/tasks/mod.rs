//! Durable tasks. A task is stored before anything happens; the engine runs
//! its steps in order, persisting progress after each, so a restarted control
//! plane resumes at the step it was in. Steps are idempotent. Every kind is
//! one entry of [`TASK_KINDS`] (steps, run, cleanup); its parameters are a
//! type in `params`. `failover_recorder` is not a task kind: it records the
//! primary changes monitors push, as finished `PromoteReplica` tasks.

pub mod backup;
pub mod create_database;
pub mod create_replica;
pub mod delete_database;
pub mod delete_replica;
pub mod engine;
pub mod failover_recorder;
pub mod maintenance;
pub mod params;
pub mod replace_monitor;
pub mod restore;
pub mod switchover;
pub mod wait;

use std::future::Future;
use std::pin::Pin;

use pgfleet_core::time::now_ms;
use pgfleet_core::{StepState, Task, TaskKind, TaskState, TaskStep};

use crate::state::AppState;
use params::{BadParams, TaskParams};

/// Why a task failed; the message is what the user reads.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Params(#[from] BadParams),
    #[error(transparent)]
    Store(#[from] pgfleet_store::StoreError),
}

/// A task kind's steps (or cleanup) running.
pub type StepsFuture<'a> = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send + 'a>>;

/// What the engine needs of a task kind.
pub struct TaskKindEntry {
    pub kind: TaskKind,
    /// The steps a task of this kind records, in order.
    pub steps: &'static [&'static str],
    /// Runs (or resumes, at `current_step`) the steps.
    pub run: for<'a> fn(&'a mut TaskRun) -> StepsFuture<'a>,
    /// Undoes what a failed run left half-made (with the failure message).
    pub on_failure: Option<for<'a> fn(&'a TaskRun, &'a str) -> StepsFuture<'a>>,
}

macro_rules! run_fn {
    ($run:path) => {{
        fn run(task: &mut TaskRun) -> StepsFuture<'_> {
            Box::pin($run(task))
        }
        run
    }};
}

macro_rules! cleanup_fn {
    ($cleanup:path) => {{
        fn cleanup<'a>(task: &'a TaskRun, message: &'a str) -> StepsFuture<'a> {
            Box::pin($cleanup(task, message))
        }
        Some(cleanup)
    }};
}

/// Every task kind: its steps, how it runs, how a failure is cleaned up.
pub static TASK_KINDS: [TaskKindEntry; 9] = [
    TaskKindEntry {
        kind: TaskKind::CreateDatabase,
        steps: &[
            "place primary",
            "initialize and start PostgreSQL",
            "publish DNS and mark online",
        ],
        run: run_fn!(create_database::run),
        on_failure: cleanup_fn!(create_database::on_failure),
    },
    TaskKindEntry {
        kind: TaskKind::DeleteDatabase,
        steps: &["stop servers", "remove data", "remove metadata and DNS"],
        run: run_fn!(delete_database::run),
        on_failure: cleanup_fn!(delete_database::on_failure),
    },
    TaskKindEntry {
        kind: TaskKind::CreateReplica,
        steps: &[
            "place replica and monitor",
            "start monitor",
            "clone replica and start streaming",
            "mark online",
        ],
        run: run_fn!(create_replica::run),
        on_failure: cleanup_fn!(create_replica::on_failure),
    },
    TaskKindEntry {
        kind: TaskKind::DeleteReplica,
        steps: &[
            "leave the synchronous set",
            "stop the replica and remove its data",
            "remove the monitor if no replica is left",
        ],
        run: run_fn!(delete_replica::run),
        on_failure: cleanup_fn!(delete_replica::on_failure),
    },
    TaskKindEntry {
        kind: TaskKind::PromoteReplica,
        steps: &[
            "ask the monitor to switch over",
            "wait for the new primary",
            "wait for the old primary to follow",
        ],
        run: run_fn!(switchover::run),
        on_failure: None,
    },
    TaskKindEntry {
        kind: TaskKind::SetMaintenance,
        steps: &[
            "switch over if the node is the primary",
            "set the maintenance flag",
        ],
        run: run_fn!(maintenance::run),
        on_failure: None,
    },
    TaskKindEntry {
        kind: TaskKind::ReplaceMonitor,
        steps: &[
            "place the new monitor",
            "wait for the new monitor and its keepers",
            "mark the new monitor ready",
        ],
        run: run_fn!(replace_monitor::run),
        on_failure: cleanup_fn!(replace_monitor::on_failure),
    },
    TaskKindEntry {
        kind: TaskKind::Backup,
        steps: backup::STEPS,
        run: run_fn!(backup::run),
        on_failure: cleanup_fn!(backup::on_failure),
    },
    TaskKindEntry {
        kind: TaskKind::RestoreDatabase,
        steps: restore::STEPS,
        run: run_fn!(restore::run),
        on_failure: cleanup_fn!(create_database::on_failure),
    },
];

/// The table's entry of `kind`.
pub fn kind_entry(kind: TaskKind) -> &'static TaskKindEntry {
    let found = TASK_KINDS.iter().find(|entry| entry.kind == kind);
    found.expect("every task kind has an entry in TASK_KINDS")
}

pub fn step_names(kind: TaskKind) -> &'static [&'static str] {
    kind_entry(kind).steps
}

/// A queued task with `params` (their variant is its kind) on `target`, not stored yet.
pub fn queued_task(params: &TaskParams, target: &str) -> Task {
    let kind = params.kind();
    let steps = step_names(kind)
        .iter()
        .map(|name| TaskStep {
            name: name.to_string(),
            state: StepState::Pending,
        })
        .collect();
    Task {
        id: 0,
        kind,
        target: target.to_string(),
        state: TaskState::Queued,
        steps,
        current_step: 0,
        progress: 0,
        params: params.to_json(),
        created_at_ms: now_ms(),
        started_at_ms: None,
        finished_at_ms: None,
        error: None,
        message: None,
    }
}

/// Logs a stored task and wakes the engine.
pub fn queued(state: &AppState, stored: &Task) {
    tracing::info!(task_id = stored.id, kind = ?stored.kind, target = %stored.target, "task queued");
    state.task_wakeup.notify_one();
}

/// Stores a queued task on the database `target` unless one of its tasks is
/// unfinished (check and insert in one store transaction) and wakes the engine.
pub async fn submit_if_idle(
    state: &AppState,
    params: &TaskParams,
    target: &str,
) -> Result<pgfleet_store::Submission, pgfleet_store::StoreError> {
    let submission = state
        .store
        .submit_task_if_idle(&queued_task(params, target))
        .await?;
    if let pgfleet_store::Submission::Queued(stored) = &submission {
        queued(state, stored);
    }
    Ok(submission)
}

/// A task being run: persists its progress.
pub struct TaskRun {
    pub state: AppState,
    pub task: Task,
}

impl TaskRun {
    pub async fn save(&self) -> Result<(), TaskError> {
        self.state.store.put_task(&self.task).await?;
        Ok(())
    }

    pub async fn begin_step(&mut self, index: usize) -> Result<(), TaskError> {
        self.task.current_step = index;
        if let Some(step) = self.task.steps.get_mut(index) {
            step.state = StepState::Running;
        }
        self.task.message = self.task.steps.get(index).map(|s| s.name.clone());
        self.save().await
    }

    pub async fn finish_step(&mut self, index: usize) -> Result<(), TaskError> {
        if let Some(step) = self.task.steps.get_mut(index) {
            step.state = StepState::Done;
        }
        let total = self.task.steps.len().max(1);
        self.task.progress = (((index + 1) * 100) / total) as u8;
        self.task.current_step = index + 1;
        self.save().await
    }

    pub async fn message(&mut self, message: impl Into<String>) -> Result<(), TaskError> {
        self.task.message = Some(message.into());
        self.save().await
    }

    /// The task's database, or a refusal when it was deleted meanwhile.
    pub async fn database(&self) -> Result<pgfleet_core::Database, TaskError> {
        let name = &self.task.target;
        let found = self.state.store.get_database(name).await?;
        found.ok_or_else(|| TaskError::Refused(format!("database {name:?} no longer exists")))
    }

    /// The task's parameters as its kind's type (`params`).
    pub fn params<P: serde::de::DeserializeOwned>(&self) -> Result<P, TaskError> {
        let parsed = serde_json::from_value(self.task.params.clone());
        parsed.map_err(|source| {
            TaskError::Params(BadParams {
                id: self.task.id,
                kind: self.task.kind,
                source,
            })
        })
    }
}

#[cfg(test)]
mod kind_table_tests {
    use super::*;

    #[test]
    fn every_task_kind_has_one_entry_with_steps() {
        let kinds = [
            TaskKind::CreateDatabase,
            TaskKind::DeleteDatabase,
            TaskKind::CreateReplica,
            TaskKind::DeleteReplica,
            TaskKind::PromoteReplica,
            TaskKind::SetMaintenance,
            TaskKind::ReplaceMonitor,
            TaskKind::Backup,
            TaskKind::RestoreDatabase,
        ];
        for kind in kinds {
            let entries = TASK_KINDS.iter().filter(|e| e.kind == kind).count();
            assert_eq!(entries, 1, "{kind:?}");
            assert!(!step_names(kind).is_empty(), "{kind:?}");
        }
        assert_eq!(TASK_KINDS.len(), kinds.len());
    }
}
