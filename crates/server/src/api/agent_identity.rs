//! How an agent gets its identity: it spends a one-time join token for a
//! host credential and, with a certificate signing request for a key it
//! made itself, a certificate from the host CA; it renews that certificate
//! before it expires. The CA signs only the request's key, with our names
//! (host name and address) — never the names in the request. A host's
//! address is checked ([`check_host_address`]: never the control plane's,
//! never unspecified, broadcast or multicast) and reserved at join.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::host_identity::CertRecord;
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
    /// The host's failure domain, bound at join; without it, the first
    /// heartbeat's is bound.
    #[serde(default)]
    pub failure_domain: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinResponse {
    /// The host's credential for every later agent call; shown once.
    pub credential: String,
    /// The host's client (and agent endpoint) certificate, when a signing
    /// request was sent.
    pub certificate_pem: Option<String>,
    /// The fleet CA, PEM: the only CA to trust for the control plane.
    pub ca_pem: String,
    /// The host CA, PEM: it signs host certificates (agent endpoints).
    #[serde(default)]
    pub host_ca_pem: String,
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
    /// The host CA that signed `certificate_pem`.
    #[serde(default)]
    pub host_ca_pem: String,
    pub expires_at_ms: i64,
}

/// Checks that `address` may be a host's (pure): an IPv4 address that is
/// not unspecified, broadcast or multicast, and not the control plane's
/// (`api` or `dns` listen address; 127.0.0.1 as well when one of them
/// listens on every address).
pub fn check_host_address(
    address: &str,
    api: std::net::SocketAddr,
    dns: std::net::SocketAddr,
) -> Result<std::net::Ipv4Addr, ApiError> {
    let Ok(ip) = address.parse::<std::net::Ipv4Addr>() else {
        return Err(ApiError::bad_request(format!(
            "host address {address:?} is not an IPv4 address"
        )));
    };
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(ApiError::bad_request(format!(
            "host address {address} is not a host's address (unspecified, broadcast or multicast)"
        )));
    }
    for (what, listen) in [("API", api), ("DNS", dns)] {
        let own = listen.ip() == std::net::IpAddr::V4(ip)
            || (listen.ip().is_unspecified() && ip == std::net::Ipv4Addr::LOCALHOST);
        if own {
            return Err(ApiError::conflict(format!(
                "host address {address} is the control plane's ({what} listens on {listen})"
            )));
        }
    }
    Ok(ip)
}

/// Signs `csr_pem` for `host` at `address` with the host CA. Refuses an
/// address that is not a host's or that another host has, and (for a host
/// whose address is bound) any other address. The caller records the
/// certificate.
async fn sign(
    state: &AppState,
    host: &str,
    address: &str,
    csr_pem: &str,
) -> Result<(String, CertRecord), ApiError> {
    check_host_address(address, state.config.api_addr, state.config.dns_addr)?;
    if let Some(bound) = state.identities.binding(host).and_then(|b| b.address) {
        if bound != address {
            return Err(ApiError::conflict(format!(
                "host {host:?} joined with address {bound}, not {address}: \
                 remove it and join it again to change its address"
            )));
        }
    }
    let hosts = state.store.list_hosts().await?;
    let stored_owner = hosts
        .iter()
        .find(|h| h.address == address && h.name != host)
        .map(|h| h.name.clone());
    if let Some(owner) = state
        .identities
        .address_owner(address, host)
        .or(stored_owner)
    {
        return Err(ApiError::conflict(format!(
            "address {address} belongs to host {owner:?}"
        )));
    }
    let cert = state
        .host_ca
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
    let binding = crate::host_identity::Binding {
        address: request.address.clone(),
        failure_domain: request.failure_domain.clone(),
        joined_at_ms: pgfleet_core::time::now_ms(),
    };
    let stored_hosts = state.store.list_hosts().await?;
    let credential = state
        .identities
        .redeem(
            state.store.as_ref(),
            &request.host,
            &request.join_token,
            binding,
            &stored_hosts,
        )
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
        host_ca_pem: state.host_ca.cert_pem.clone(),
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
        let accepted = state
            .identities
            .accept_presented(state.store.as_ref(), &host, presented.as_deref())
            .await?;
        if !accepted {
            return Err(ApiError::unauthorized_because(format!(
                "renewing the certificate of host {host:?} needs its current certificate; \
                 if it was lost, remove the host and join it again"
            )));
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
        host_ca_pem: state.host_ca.cert_pem.clone(),
        expires_at_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::check_host_address;

    #[test]
    fn a_host_address_is_never_the_control_planes_nor_special() {
        let api = "127.0.5.1:7070".parse().unwrap();
        let dns = "127.0.5.9:8053".parse().unwrap();
        assert!(check_host_address("127.0.5.2", api, dns).is_ok());
        for refused in [
            "127.0.5.1",
            "127.0.5.9",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "host-1",
            "::1",
        ] {
            assert!(check_host_address(refused, api, dns).is_err(), "{refused}");
        }
        let everywhere = "0.0.0.0:7070".parse().unwrap();
        assert!(check_host_address("127.0.0.1", everywhere, dns).is_err());
        assert!(check_host_address("127.0.0.1", api, dns).is_ok());
    }
}
