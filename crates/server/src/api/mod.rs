//! The REST API under `/api/v1`. Handlers validate input, record intent in
//! the store and queue tasks; they never wait for agents.

pub mod agent_identity;
pub mod agents;
pub mod databases;
pub mod dns;
pub mod headers;
pub mod hosts;
pub mod tasks;
pub mod tokens;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use crate::state::AppState;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/databases", get(databases::list).post(databases::create))
        .route(
            "/databases/{db}",
            get(databases::show).delete(databases::delete),
        )
        .route("/databases/{db}/uri", get(databases::uri))
        .route("/databases/{db}/events", get(databases::events))
        .route("/databases/{db}/history", get(crate::history::api::show))
        .route("/databases/{db}/replicas", post(databases::create_replica))
        .route(
            "/databases/{db}/replicas/{node}",
            delete(databases::delete_replica),
        )
        .route(
            "/databases/{db}/nodes/{node}/promote",
            post(databases::promote),
        )
        .route(
            "/databases/{db}/nodes/{node}/maintenance",
            post(databases::set_maintenance),
        )
        .route(
            "/backup-locations",
            get(crate::backup::api::list_locations).post(crate::backup::api::create_location),
        )
        .route(
            "/backup-locations/{name}",
            get(crate::backup::api::show_location).delete(crate::backup::api::delete_location),
        )
        .route(
            "/databases/{db}/backup-policy",
            axum::routing::put(crate::backup::api::set_policy),
        )
        .route(
            "/databases/{db}/backups",
            get(crate::backup::api::list_backups).post(crate::backup::api::create_backup),
        )
        .route("/dns", get(dns::show))
        .route("/hosts", get(hosts::list))
        .route("/hosts/join-tokens", post(hosts::create_join_token))
        .route("/hosts/{name}", delete(hosts::remove))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{name}", delete(tokens::revoke))
        .route(
            "/alert-targets",
            get(crate::alerts::api::list).post(crate::alerts::api::create),
        )
        .route("/alert-targets/{name}", delete(crate::alerts::api::delete))
        .route("/alert-targets/{name}/test", post(crate::alerts::api::test))
        .route_layer(from_fn_with_state(
            state.clone(),
            crate::auth::require_token,
        ));
    let agent = Router::new()
        .route("/agents/heartbeat", post(agents::heartbeat))
        .route("/agents/primary-changed", post(agents::primary_changed))
        .route_layer(from_fn_with_state(
            state.clone(),
            crate::auth::require_agent,
        ));
    let agent_credential = Router::new()
        .route("/agents/certificate", post(agent_identity::certificate))
        .route_layer(from_fn_with_state(
            state.clone(),
            crate::auth::require_agent_credential,
        ));
    let open = Router::new()
        .route("/health", get(health))
        .route("/agents/join", post(agent_identity::join))
        .route("/openapi.json", get(openapi_json));
    let metrics = Router::new()
        .route("/metrics", get(crate::metrics::scrape))
        .route_layer(from_fn_with_state(
            state.clone(),
            crate::auth::require_scrape,
        ));
    Router::new()
        .nest(
            "/api/v1",
            admin.merge(agent).merge(agent_credential).merge(open),
        )
        .merge(metrics)
        .merge(crate::ui::router(state.clone()))
        .layer(from_fn_with_state(
            state.clone(),
            crate::metrics::http::time_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), headers::security_headers))
        .with_state(state)
}

#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, description = "the control plane is up")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

pub async fn openapi_json() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

/// `Json` whose rejections (bad JSON, wrong fields, wrong content type) are
/// 400 answers in the API's error format instead of axum's plain text.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = crate::error::ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        // Bodies are JSON objects (as the API document says): serde's derive
        // would also read a struct from an array of its fields, so `[]`
        // was a whole request for a type whose fields all have defaults.
        match Json::<serde_json::Value>::from_request(request, state).await {
            Ok(Json(value)) if !value.is_object() => Err(crate::error::ApiError::bad_request(
                "invalid request body: expected a JSON object",
            )),
            Ok(Json(value)) => serde_json::from_value(value).map(ApiJson).map_err(|error| {
                crate::error::ApiError::bad_request(format!("invalid request body: {error}"))
            }),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(crate::error::ApiError {
                    status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    code: "too_large",
                    message: format!("request body larger than {MAX_BODY_BYTES} bytes"),
                })
            }
            Err(rejection) => Err(crate::error::ApiError::bad_request(format!(
                "invalid request body: {}",
                rejection.body_text()
            ))),
        }
    }
}
