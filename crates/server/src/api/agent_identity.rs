//! How an agent gets its identity: it spends a one-time join token for a
//! host credential and, with a certificate signing request for a key it
//! made itself, a client certificate from the fleet CA; it renews that
//! certificate before it expires. The CA signs only the request's key, with
//! our names (host name and address) — never the names in the request.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::host_identity::{Admission, CertRecord};
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub host: String,
    /// A one-time join token (`pgfleet host join-token`).
    pub join_token: String,
    /// The host's IPv4 address (named in its certificate); with `csr_pem`.
    #[serde(default)]
    pub address: Option<String>,
    /// A PEM certificate signing request for the host's own key.
    #[serde(default)]
    pub csr_pem: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinResponse {
    /// The host's credential for every later agent call; shown once.
    pub credential: String,
    /// The host's client (and agent endpoint) certificate, when a signing
    /// request was sent.
    pub certificate_pem: Option<String>,
    /// The fleet CA, PEM.
    pub ca_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// The host's IPv4 address (named in its certificate).
    pub address: String,
    /// A PEM certificate signing request for the host's own key.
    pub csr_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertificateResponse {
    pub certificate_pem: String,
    pub ca_pem: String,
    pub expires_at_ms: i64,
}

/// Signs `csr_pem` for `host` at `address`. Refuses an address another
/// host has. The caller records the certificate.
async fn sign(
    state: &AppState,
    host: &str,
    address: &str,
    csr_pem: &str,
) -> Result<(String, CertRecord), ApiError> {
    if address.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(ApiError::bad_request(format!(
            "host address {address:?} is not an IPv4 address"
        )));
    }
    let hosts = state.store.list_hosts().await?;
    if let Some(other) = hosts
        .iter()
        .find(|h| h.address == address && h.name != host)
    {
        return Err(ApiError::conflict(format!(
            "address {address} belongs to host {:?}",
            other.name
        )));
    }
    let cert = state
        .ca
        .sign_host(host, address, csr_pem, state.config.host_cert_validity_secs)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((
        cert.cert_pem,
        CertRecord {
            fingerprint: cert.fingerprint,
            address: address.to_string(),
            issued_at_ms: cert.issued_at_ms,
            expires_at_ms: cert.expires_at_ms,
        },
    ))
}

/// An agent joins: spends a one-time join token, gets a host credential and
/// (with a signing request) its certificate.
#[utoipa::path(post, path = "/api/v1/agents/join", request_body = JoinRequest,
    responses((status = 200, body = JoinResponse), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 401, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    crate::api::ApiJson(request): crate::api::ApiJson<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    pgfleet_core::names::validate_name(&request.host)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Check the request before the token is spent, so a bad request does
    // not cost the user their token.
    let signed = match (&request.address, &request.csr_pem) {
        (Some(address), Some(csr)) => Some(sign(&state, &request.host, address, csr).await?),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "address and csr_pem go together".to_string(),
            ))
        }
    };
    let credential = state
        .identities
        .redeem(state.store.as_ref(), &request.host, &request.join_token)
        .await?;
    let certificate_pem = match signed {
        Some((cert_pem, record)) => {
            state
                .identities
                .set_certificate(state.store.as_ref(), &request.host, record)
                .await?;
            Some(cert_pem)
        }
        None => None,
    };
    tracing::info!(host = %request.host, "host joined");
    Ok(Json(JoinResponse {
        credential,
        certificate_pem,
        ca_pem: state.ca.cert_pem.clone(),
    }))
}

/// A host gets a new certificate: its first (a host that joined before
/// certificates existed), or a renewal, which over TLS must be asked for
/// with the current certificate. The previous certificate stops working
/// once the new one is first used.
#[utoipa::path(post, path = "/api/v1/agents/certificate", request_body = CertificateRequest,
    responses((status = 200, body = CertificateResponse), (status = 400, body = pgfleet_core::api::ErrorBody), (status = 401, body = pgfleet_core::api::ErrorBody), (status = 409, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn certificate(
    State(state): State<AppState>,
    axum::Extension(crate::auth::AgentHost(host)): axum::Extension<crate::auth::AgentHost>,
    peer: Option<axum::Extension<pgfleet_tls::PeerCertificate>>,
    crate::api::ApiJson(request): crate::api::ApiJson<CertificateRequest>,
) -> Result<Json<CertificateResponse>, ApiError> {
    // A host with a certificate renews with it (or with the renewed one it
    // has not used yet: its first use makes it current).
    let renewing = state.identities.certificate(&host).is_some();
    if state.config.tls && renewing {
        let presented = peer.map(|p| p.0.fingerprint);
        let admission = presented
            .as_deref()
            .map(|given| state.identities.admits(&host, given));
        match (admission, presented) {
            (Some(Admission::Current), _) => {}
            (Some(Admission::Renewed), Some(given)) => {
                state
                    .identities
                    .confirm_renewal(state.store.as_ref(), &host, &given)
                    .await?;
            }
            _ => {
                return Err(ApiError::unauthorized_because(format!(
                    "renewing the certificate of host {host:?} needs its current certificate; \
                     if it was lost, remove the host and join it again"
                )))
            }
        }
    }
    let (certificate_pem, record) = sign(&state, &host, &request.address, &request.csr_pem).await?;
    let expires_at_ms = record.expires_at_ms;
    // Over TLS a renewal is two-phase: the current certificate stays valid
    // until the new one is first presented, so an answer lost on the way
    // does not lock the host out.
    if state.config.tls && renewing {
        state
            .identities
            .offer_renewal(state.store.as_ref(), &host, record)
            .await?;
    } else {
        state
            .identities
            .set_certificate(state.store.as_ref(), &host, record)
            .await?;
    }
    tracing::info!(host = %host, "host certificate issued");
    Ok(Json(CertificateResponse {
        certificate_pem,
        ca_pem: state.ca.cert_pem.clone(),
        expires_at_ms,
    }))
}
