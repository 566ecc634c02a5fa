//! Changing a database's nodes: the *Create Read Replica* wizard (it asks
//! for a name and a failover priority and shows the defaults it applies),
//! and the *Database Actions* of a node: Promote Replica and Delete (each behind a
//! confirmation page) and Maintenance on/off. Each calls the API handler and
//! returns to *Cluster Settings*, where the live table shows the progress.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use pgfleet_core::api::{
    find_action, ActionKind, CreateReplicaRequest, DatabaseView, MaintenanceRequest,
};
use pgfleet_core::NodeRole;
use serde::Deserialize;

use super::confirm::{Confirm, ConfirmPage};
use super::database::{head, load, DbHead};
use super::login::Empty;
use super::render::{self, html, page, sentence, Layout};
use super::session::{Protected, Session};
use crate::error::ApiError;
use crate::state::AppState;

/// Replicas are created with this failover priority (the API's default).
pub(super) const DEFAULT_PRIORITY: u8 = 50;

#[derive(Template)]
#[template(path = "replica_new.html")]
struct ReplicaWizard {
    layout: Layout,
    head: DbHead,
    name: String,
    suggestion: String,
    monitor: String,
    /// As typed (the default on a fresh form).
    priority: String,
    error: Option<String>,
}

fn wizard(
    layout: Layout,
    view: &DatabaseView,
    form: ReplicaForm,
    error: Option<String>,
) -> ReplicaWizard {
    let taken = view.nodes.iter().map(|n| n.name.as_str());
    let suggestion = pgfleet_core::names::next_replica_names(taken, 1).remove(0);
    let monitor = match view.nodes.iter().find(|n| n.role == NodeRole::Monitor) {
        Some(monitor) => format!("{} on {} (existing)", monitor.name, monitor.host),
        None => format!("{}-monitor, created now on a host of its own", view.name),
    };
    ReplicaWizard {
        layout,
        head: head(view, "cluster"),
        name: form.name,
        suggestion,
        monitor,
        priority: form.priority,
        error,
    }
}

pub async fn new_replica(
    State(state): State<AppState>,
    Path(db): Path<String>,
    session: Session,
) -> Response {
    match load(&state, &db).await {
        Ok(view) => {
            // Say at once what the API would answer (the same check).
            let blocked = find_action(&view.actions, ActionKind::CreateReplica)
                .and_then(|action| action.blocked_because.as_deref())
                .map(sentence);
            page(&wizard(
                Layout::new(&session, "databases"),
                &view,
                ReplicaForm {
                    name: String::new(),
                    priority: DEFAULT_PRIORITY.to_string(),
                },
                blocked,
            ))
        }
        Err(error) => render::error_page(&session, error),
    }
}

#[derive(Debug, Deserialize)]
pub struct ReplicaForm {
    #[serde(default)]
    name: String,
    /// Failover priority 0..=100; empty means the default.
    #[serde(default)]
    priority: String,
}

/// The form's priority: empty is the default, else a whole number 0..=100.
pub(super) fn parse_priority(text: &str) -> Result<u8, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(DEFAULT_PRIORITY);
    }
    match text.parse::<u8>() {
        Ok(priority) if priority <= 100 => Ok(priority),
        _ => Err(ApiError::bad_request(format!(
            "invalid failover priority {text:?}: a whole number from 0 to 100"
        ))),
    }
}

pub async fn create_replica(
    State(state): State<AppState>,
    Path(db): Path<String>,
    Protected { session, form }: Protected<ReplicaForm>,
) -> Response {
    let name = form.name.trim().to_string();
    let created = match parse_priority(&form.priority) {
        Ok(priority) => {
            let request = CreateReplicaRequest {
                name: name.clone(),
                priority: Some(priority),
                count: None,
            };
            crate::api::databases::create_replica(
                State(state.clone()),
                Path(db.clone()),
                crate::api::ApiJson(request),
            )
            .await
        }
        Err(error) => Err(error),
    };
    match created {
        Ok((_, Json(task))) => {
            session.flash(
                "ok",
                format!(
                    "Creating read replica {name} (task #{}). It appears below and turns Online when it streams from the primary.",
                    task.task_id
                ),
            );
            Redirect::to(&render::db_path(&db, "/cluster")).into_response()
        }
        Err(error) => {
            let status = error.status;
            match load(&state, &db).await {
                Ok(view) => html(
                    status,
                    &wizard(
                        Layout::new(&session, "databases"),
                        &view,
                        ReplicaForm {
                            name,
                            priority: form.priority.trim().to_string(),
                        },
                        Some(sentence(&error.message)),
                    ),
                ),
                Err(load_error) => render::error_page(&session, load_error),
            }
        }
    }
}

