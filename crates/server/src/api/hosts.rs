//! `GET /api/v1/hosts` (hosts that beat, and hosts that joined but never
//! beat, as `joined`), join tokens, `DELETE /api/v1/hosts/{name}`, and the
//! expiry of joined hosts that never beat.

use axum::extract::State;
use axum::Json;
use pgfleet_core::api::HostView;
use pgfleet_core::Desired;

use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/hosts", responses((status = 200, body = [HostView])), security(("token" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<HostView>>, ApiError> {
    let hosts = state.store.list_hosts().await?;
    let databases = state.store.list_databases().await?;
    let joined_only = state.identities.joined_only(&hosts);
    let observed = state.observed.lock().expect("observed lock");
    let mut views = Vec::with_capacity(hosts.len() + joined_only.len());
    for host in hosts {
        let mut instances = Vec::new();
        for db in &databases {
            for node in &db.nodes {
                if node.host == host.name && node.desired != Desired::Deleted {
                    instances.push(format!("{}/{}", db.name, node.name));
                }
            }
        }
        let obs = observed.hosts.get(&host.name);
        views.push(HostView {
            status: observed.host_status(&host.name, state.host_timeout()),
            last_heartbeat_ms: obs.map(|o| o.last_seen_ms),
            pg_version: obs.map(|o| o.pg_version),
            certificate_expires_at_ms: state
                .identities
                .certificate(&host.name)
                .map(|c| c.expires_at_ms),
            name: host.name,
            address: host.address,
            failure_domain: host.failure_domain,
            instances,
        });
    }
    for (name, binding) in joined_only {
        views.push(HostView {
            status: pgfleet_core::HostStatus::Joined,
            last_heartbeat_ms: None,
            pg_version: None,
            certificate_expires_at_ms: state.identities.certificate(&name).map(|c| c.expires_at_ms),
            name,
            address: binding.address.unwrap_or_default(),
            failure_domain: binding.failure_domain.unwrap_or_default(),
            instances: Vec::new(),
        });
    }
    Ok(Json(views))
}

/// Forgets hosts that joined more than `--joined-host-expiry-secs` ago and
/// never beat (their credentials, certificates, reserved addresses).
pub async fn expire_joined(state: &AppState) -> Result<(), ApiError> {
    let hosts = state.store.list_hosts().await?;
    let cutoff =
        pgfleet_core::time::now_ms() - (state.config.joined_host_expiry_secs as i64) * 1000;
    let expired = state
        .identities
        .expire_unseen(state.store.as_ref(), &hosts, cutoff)
        .await?;
    for host in expired {
        tracing::info!(host = %host, "joined host never beat: forgotten");
    }
    Ok(())
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// Validity in seconds (at most one day).
    pub ttl_secs: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JoinTokenView {
    pub token: String,
    pub expires_at_ms: i64,
}

/// Longest validity of a join token: one day.
pub const MAX_JOIN_TTL_SECS: u64 = 86_400;

/// Checks a join token's validity (pure): 1..=[`MAX_JOIN_TTL_SECS`] seconds.
pub fn validate_join_ttl(ttl_secs: u64) -> Result<u64, ApiError> {
    if ttl_secs == 0 || ttl_secs > MAX_JOIN_TTL_SECS {
        return Err(ApiError::bad_request(format!(
            "invalid ttl_secs {ttl_secs}: 1..={MAX_JOIN_TTL_SECS}"
        )));
    }
    Ok(ttl_secs)
}

/// A one-time, expiring token a new host's agent joins with.
#[utoipa::path(post, path = "/api/v1/hosts/join-tokens", request_body = JoinTokenRequest,
    responses((status = 201, body = JoinTokenView), (status = 400, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn create_join_token(
    State(state): State<AppState>,
    crate::api::ApiJson(request): crate::api::ApiJson<JoinTokenRequest>,
) -> Result<(axum::http::StatusCode, Json<JoinTokenView>), ApiError> {
    let ttl = validate_join_ttl(request.ttl_secs)?;
    let (token, expires_at_ms) = state
        .identities
        .create_join_token(state.store.as_ref(), ttl)
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(JoinTokenView {
            token,
            expires_at_ms,
        }),
    ))
}

/// Removes a host that carries no node: its credential is forgotten, so it
/// cannot come back with its old identity. A live monitor on it is moved
/// first (409 naming the `ReplaceMonitor` task).
#[utoipa::path(delete, path = "/api/v1/hosts/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    let hosts = state.store.list_hosts().await?;
    let stored = hosts.iter().any(|h| h.name == name);
    if !stored && state.identities.binding(&name).is_none() {
        return Err(ApiError::not_found("host", &name));
    }
    let databases = state.store.list_databases().await?;
    let retired = |n: &pgfleet_core::Node| {
        n.role == pgfleet_core::NodeRole::Monitor && n.desired == pgfleet_core::Desired::Deleted
    };
    for db in &databases {
        if let Some(node) = db.nodes.iter().find(|n| n.host == name && !retired(n)) {
            if node.role == pgfleet_core::NodeRole::Monitor {
                return Err(move_monitor(&state, db, node).await?);
            }
            return Err(ApiError::conflict(format!(
                "host {name:?} carries node {} of {}: move or delete it first",
                node.name, db.name
            )));
        }
    }
    // Replaced monitors on the host need no confirmation from it any more.
    for db in &databases {
        if db.nodes.iter().any(|n| n.host == name && retired(n)) {
            state
                .update_database(&db.name, |db| {
                    db.nodes.retain(|n| !(n.host == name && retired(n)))
                })
                .await?;
        }
    }
    state.identities.remove(state.store.as_ref(), &name).await?;
    if stored {
        state.store.delete_host(&name).await?;
    }
    tracing::info!(host = %name, "host removed");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A host being removed carries a database's monitor: a `ReplaceMonitor`
/// task moves it to another host (the answer says which task; the removal
/// is asked again once it finished).
async fn move_monitor(
    state: &AppState,
    db: &pgfleet_core::Database,
    monitor: &pgfleet_core::Node,
) -> Result<ApiError, ApiError> {
    use crate::tasks::params::{ReplaceMonitor, TaskParams};
    let params = TaskParams::ReplaceMonitor(ReplaceMonitor {
        old_node: monitor.name.clone(),
        old_host: monitor.host.clone(),
        reason: format!("host {} is being removed", monitor.host),
        new_node: None,
        new_host: None,
    });
    let said = match crate::tasks::submit_if_idle(state, &params, &db.name).await? {
        pgfleet_store::Submission::Queued(task) => {
            tracing::warn!(db = %db.name, monitor = %monitor.name, host = %monitor.host, task_id = task.id, "moving the monitor off a host being removed");
            format!(
                "it carries the monitor of {}: moving it to another host (task {}); remove the host again once that task finished",
                db.name, task.id
            )
        }
        pgfleet_store::Submission::Busy(task) => format!(
            "it carries the monitor of {}, which is busy with task {} ({:?}); try again when it finished",
            db.name, task.id, task.kind
        ),
        pgfleet_store::Submission::NoDatabase => format!("it carries a monitor of {}", db.name),
    };
    Ok(ApiError::conflict(format!(
        "host {:?} cannot be removed yet: {said}",
        monitor.host
    )))
}
