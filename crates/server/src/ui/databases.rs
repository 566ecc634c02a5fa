//! The Databases page: every database with its status, HA status, primary
//! host and replicas (live), and the *Create database* form.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use pgfleet_core::api::{CreateDatabaseRequest, DatabaseView};
use pgfleet_core::NodeRole;
use serde::Deserialize;

use super::render::{self, html, page, sentence, Badge, Layout, Viewer};
use super::session::Protected;
use crate::error::ApiError;
use crate::state::AppState;

pub struct DatabaseRow {
    pub name: String,
    pub status: Badge,
    pub ha: Badge,
    pub primary_host: String,
    pub replicas: usize,
    pub degraded: bool,
    pub reasons: String,
    pub version: u32,
    pub created: String,
}

fn row(view: &DatabaseView) -> DatabaseRow {
    let primary_host = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .map(|n| n.host.clone())
        .unwrap_or_else(|| "—".into());
    DatabaseRow {
        name: view.name.clone(),
        status: render::db_status(view.status),
        ha: render::ha_status(view.ha_status),
        primary_host,
        replicas: view
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Replica)
            .count(),
        degraded: view.health.degraded,
        reasons: view.health.reasons.join("; "),
        version: view.version,
        created: render::timestamp(view.created_at_ms),
    }
}

/// What the user typed into the create form, shown again after a refusal.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub admin_user: String,
    #[serde(default)]
    pub database: String,
}

impl CreateForm {
    /// An empty form shows the defaults the API applies.
    fn with_defaults() -> CreateForm {
        CreateForm {
            name: String::new(),
            version: "15".into(),
            admin_user: "pgadmin".into(),
            database: "postgres".into(),
        }
    }
}

#[derive(Template)]
#[template(path = "databases.html", blocks = ["live"])]
struct DatabasesPage {
    layout: Layout,
    rows: Vec<DatabaseRow>,
    /// `2 databases · 1 online`
    counts: String,
    form: CreateForm,
    error: Option<String>,
}

async fn build(
    state: &AppState,
    layout: Layout,
    form: CreateForm,
    error: Option<String>,
) -> Result<DatabasesPage, ApiError> {
    let Json(views) = crate::api::databases::list(State(state.clone())).await?;
    let rows: Vec<DatabaseRow> = views.iter().map(row).collect();
    let online = rows.iter().filter(|r| r.status.text == "Online").count();
    let noun = if rows.len() == 1 {
        "database"
    } else {
        "databases"
    };
    Ok(DatabasesPage {
        layout,
        counts: format!("{} {noun} · {online} online", rows.len()),
        rows,
        form,
        error,
    })
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Response {
    let layout = viewer.layout("databases");
    match build(&state, layout, CreateForm::with_defaults(), None).await {
        Ok(databases) if viewer.fragment.is_some() => page(&databases.as_live()),
        Ok(databases) => page(&databases),
        Err(error) => render::error_page(&viewer.session, error),
    }
}

fn optional(value: &str) -> Option<String> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// The form's version: empty means the API's default, else a whole number (the API
/// checks the range).
pub(super) fn parse_version(text: &str) -> Result<Option<u32>, ApiError> {
    let Some(text) = optional(text) else {
        return Ok(None);
    };
    let version = text.parse::<u32>().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid version {text:?}: a PostgreSQL major version such as 15"
        ))
    })?;
    Ok(Some(version))
}

async fn submit_create(state: &AppState, form: &CreateForm) -> Result<i64, ApiError> {
    let version = parse_version(&form.version)?;
    let request = CreateDatabaseRequest {
        name: form.name.trim().to_string(),
        version,
        admin_user: optional(&form.admin_user),
        database: optional(&form.database),
        backup_policy: None,
        restore: None,
    };
    let (_, Json(task)) =
        crate::api::databases::create(State(state.clone()), crate::api::ApiJson(request)).await?;
    Ok(task.task_id)
}

pub async fn create(
    State(state): State<AppState>,
    Protected { session, form }: Protected<CreateForm>,
) -> Response {
    match submit_create(&state, &form).await {
        Ok(task_id) => {
            let name = form.name.trim();
            session.flash(
                "ok",
                format!(
                    "Creating database {name} (task #{task_id}). It is online in a few seconds."
                ),
            );
            Redirect::to(&format!("/databases/{name}")).into_response()
        }
        Err(error) => {
            let status = error.status;
            let message = sentence(&error.message);
            let layout = Layout::new(&session, "databases");
            match build(&state, layout, form, Some(message)).await {
                Ok(databases) => html(status, &databases),
                Err(error) => render::error_page(&session, error),
            }
        }
    }
}

/// `/` shows the databases.
pub async fn home() -> Response {
    Redirect::to("/databases").into_response()
}
