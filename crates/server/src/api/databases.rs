//! Database endpoints: create, list, show, uri, delete, replicas, events.
//! A change is refused exactly when the database's view shows its action as
//! not possible (`crate::actions`), with the view's reason.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use pgfleet_core::api::{
    ActionKind, ActionView, CreateDatabaseRequest, CreateReplicaRequest, DatabaseView, TaskRef,
    UriView,
};
use pgfleet_core::names::{validate_database_name, validate_node_name};
use pgfleet_core::time::now_ms;
use pgfleet_core::{Database, DbStatus, Task};
use pgfleet_store::Submission;
use serde::Deserialize;

use crate::actions::refusal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tasks::params::{self, TaskParams};
use crate::views::{database_view, ViewContext};

/// Role names the control plane keeps for itself.
const RESERVED_ROLES: &[&str] = &["postgres", "pgfleet", "pgfleet_replication"];

/// PostgreSQL identifiers we accept for roles and databases: no quoting needed.
fn validate_identifier(kind: &str, value: &str) -> Result<(), ApiError> {
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if !valid {
        return Err(ApiError::bad_request(format!(
            "invalid {kind} {value:?}: 1-63 characters, lowercase letters, digits and '_', starting with a letter or '_'"
        )));
    }
    if RESERVED_ROLES.contains(&value) && kind == "admin user" {
        return Err(ApiError::bad_request(format!(
            "invalid admin user {value:?}: reserved for pgfleet"
        )));
    }
    Ok(())
}

/// A create-database request that passed [`validate_create`], defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidCreateDatabase {
    pub admin_user: String,
    pub database_name: String,
    pub version: u32,
}

/// Checks a create-database request (pure, no store access): the database name, the
/// admin role and database identifiers, and the major version 10..=99.
pub fn validate_create(request: &CreateDatabaseRequest) -> Result<ValidCreateDatabase, ApiError> {
    validate_database_name(&request.name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let admin_user = request
        .admin_user
        .clone()
        .unwrap_or_else(|| "pgadmin".into());
    validate_identifier("admin user", &admin_user)?;
    let database_name = request
        .database
        .clone()
        .unwrap_or_else(|| "postgres".into());
    validate_identifier("database", &database_name)?;
    let version = request.version.unwrap_or(15);
    if !(10..=99).contains(&version) {
        return Err(ApiError::bad_request(format!(
            "invalid version {version}: a PostgreSQL major version such as 15"
        )));
    }
    Ok(ValidCreateDatabase {
        admin_user,
        database_name,
        version,
    })
}

/// The major version of a new database: the one asked for, which some
/// connected host must run; else the one most connected hosts run (else
/// `fallback`). With no host connected yet, the request stands (the task
/// waits for hosts and explains if none fits).
pub fn choose_version(
    asked: Option<u32>,
    fallback: u32,
    connected: &[u32],
) -> Result<u32, ApiError> {
    match asked {
        Some(version) if !connected.is_empty() && !connected.contains(&version) => {
            let running: Vec<String> = connected.iter().map(u32::to_string).collect();
            Err(ApiError::bad_request(format!(
                "no connected host runs PostgreSQL {version} (hosts run {})",
                running.join(", ")
            )))
        }
        Some(version) => Ok(version),
        None => Ok(connected.first().copied().unwrap_or(fallback)),
    }
}

/// Checks a create-replica request (pure): the node name (when given), the
/// count (1..=8; a name names one replica only) and the failover priority
/// 0..=100 (default 50). Returns the priority.
pub fn validate_replica(request: &CreateReplicaRequest) -> Result<u8, ApiError> {
    if !request.name.is_empty() {
        validate_node_name(&request.name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let count = request.count.unwrap_or(1);
    if count == 0 || count > pgfleet_core::api::MAX_REPLICAS_AT_ONCE {
        return Err(ApiError::bad_request(format!(
            "invalid count {count}: 1..={} replicas at once",
            pgfleet_core::api::MAX_REPLICAS_AT_ONCE
        )));
    }
    if count > 1 && !request.name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "a name names one replica: leave it out to add {count} (they are named pg-replica-N)"
        )));
    }
    let priority = request.priority.unwrap_or(50);
    if priority > 100 {
        return Err(ApiError::bad_request(format!(
            "invalid priority {priority}: 0..=100"
        )));
    }
    Ok(priority)
}

