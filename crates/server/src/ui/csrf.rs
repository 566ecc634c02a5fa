//! Cross-site request forgery defences of the web UI, besides each
//! session's own CSRF token (`session`):
//!
//! - The sign-in form's CSRF value is one this control plane issued:
//!   `ISSUED_MS.NONCE.MAC`, the MAC an HMAC-SHA256 under a secret made at
//!   start, valid for an hour. A `pgfleet_login` cookie an attacker chose
//!   (with the same value in the form) no longer signs a browser in.
//! - Every form post (`POST` and other changes) whose `Origin` is not the
//!   control plane's own, or that the browser marks as cross-site with
//!   `Sec-Fetch-Site`, is refused with 403 before any handler runs.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// How long a sign-in form may be posted after it was shown.
pub const LOGIN_FORM_LIFETIME: Duration = Duration::from_secs(3600);

fn secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| Sha256::digest(pgfleet_core::secrets::random_token(64).as_bytes()).into())
}

fn hmac(key: &[u8; 32], message: &[u8]) -> String {
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (index, byte) in key.iter().enumerate() {
        inner_pad[index] ^= byte;
        outer_pad[index] ^= byte;
    }
    let inner = Sha256::new()
        .chain_update(inner_pad)
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(outer_pad)
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

fn login_mac(issued_ms: &str, nonce: &str) -> String {
    hmac(
        secret(),
        format!("pgfleet login|{issued_ms}|{nonce}").as_bytes(),
    )
}

/// A new CSRF value for the sign-in form.
pub fn issue_login_value() -> String {
    let issued_ms = pgfleet_core::time::now_ms().to_string();
    let nonce = pgfleet_core::secrets::random_token(24);
    let mac = login_mac(&issued_ms, &nonce);
    format!("{issued_ms}.{nonce}.{mac}")
}

/// Whether `value` is a sign-in CSRF value this control plane issued less
/// than [`LOGIN_FORM_LIFETIME`] ago.
pub fn is_issued_login_value(value: &str) -> bool {
    let mut parts = value.split('.');
    let (Some(issued_ms), Some(nonce), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if !super::session::same_secret(mac, &login_mac(issued_ms, nonce)) {
        return false;
    }
    let Ok(issued) = issued_ms.parse::<i64>() else {
        return false;
    };
    let age_ms = pgfleet_core::time::now_ms().saturating_sub(issued);
    let lifetime_ms = i64::try_from(LOGIN_FORM_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    (0..lifetime_ms).contains(&age_ms)
}

/// Why a change request comes from another site, if it does.
fn foreign(state: &AppState, request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site == "cross-site" || site == "same-site" {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let scheme = if state.config.tls { "https" } else { "http" };
    if !host.is_empty() && origin == format!("{scheme}://{host}") {
        return None;
    }
    Some(format!("Origin: {origin}"))
}

/// Middleware of the UI: refuses form posts from other origins.
pub async fn same_origin_forms(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes {
        if let Some(reason) = foreign(&state, &request) {
            tracing::warn!(path = %request.uri().path(), %reason, "ui form from another origin refused");
            return (
                StatusCode::FORBIDDEN,
                "this form was posted from another site and was refused",
            )
                .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_issued_fresh_login_values_are_accepted() {
        let value = issue_login_value();
        assert!(is_issued_login_value(&value));
        assert!(!is_issued_login_value("attacker-chosen"));
        let (issued, rest) = value.split_once('.').unwrap();
        let tampered = format!("{}.{rest}", issued.parse::<i64>().unwrap() + 1);
        assert!(!is_issued_login_value(&tampered), "the MAC covers the time");
        let old_ms = pgfleet_core::time::now_ms() - 2 * 3600 * 1000;
        let nonce = "n";
        let old = format!("{old_ms}.{nonce}.{}", login_mac(&old_ms.to_string(), nonce));
        assert!(!is_issued_login_value(&old), "expired");
    }
}
