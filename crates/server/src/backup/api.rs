//! Backup endpoints: locations (`/backup-locations`), a database's policy
//! (`PUT /databases/{db}/backup-policy`), backups (`POST` queues a `Backup`
//! task, `GET` lists them with the recoverable window from what the
//! agents read with `pgbackrest info`), and the create request's backup
//! and restore options (`prepare_create`). Writes need an admin token
//! (`auth::require_token`: viewers only read).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use pgfleet_core::api::{CreateDatabaseRequest, TaskRef};
use pgfleet_core::backup::{
    parse_info, BackupListView, BackupLocation, BackupPolicy, BackupPolicyRequest, BackupRequest,
    CreateBackupLocationRequest, RestoreSpec, RestoreTarget,
};
use pgfleet_core::{Database, HostStatus};
use pgfleet_store::Submission;

use super::locations;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tasks::params::{self, TaskParams};

#[utoipa::path(post, path = "/api/v1/backup-locations", request_body = CreateBackupLocationRequest,
    responses((status = 201, body = BackupLocation), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn create_location(
    State(state): State<AppState>,
    crate::api::ApiJson(request): crate::api::ApiJson<CreateBackupLocationRequest>,
) -> Result<(StatusCode, Json<BackupLocation>), ApiError> {
    let location = match (&request.posix_path, &request.s3) {
        (Some(path), None) => locations::create(&state, &request.name, path).await?,
        (None, Some(s3)) => locations::create_s3(&state, &request.name, s3).await?,
        _ => {
            return Err(ApiError::bad_request(
                "a backup location is either posix_path or s3",
            ))
        }
    };
    Ok((StatusCode::CREATED, Json(location)))
}

/// Marks the stanzas whose database is gone (or is another of that name).
async fn with_deleted_marked(
    state: &AppState,
    mut location: BackupLocation,
) -> Result<BackupLocation, ApiError> {
    let databases = state.store.list_databases().await?;
    for record in location.stanzas.iter_mut() {
        record.deleted = !databases
            .iter()
            .any(|d| d.name == record.db && d.created_at_ms == record.db_created_at_ms);
    }
    Ok(location)
}

#[utoipa::path(get, path = "/api/v1/backup-locations", responses((status = 200, body = [BackupLocation])), security(("token" = [])))]
pub async fn list_locations(
    State(state): State<AppState>,
) -> Result<Json<Vec<BackupLocation>>, ApiError> {
    let mut out = Vec::new();
    for location in locations::list(&state).await? {
        out.push(with_deleted_marked(&state, location).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/backup-locations/{name}", params(("name" = String, Path)),
    responses((status = 200, body = BackupLocation), (status = 404, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn show_location(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackupLocation>, ApiError> {
    let location = locations::get(&state, &name).await?;
    Ok(Json(with_deleted_marked(&state, location).await?))
}

#[utoipa::path(delete, path = "/api/v1/backup-locations/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn delete_location(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    locations::delete(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn load(state: &AppState, name: &str) -> Result<Database, ApiError> {
    let found = state.store.get_database(name).await?;
    found.ok_or_else(|| ApiError::not_found("database", name))
}

#[utoipa::path(put, path = "/api/v1/databases/{db}/backup-policy", params(("db" = String, Path)), request_body = BackupPolicyRequest,
    responses((status = 200, body = BackupPolicy), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 404, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn set_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    crate::api::ApiJson(request): crate::api::ApiJson<BackupPolicyRequest>,
) -> Result<Json<BackupPolicy>, ApiError> {
    let db = load(&state, &name).await?;
    if db.status == pgfleet_core::DbStatus::Deleting {
        return Err(ApiError::conflict(format!(
            "database {name:?} is being deleted"
        )));
    }
    let policy = super::policy_for(&state, &db, &request).await?;
    let stored = policy.clone();
    state
        .update_database(&name, move |db| {
            if db.backup.policy.as_ref().map(|p| &p.schedule) != Some(&stored.schedule) {
                db.backup.last_scheduled_ms = None;
            }
            db.backup.policy = Some(stored);
        })
        .await?;
    tracing::info!(db = %name, location = %policy.location, stanza = %policy.stanza, "backup policy set");
    Ok(Json(policy))
}

#[utoipa::path(post, path = "/api/v1/databases/{db}/backups", params(("db" = String, Path)), request_body = BackupRequest,
    responses((status = 202, body = TaskRef), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn create_backup(
    State(state): State<AppState>,
    Path(name): Path<String>,
    crate::api::ApiJson(request): crate::api::ApiJson<BackupRequest>,
) -> Result<(StatusCode, Json<TaskRef>), ApiError> {
    let db = load(&state, &name).await?;
    if db.backup.policy.is_none() {
        return Err(ApiError::bad_request(format!(
            "database {name:?} has no backup policy (pgfleet db backup-policy set {name} --backup-location L)"
        )));
    }
    if db.status != pgfleet_core::DbStatus::Online {
        return Err(ApiError::conflict(format!(
            "database {name:?} is {}: backups are taken once it is online",
            format!("{:?}", db.status).to_lowercase()
        )));
    }
    let kind = request.r#type.unwrap_or_else(|| "full".into());
    if !["full", "diff", "incr"].contains(&kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "invalid backup type {kind:?}: full, diff or incr"
        )));
    }
    let params = TaskParams::Backup(params::Backup {
        kind,
        scheduled: false,
        ..Default::default()
    });
    match crate::tasks::submit_if_idle(&state, &params, &name).await? {
        Submission::Queued(task) => Ok((StatusCode::ACCEPTED, Json(TaskRef { task_id: task.id }))),
        Submission::Busy(task) => Err(ApiError::conflict(format!(
            "database {name:?} is busy with task {} ({:?})",
            task.id, task.kind
        ))),
        Submission::NoDatabase => Err(ApiError::not_found("database", &name)),
    }
}

#[utoipa::path(get, path = "/api/v1/databases/{db}/backups", params(("db" = String, Path)),
    responses((status = 200, body = BackupListView), (status = 404, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn list_backups(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackupListView>, ApiError> {
    let db = load(&state, &name).await?;
    let observed = state.observed.lock().expect("observed lock");
    let mut newest: Option<(i64, BackupListView)> = None;
    let mut archiver = None;
    for node in &db.nodes {
        if observed.host_status(&node.host, state.host_timeout()) != HostStatus::Connected {
            continue;
        }
        let Some(backup) = observed
            .instance(&node.host, &db.name, &node.name)
            .and_then(|i| i.backup.as_ref())
        else {
            continue;
        };
        if db.primary().is_some_and(|p| p.name == node.name) {
            archiver = backup.archiver.clone();
        }
        if let (Some(info), Some(at)) = (&backup.info, backup.info_at_ms) {
            if newest.as_ref().is_none_or(|(t, _)| at > *t) {
                newest = Some((at, info.clone()));
            }
        }
    }
    drop(observed);
    let mut view = match newest {
        Some((at, info)) => BackupListView {
            read_at_ms: Some(at),
            ..info
        },
        None => parse_info(&name, &serde_json::Value::Null),
    };
    view.db = name.clone();
    view.latest_restorable_ms = archiver.as_ref().and_then(|a| a.last_archived_at_ms);
    if view.backups.is_empty() {
        view.latest_restorable_ms = None;
    }
    view.archiver = archiver;
    view.policy = db.backup.policy.clone();
    Ok(Json(view))
}

/// The restore a create request asks for: source stanza, target; and what
/// the new database takes from the source (version, admin role name,
/// database name: the restored files hold them).
async fn restore_spec(
    state: &AppState,
    request: &pgfleet_core::backup::RestoreRequest,
    db: &mut Database,
) -> Result<RestoreTarget, ApiError> {
    let target = match (&request.backup, &request.time) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "restore to a backup or to a time, not both",
            ))
        }
        (Some(label), None) => {
            let plain = !label.is_empty()
                && label.len() <= 64
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !plain {
                return Err(ApiError::bad_request(format!(
                    "invalid backup label {label:?}"
                )));
            }
            RestoreTarget::Backup {
                label: label.clone(),
            }
        }
        (None, Some(time)) => {
            if !pgfleet_core::backup::valid_target_time(time) {
                return Err(ApiError::bad_request(format!(
                    "invalid restore time {time:?}: 'YYYY-MM-DD HH:MM:SS+00' (UTC)"
                )));
            }
            RestoreTarget::Time { time: time.clone() }
        }
        (None, None) => RestoreTarget::Latest,
    };
    let source = state.store.get_database(&request.from).await?;
    let (location, stanza, repo_path, version, admin_user, database_name) = match source
        .as_ref()
        .and_then(|s| s.backup.policy.clone().map(|p| (s, p)))
    {
        Some((source, policy)) => (
            policy.location,
            policy.stanza,
            policy.repo_path,
            source.version,
            source.admin_user.clone(),
            source.database_name.clone(),
        ),
        None => match locations::find_stanza(state, &request.from).await? {
            Some((location, record)) => (
                location.name.clone(),
                record.stanza.clone(),
                location.repo_path(&record.stanza),
                record.version,
                record.admin_user,
                record.database_name,
            ),
            None => {
                return Err(ApiError::bad_request(format!(
                    "no backups of database {:?} in any backup location",
                    request.from
                )))
            }
        },
    };
    db.version = version;
    db.admin_user = admin_user;
    db.database_name = database_name;
    db.backup.restore = Some(RestoreSpec {
        source_db: request.from.clone(),
        stanza,
        repo_path,
        target: target.clone(),
        location: Some(location),
        s3: None,
    });
    Ok(target)
}

/// Applies a create request's restore and backup options to the new
/// database record; returns the task that makes it.
pub async fn prepare_create(
    state: &AppState,
    request: &CreateDatabaseRequest,
    db: &mut Database,
) -> Result<TaskParams, ApiError> {
    let mut params = TaskParams::CreateDatabase(params::CreateDatabase {
        version: Some(db.version),
    });
    if let Some(restore) = &request.restore {
        if request.version.is_some() || request.admin_user.is_some() || request.database.is_some() {
            return Err(ApiError::bad_request(
                "a restored database keeps the source's version, admin role and database name",
            ));
        }
        let target = restore_spec(state, restore, db).await?;
        params = TaskParams::RestoreDatabase(params::RestoreDatabase {
            source: restore.from.clone(),
            target,
        });
    }
    if let Some(policy) = &request.backup_policy {
        db.backup.policy = Some(super::policy_for(state, db, policy).await?);
    }
    Ok(params)
}
