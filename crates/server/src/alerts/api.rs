//! `/api/v1/alert-targets` (admin tokens only, reads included: a target's
//! list reveals where alerts go): create, list, test, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::store::{self, StoredTarget, TargetSecret};
use super::{Alert, KINDS};
use crate::auth::Role;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest signing secret accepted.
const MAX_SECRET_BYTES: usize = 1024;
const MAX_URL_BYTES: usize = 2048;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlertTargetRequest {
    pub name: String,
    /// `https://…`, or `http://` to a loopback address (tests).
    pub webhook: String,
    /// Signs every body (HMAC-SHA256, `X-Pgfleet-Signature: sha256=<hex>`).
    #[serde(default)]
    pub secret: Option<String>,
    /// Kinds to receive (all when absent or empty).
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// A target as listed: never its secret, and of its webhook only the origin.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertTargetView {
    pub name: String,
    /// Scheme, host and port; the path is not shown (it may be a credential).
    pub webhook: String,
    pub events: Vec<String>,
    pub signed: bool,
    pub created_at_ms: i64,
    pub last_attempt_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub delivered: u64,
    /// Alerts waiting for delivery (retrying).
    pub pending: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueuedAlert {
    pub queued: u64,
}

/// Checks a webhook address: `https://` anywhere, `http://` only to a
/// loopback address; no credentials in it. Returns its origin.
pub fn validate_webhook(text: &str) -> Result<String, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!("webhook address longer than {MAX_URL_BYTES} bytes"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| format!("invalid webhook address: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the webhook address must not hold a user or password: use --secret-file for signing"
                .into(),
        );
    }
    let host = url
        .host()
        .ok_or_else(|| "the webhook address has no host".to_string())?;
    let loopback = match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "webhooks must use https:// (http:// only to a loopback address, for tests)".into(),
            )
        }
        other => {
            return Err(format!("webhooks must use https://, not {other}://"));
        }
    }
    Ok(url.origin().ascii_serialization())
}

