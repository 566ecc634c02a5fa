//! Durable tasks. A task is stored before anything happens; the engine runs
//! its steps in order, persisting progress after each, so a restarted control
//! plane resumes at the step it was in. Steps are idempotent.

pub mod create_database;
pub mod create_replica;
pub mod delete_database;
pub mod delete_replica;
pub mod engine;
pub mod maintenance;
pub mod promote;
pub mod switchover;
pub mod wait;

use pgfleet_core::time::now_ms;
use pgfleet_core::{StepState, Task, TaskKind, TaskState, TaskStep};

use crate::state::AppState;

/// Why a task failed; the message is what the user reads.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] pgfleet_store::StoreError),
}

pub fn step_names(kind: TaskKind) -> &'static [&'static str] {
    match kind {
        TaskKind::CreateDatabase => &[
            "place primary",
            "initialize and start PostgreSQL",
            "publish DNS and mark online",
        ],
        TaskKind::DeleteDatabase => &["stop servers", "remove data", "remove metadata and DNS"],
        TaskKind::CreateReplica => &[
            "place replica and monitor",
            "start monitor",
            "clone replica and start streaming",
            "mark online",
        ],
        TaskKind::DeleteReplica => &[
            "leave the synchronous set",
            "stop the replica and remove its data",
            "remove the monitor if no replica is left",
        ],
        TaskKind::PromoteReplica => &[
            "ask the monitor to switch over",
            "wait for the new primary",
            "wait for the old primary to follow",
        ],
        TaskKind::SetMaintenance => &[
            "switch over if the node is the primary",
            "set the maintenance flag",
        ],
    }
}

/// A queued task of `kind` on `target`, not stored yet.
pub fn queued_task(kind: TaskKind, target: &str, params: serde_json::Value) -> Task {
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
        params,
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
    kind: TaskKind,
    target: &str,
    params: serde_json::Value,
) -> Result<pgfleet_store::Submission, pgfleet_store::StoreError> {
    let submission = state
        .store
        .submit_task_if_idle(&queued_task(kind, target, params))
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

    pub fn param_str(&self, key: &str) -> Option<String> {
        self.task
            .params
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}