/// What a view reads from the store besides the database: hosts and
/// unfinished tasks.
struct ViewParts {
    hosts: Vec<pgfleet_core::Host>,
    unfinished: Vec<Task>,
}

async fn view_context_parts(state: &AppState) -> Result<ViewParts, ApiError> {
    Ok(ViewParts {
        hosts: state.store.list_hosts().await?,
        unfinished: state.store.unfinished_tasks().await?,
    })
}

fn render(state: &AppState, parts: &ViewParts, db: &Database, show_password: bool) -> DatabaseView {
    let observed = state.observed.lock().expect("observed lock");
    let zone = state.zone.zone();
    let ctx = ViewContext {
        observed: &observed,
        hosts: &parts.hosts,
        host_timeout: state.host_timeout(),
        zone: &zone,
        unfinished: &parts.unfinished,
    };
    let mut view = database_view(db, &ctx, show_password);
    drop(observed);
    view.dns_servers = crate::zone_snapshot::dns_servers(state, &parts.hosts);
    view
}

/// The database's view now, for a handler that checks an action in it.
async fn current_view(state: &AppState, db: &Database) -> Result<DatabaseView, ApiError> {
    let parts = view_context_parts(state).await?;
    Ok(render(state, &parts, db, false))
}

/// The actions of node `node` in `view` (empty when it is not there).
fn node_actions<'a>(view: &'a DatabaseView, node: &str) -> &'a [ActionView] {
    view.nodes
        .iter()
        .find(|n| n.name == node)
        .map(|n| n.actions.as_slice())
        .unwrap_or_default()
}

#[utoipa::path(post, path = "/api/v1/databases", request_body = CreateDatabaseRequest,
    responses((status = 202, body = TaskRef), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    crate::api::ApiJson(request): crate::api::ApiJson<CreateDatabaseRequest>,
) -> Result<(StatusCode, Json<TaskRef>), ApiError> {
    let ValidCreateDatabase {
        admin_user,
        database_name,
        version,
    } = validate_create(&request)?;
    let version = choose_version(request.version, version, &state.connected_versions())?;
    let task = {
        let _guard = state.db_lock.lock().await;
        let existing = state.store.list_databases().await?;
        if existing.iter().any(|d| d.name == request.name) {
            return Err(ApiError::conflict(format!(
                "database {:?} already exists",
                request.name
            )));
        }
        let mut port = 5432u16;
        while existing.iter().any(|d| d.port == port) {
            port += 1;
        }
        let mut db = Database {
            name: request.name.clone(),
            status: DbStatus::Creating,
            version,
            port,
            admin_user,
            admin_password: pgfleet_core::secrets::generate_password(),
            replication_password: pgfleet_core::secrets::generate_password(),
            superuser_password: pgfleet_core::secrets::generate_password(),
            monitor_token: pgfleet_core::secrets::random_token(40),
            database_name,
            created_at_ms: now_ms(),
            generation: 1,
            nodes: vec![],
            error: None,
            ha_generation: 0,
            monitor_epoch: 0,
            backup: Default::default(),
        };
        let params = crate::backup::api::prepare_create(&state, &request, &mut db).await?;
        let task = crate::tasks::queued_task(&params, &db.name);
        let stored = state.store.insert_database_with_task(&db, &task).await?;
        crate::tasks::queued(&state, &stored);
        stored
    };
    Ok((StatusCode::ACCEPTED, Json(TaskRef { task_id: task.id })))
}