fn admin_only(role: Role) -> Result<(), ApiError> {
    if role != Role::Admin {
        return Err(ApiError::forbidden(
            "alert targets are managed with an admin token only",
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/alert-targets", responses((status = 200, body = [AlertTargetView]), (status = 403, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
) -> Result<Json<Vec<AlertTargetView>>, ApiError> {
    admin_only(role)?;
    let (targets, outbox) = {
        let _guard = state.alerts.lock.lock().await;
        (
            store::targets(state.store.as_ref()).await?,
            store::outbox(state.store.as_ref()).await?,
        )
    };
    let views = targets
        .into_iter()
        .map(|t| AlertTargetView {
            pending: outbox.iter().filter(|p| p.target == t.name).count() as u64,
            name: t.name,
            webhook: t.origin,
            events: t.events,
            signed: t.signed,
            created_at_ms: t.created_at_ms,
            last_attempt_ms: t.last_attempt_ms,
            last_success_ms: t.last_success_ms,
            last_error: t.last_error,
            delivered: t.delivered,
        })
        .collect();
    Ok(Json(views))
}

#[utoipa::path(post, path = "/api/v1/alert-targets", request_body = CreateAlertTargetRequest,
    responses((status = 201, body = AlertTargetView), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 403, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
    crate::api::ApiJson(request): crate::api::ApiJson<CreateAlertTargetRequest>,
) -> Result<(StatusCode, Json<AlertTargetView>), ApiError> {
    admin_only(role)?;
    pgfleet_core::names::validate_name(&request.name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let origin = validate_webhook(&request.webhook).map_err(ApiError::bad_request)?;
    let secret = request.secret.filter(|s| !s.is_empty());
    if secret.as_ref().is_some_and(|s| s.len() > MAX_SECRET_BYTES) {
        return Err(ApiError::bad_request(format!(
            "the signing secret is longer than {MAX_SECRET_BYTES} bytes"
        )));
    }
    let events = request.events.unwrap_or_default();
    if let Some(unknown) = events.iter().find(|e| !KINDS.contains(&e.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown event {unknown:?}: choose from {}",
            KINDS.join(", ")
        )));
    }
    let target = StoredTarget {
        name: request.name.clone(),
        origin,
        events,
        signed: secret.is_some(),
        created_at_ms: pgfleet_core::time::now_ms(),
        last_attempt_ms: None,
        last_success_ms: None,
        last_error: None,
        delivered: 0,
    };
    {
        let _guard = state.alerts.lock.lock().await;
        let mut targets = store::targets(state.store.as_ref()).await?;
        if targets.iter().any(|t| t.name == target.name) {
            return Err(ApiError::conflict(format!(
                "alert target {:?} already exists",
                target.name
            )));
        }
        let sealed = TargetSecret {
            url: request.webhook,
            secret,
        };
        state
            .store
            .put_meta(
                &store::secret_key(&target.name),
                &serde_json::to_string(&sealed).map_err(ApiError::internal)?,
            )
            .await?;
        targets.push(target.clone());
        store::put_targets(state.store.as_ref(), &targets).await?;
    }
    tracing::info!(name = %target.name, webhook = %target.origin, signed = target.signed, "alert target created");
    Ok((
        StatusCode::CREATED,
        Json(AlertTargetView {
            name: target.name,
            webhook: target.origin,
            events: target.events,
            signed: target.signed,
            created_at_ms: target.created_at_ms,
            last_attempt_ms: None,
            last_success_ms: None,
            last_error: None,
            delivered: 0,
            pending: 0,
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/alert-targets/{name}/test", params(("name" = String, Path)),
    responses((status = 202, body = QueuedAlert), (status = 403, body = pgfleet_core::api::ErrorBody), (status = 404, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn test(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<QueuedAlert>), ApiError> {
    admin_only(role)?;
    let alert = Alert::new("test", format!("test alert to target {name}"));
    let queued = store::enqueue(&state, &alert, Some(&name)).await?;
    if queued == 0 {
        return Err(ApiError::not_found("alert target", &name));
    }
    state.alerts.wakeup.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(QueuedAlert {
            queued: queued as u64,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/alert-targets/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = pgfleet_core::api::ErrorBody), (status = 404, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(role)?;
    let _guard = state.alerts.lock.lock().await;
    let store_ref = state.store.as_ref();
    let mut targets = store::targets(store_ref).await?;
    let before = targets.len();
    targets.retain(|t| t.name != name);
    if targets.len() == before {
        return Err(ApiError::not_found("alert target", &name));
    }
    store::put_targets(store_ref, &targets).await?;
    let mut outbox = store::outbox(store_ref).await?;
    outbox.retain(|p| p.target != name);
    store::put_outbox(store_ref, &outbox).await?;
    store_ref.put_meta(&store::secret_key(&name), "").await?;
    tracing::info!(%name, "alert target deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::validate_webhook;

    #[test]
    fn webhooks_are_https_or_loopback_http() {
        assert_eq!(
            validate_webhook("https://hooks.example.com/services/T0/B0/secret").unwrap(),
            "https://hooks.example.com"
        );
        assert_eq!(
            validate_webhook("http://127.0.0.1:9999/hook").unwrap(),
            "http://127.0.0.1:9999"
        );
        assert!(validate_webhook("http://[::1]:80/x").is_ok());
        assert!(validate_webhook("http://localhost:8080/x").is_ok());
        for refused in [
            "http://hooks.example.com/x",
            "http://10.0.0.1/x",
            "http://169.254.169.254/latest/meta-data",
            "ftp://example.com/x",
            "file:///etc/passwd",
            "https://user:pw@hooks.example.com/x",
            "not a url",
        ] {
            assert!(validate_webhook(refused).is_err(), "{refused} accepted");
        }
    }
}
