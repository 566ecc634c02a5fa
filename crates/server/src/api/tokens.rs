//! `/api/v1/tokens`: API tokens (admin or viewer). A new token is shown once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Role, TokenInfo};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    pub role: Role,
    /// The token itself; it is not stored and cannot be shown again.
    pub token: String,
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = [TokenInfo])), security(("token" = [])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<TokenInfo>> {
    Json(state.tokens.list())
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    crate::api::ApiJson(request): crate::api::ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    pgfleet_core::names::validate_name(&request.name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let token = state
        .tokens
        .create(state.store.as_ref(), &request.name, request.role)
        .await?;
    tracing::info!(name = %request.name, role = ?request.role, "api token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: request.name,
            role: request.role,
            token,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.tokens.revoke(state.store.as_ref(), &name).await?;
    tracing::info!(%name, "api token revoked");
    Ok(StatusCode::NO_CONTENT)
}
