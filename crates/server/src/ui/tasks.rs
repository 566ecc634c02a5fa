//! The Tasks page (every task, live) and the task rows it shares with a
//! database's *Tasks* tab: kind, state, steps with their progress, message.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use pgfleet_core::time::now_ms;
use pgfleet_core::{StepState, Task, TaskState};

use super::render::{self, page, Badge, Layout, Viewer};
use crate::api::tasks::TaskListQuery;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tasks::params::TaskParams;

pub struct StepRow {
    pub name: String,
    /// `done`, `running`, `failed` or `pending` (a CSS class).
    pub class: &'static str,
}

pub struct TaskRow {
    pub id: i64,
    pub kind: String,
    pub target: String,
    /// The node the task works on, when it names one.
    pub node: Option<String>,
    pub state: Badge,
    pub finished: bool,
    pub progress: u8,
    pub steps: Vec<StepRow>,
    pub message: Option<String>,
    pub error: Option<String>,
    pub created: String,
    pub duration: String,
}

/// `CreateReplica` → `Create replica`: task kinds added later read well too.
pub fn kind_words(kind: impl std::fmt::Debug) -> String {
    let debug = format!("{kind:?}");
    let mut words = String::with_capacity(debug.len() + 4);
    for (index, character) in debug.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            words.push(' ');
            words.push(character.to_ascii_lowercase());
        } else {
            words.push(character);
        }
    }
    words
}

pub fn task_row(task: &Task, now: i64) -> TaskRow {
    let steps = task
        .steps
        .iter()
        .map(|step| StepRow {
            name: step.name.clone(),
            class: match step.state {
                StepState::Pending => "pending",
                StepState::Running => "running",
                StepState::Done => "done",
                StepState::Failed => "failed",
            },
        })
        .collect();
    let started = task.started_at_ms.unwrap_or(task.created_at_ms);
    let duration = match (task.state, task.finished_at_ms) {
        (TaskState::Queued, _) => "—".to_string(),
        (_, Some(finished)) => render::duration_ms(finished - started),
        (_, None) => render::duration_ms(now - started),
    };
    TaskRow {
        id: task.id,
        kind: kind_words(task.kind),
        target: task.target.clone(),
        node: TaskParams::of(task)
            .ok()
            .and_then(|params| params.node().map(str::to_string)),
        state: render::task_state(task.state),
        finished: task.state.is_finished(),
        progress: task.progress.min(100),
        steps,
        message: task.message.clone(),
        error: task.error.as_deref().map(render::sentence),
        created: render::timestamp(task.created_at_ms),
        duration,
    }
}

/// The newest tasks, optionally of one database, as rows.
pub async fn task_rows(
    state: &AppState,
    target: Option<String>,
    limit: i64,
) -> Result<Vec<TaskRow>, ApiError> {
    let query = TaskListQuery {
        target,
        limit: Some(limit),
    };
    let Json(tasks) = crate::api::tasks::list(State(state.clone()), Query(query)).await?;
    let now = now_ms();
    Ok(tasks.iter().map(|task| task_row(task, now)).collect())
}

#[derive(Template)]
#[template(path = "tasks.html", blocks = ["live"])]
struct TasksPage {
    layout: Layout,
    tasks: Vec<TaskRow>,
    running: usize,
    show_target: bool,
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Response {
    let tasks = match task_rows(&state, None, 200).await {
        Ok(tasks) => tasks,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let tasks_page = TasksPage {
        layout: viewer.layout("tasks"),
        running: tasks.iter().filter(|t| !t.finished).count(),
        tasks,
        show_target: true,
    };
    if viewer.fragment.is_some() {
        return page(&tasks_page.as_live());
    }
    page(&tasks_page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_kinds_read_as_words() {
        assert_eq!(
            kind_words(pgfleet_core::TaskKind::CreateReplica),
            "Create replica"
        );
        assert_eq!(
            kind_words(pgfleet_core::TaskKind::PromoteReplica),
            "Promote replica"
        );
    }
}
