//! `GET /api/v1/dns`: the zone the control plane serves and, with
//! `--dns-update`, the last publish to the external server (admin tokens
//! only: it names the server and the key).

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Role;
use crate::dns_sync::rfc2136::DnsUpdateStatus;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DnsView {
    /// The zone, e.g. `pgfleet.internal`.
    pub zone: String,
    /// The SOA serial the built-in DNS server answers with now.
    pub serial: u64,
    /// Names with A records in the zone.
    pub names: usize,
    /// The RFC 2136 publisher (`--dns-update`); null when not configured.
    pub dns_update: Option<DnsUpdateStatus>,
}

#[utoipa::path(get, path = "/api/v1/dns", responses((status = 200, body = DnsView), (status = 403, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
) -> Result<Json<DnsView>, ApiError> {
    if role != Role::Admin {
        return Err(ApiError::forbidden(
            "the DNS status is shown to admin tokens only",
        ));
    }
    let records = state.zone.snapshot();
    Ok(Json(DnsView {
        zone: state.zone.zone(),
        serial: records.generation,
        names: records.a.len(),
        dns_update: state.dns_publisher.external_status(),
    }))
}