/// After an action: a flash with the outcome, back to Cluster Settings.
fn back_to_cluster(session: &Session, db: &str, outcome: Result<String, ApiError>) -> Response {
    match outcome {
        Ok(message) => session.flash("ok", message),
        Err(error) => session.flash("error", sentence(&error.message)),
    }
    Redirect::to(&render::db_path(db, "/cluster")).into_response()
}

/// The node of a confirmation page, or the page explaining it is not there.
async fn existing_node(
    state: &AppState,
    db: &str,
    node: &str,
    session: &Session,
) -> Result<(), Response> {
    let view = load(state, db)
        .await
        .map_err(|error| render::error_page(session, error))?;
    if view.nodes.iter().any(|n| n.name == node) {
        return Ok(());
    }
    let error = ApiError::not_found("node", node);
    Err(render::error_page(session, error))
}

pub async fn confirm_promote(
    State(state): State<AppState>,
    Path((db, node)): Path<(String, String)>,
    session: Session,
) -> Response {
    if let Err(response) = existing_node(&state, &db, &node, &session).await {
        return response;
    }
    let confirm = Confirm {
        title: format!("Promote {node} to primary?"),
        explanation: format!(
            "{node} becomes the primary of {db} and the current primary becomes a replica. \
             Connections to primary.{db} move to {node}; open transactions on the old \
             primary are cut off."
        ),
        action: format!("/databases/{db}/nodes/{node}/promote"),
        button: "Promote Replica".into(),
        danger: false,
        cancel: render::db_path(&db, "/cluster"),
    };
    page(&ConfirmPage::new(&session, "databases", confirm))
}

pub async fn promote(
    State(state): State<AppState>,
    Path((db, node)): Path<(String, String)>,
    Protected { session, .. }: Protected<Empty>,
) -> Response {
    let outcome =
        crate::api::databases::promote(State(state), Path((db.clone(), node.clone()))).await;
    let outcome = outcome.map(|(_, Json(task))| {
        format!(
            "Promoting {node} (task #{}): it becomes the primary in a few seconds.",
            task.task_id
        )
    });
    back_to_cluster(&session, &db, outcome)
}

#[derive(Debug, Deserialize)]
pub struct MaintenanceForm {
    on: bool,
}

pub async fn maintenance(
    State(state): State<AppState>,
    Path((db, node)): Path<(String, String)>,
    Protected { session, form }: Protected<MaintenanceForm>,
) -> Response {
    let request = MaintenanceRequest { on: form.on };
    let outcome = crate::api::databases::set_maintenance(
        State(state),
        Path((db.clone(), node.clone())),
        crate::api::ApiJson(request),
    )
    .await;
    let outcome = outcome.map(|(_, Json(task))| {
        let what = if form.on { "on" } else { "off" };
        format!(
            "Turning maintenance {what} for {node} (task #{}).",
            task.task_id
        )
    });
    back_to_cluster(&session, &db, outcome)
}

pub async fn confirm_delete_replica(
    State(state): State<AppState>,
    Path((db, node)): Path<(String, String)>,
    session: Session,
) -> Response {
    if let Err(response) = existing_node(&state, &db, &node, &session).await {
        return response;
    }
    let confirm = Confirm {
        title: format!("Delete replica {node}?"),
        explanation: format!(
            "{node} is stopped and its data is removed. {db} keeps running on its \
             other nodes; with fewer than two replicas its HA status is no longer Complete."
        ),
        action: format!("/databases/{db}/replicas/{node}/delete"),
        button: "Delete replica".into(),
        danger: true,
        cancel: render::db_path(&db, "/cluster"),
    };
    page(&ConfirmPage::new(&session, "databases", confirm))
}

pub async fn delete_replica(
    State(state): State<AppState>,
    Path((db, node)): Path<(String, String)>,
    Protected { session, .. }: Protected<Empty>,
) -> Response {
    let outcome =
        crate::api::databases::delete_replica(State(state), Path((db.clone(), node.clone()))).await;
    let outcome =
        outcome.map(|(_, Json(task))| format!("Deleting replica {node} (task #{}).", task.task_id));
    back_to_cluster(&session, &db, outcome)
}