#[utoipa::path(get, path = "/api/v1/databases", responses((status = 200, body = [DatabaseView])), security(("token" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<DatabaseView>>, ApiError> {
    let parts = view_context_parts(&state).await?;
    let databases = state.store.list_databases().await?;
    Ok(Json(
        databases
            .iter()
            .map(|db| render(&state, &parts, db, false))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ShowQuery {
    /// Include the admin password.
    #[serde(default)]
    pub show_password: bool,
}

async fn load(state: &AppState, name: &str) -> Result<Database, ApiError> {
    state
        .store
        .get_database(name)
        .await?
        .ok_or_else(|| ApiError::not_found("database", name))
}

#[utoipa::path(get, path = "/api/v1/databases/{db}", params(("db" = String, Path), ShowQuery),
    responses((status = 200, body = DatabaseView), (status = 404, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Json<DatabaseView>, ApiError> {
    let db = load(&state, &name).await?;
    let parts = view_context_parts(&state).await?;
    Ok(Json(render(&state, &parts, &db, query.show_password)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UriQuery {
    /// Use the primary's current address instead of its DNS name.
    #[serde(default)]
    pub resolved: bool,
}

#[utoipa::path(get, path = "/api/v1/databases/{db}/uri", params(("db" = String, Path), UriQuery),
    responses((status = 200, body = UriView), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn uri(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<UriQuery>,
) -> Result<Json<UriView>, ApiError> {
    let db = load(&state, &name).await?;
    let host = if query.resolved {
        match db.primary() {
            Some(primary) => primary.address.clone(),
            None => {
                return Err(ApiError::conflict(format!(
                    "database {name:?} has no primary yet"
                )))
            }
        }
    } else {
        format!("primary.{}.{}", db.name, state.zone.zone())
    };
    let uri = format!(
        "postgresql://{}:{}@{}:{}/{}",
        db.admin_user, db.admin_password, host, db.port, db.database_name
    );
    let hosts = state.store.list_hosts().await?;
    let dns_servers = crate::zone_snapshot::dns_servers(&state, &hosts);
    Ok(Json(UriView { uri, dns_servers }))
}

/// Queues a task on the database `name` unless one of its tasks is still
/// unfinished (409), checked and stored in one store transaction.
async fn submit_if_idle(
    state: &AppState,
    params: TaskParams,
    name: &str,
) -> Result<Task, ApiError> {
    match crate::tasks::submit_if_idle(state, &params, name).await? {
        Submission::Queued(task) => Ok(task),
        Submission::Busy(task) => Err(ApiError::conflict(format!(
            "task {} ({:?}) is still running on database {name:?}",
            task.id, task.kind
        ))),
        Submission::NoDatabase => Err(ApiError::not_found("database", name)),
    }
}

#[utoipa::path(delete, path = "/api/v1/databases/{db}", params(("db" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<TaskRef>), ApiError> {
    let db = load(&state, &name).await?;
    let view = current_view(&state, &db).await?;
    refusal(&view.actions, ActionKind::DeleteDatabase)?;
    let params = TaskParams::DeleteDatabase(params::DeleteDatabase {});
    let task = submit_if_idle(&state, params, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(TaskRef { task_id: task.id })))
}

#[utoipa::path(post, path = "/api/v1/databases/{db}/replicas", params(("db" = String, Path)), request_body = CreateReplicaRequest,
    responses((status = 202, body = TaskRef), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn create_replica(
    State(state): State<AppState>,
    Path(name): Path<String>,
    crate::api::ApiJson(request): crate::api::ApiJson<CreateReplicaRequest>,
) -> Result<(StatusCode, Json<TaskRef>), ApiError> {
    let priority = validate_replica(&request)?;
    let db = load(&state, &name).await?;
    let view = current_view(&state, &db).await?;
    refusal(&view.actions, ActionKind::CreateReplica)?;
    let monitor_name = format!("{name}-monitor");
    let mut names = if request.name.is_empty() {
        let taken = db
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .chain([monitor_name.as_str()]);
        pgfleet_core::names::next_replica_names(taken, usize::from(request.count.unwrap_or(1)))
    } else {
        vec![request.name.clone()]
    };
    if db.nodes.iter().any(|n| n.name == request.name) || request.name == monitor_name {
        return Err(ApiError::conflict(format!(
            "node {:?} already exists in database {name:?}",
            request.name
        )));
    }
    let params = TaskParams::CreateReplica(params::CreateReplica {
        node: names.remove(0),
        priority,
        more: names,
    });
    let task = submit_if_idle(&state, params, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(TaskRef { task_id: task.id })))
}

#[utoipa::path(get, path = "/api/v1/databases/{db}/events", params(("db" = String, Path)),
    responses((status = 200, body = [Object]), (status = 404, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    load(&state, &name).await?;
    Ok(Json(state.store.list_events(&name).await?))
}

fn data_node<'a>(db: &'a Database, node: &str) -> Result<&'a pgfleet_core::Node, ApiError> {
    let found = db
        .node(node)
        .filter(|n| n.desired != pgfleet_core::Desired::Deleted && !n.removing);
    found.ok_or_else(|| ApiError::not_found("node", node))
}

#[utoipa::path(post, path = "/api/v1/databases/{db}/nodes/{node}/promote", params(("db" = String, Path), ("node" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn promote(
    State(state): State<AppState>,
    Path((name, node)): Path<(String, String)>,
) -> Result<(StatusCode, Json<TaskRef>), ApiError> {
    let db = load(&state, &name).await?;
    data_node(&db, &node)?;
    let view = current_view(&state, &db).await?;
    refusal(node_actions(&view, &node), ActionKind::Promote)?;
    let params = TaskParams::PromoteReplica(params::PromoteReplica {
        node: Some(node),
        reason: Some("switchover".into()),
        ..Default::default()
    });
    let task = submit_if_idle(&state, params, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(TaskRef { task_id: task.id })))
}

#[utoipa::path(delete, path = "/api/v1/databases/{db}/replicas/{node}", params(("db" = String, Path), ("node" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn delete_replica(
    State(state): State<AppState>,
    Path((name, node)): Path<(String, String)>,
) -> Result<(StatusCode, Json<TaskRef>), ApiError> {
    let db = load(&state, &name).await?;
    data_node(&db, &node)?;
    let view = current_view(&state, &db).await?;
    refusal(node_actions(&view, &node), ActionKind::DeleteReplica)?;
    let params = TaskParams::DeleteReplica(params::DeleteReplica { node });
    let task = submit_if_idle(&state, params, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(TaskRef { task_id: task.id })))
}

#[utoipa::path(post, path = "/api/v1/databases/{db}/nodes/{node}/maintenance", params(("db" = String, Path), ("node" = String, Path)),
    request_body = pgfleet_core::api::MaintenanceRequest,
    responses((status = 202, body = TaskRef), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn set_maintenance(
    State(state): State<AppState>,
    Path((name, node)): Path<(String, String)>,
    crate::api::ApiJson(request): crate::api::ApiJson<pgfleet_core::api::MaintenanceRequest>,
) -> Result<(StatusCode, Json<TaskRef>), ApiError> {
    let db = load(&state, &name).await?;
    data_node(&db, &node)?;
    let view = current_view(&state, &db).await?;
    let kind = if request.on {
        ActionKind::MaintenanceOn
    } else {
        ActionKind::MaintenanceOff
    };
    refusal(node_actions(&view, &node), kind)?;
    let params = TaskParams::SetMaintenance(params::SetMaintenance {
        node,
        on: request.on,
    });
    let task = submit_if_idle(&state, params, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(TaskRef { task_id: task.id })))
}

#[cfg(test)]
mod version_tests {
    use super::choose_version;

    #[test]
    fn the_version_must_run_somewhere_and_defaults_to_the_fleets() {
        assert_eq!(choose_version(None, 15, &[16, 15]).unwrap(), 16);
        assert_eq!(choose_version(None, 15, &[]).unwrap(), 15);
        assert_eq!(choose_version(Some(14), 15, &[]).unwrap(), 14);
        assert_eq!(choose_version(Some(15), 15, &[16, 15]).unwrap(), 15);
        let error = choose_version(Some(17), 15, &[15]).unwrap_err();
        assert_eq!(
            error.message,
            "no connected host runs PostgreSQL 17 (hosts run 15)"
        );
    }
}
