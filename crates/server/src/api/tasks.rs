//! `GET /api/v1/tasks`, `GET /api/v1/tasks/{id}`

use axum::extract::{Path, Query, State};
use axum::Json;
use pgfleet_core::Task;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TaskListQuery {
    /// Only tasks on this database.
    pub target: Option<String>,
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/tasks", params(TaskListQuery), responses((status = 200, body = [Task])), security(("token" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<TaskListQuery>,
) -> Result<Json<Vec<Task>>, ApiError> {
    let limit = query.limit.unwrap_or(200).clamp(1, 10_000);
    let mut tasks = state.store.list_tasks(limit).await?;
    if let Some(target) = query.target {
        tasks.retain(|t| t.target == target);
    }
    Ok(Json(tasks))
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", params(("id" = i64, Path)), responses((status = 200, body = Task), (status = 404, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    let parsed: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("task id {id:?} is not a number")))?;
    match state.store.get_task(parsed).await? {
        Some(task) => Ok(Json(task)),
        None => Err(ApiError::not_found("task", &id)),
    }
}
