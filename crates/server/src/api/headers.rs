//! Security headers on every answer of the control plane (API and web UI):
//! no framing (`X-Frame-Options`, CSP `frame-ancestors`), no MIME sniffing,
//! no referrer to other sites (`same-origin`: with `no-referrer` browsers
//! post same-origin forms with `Origin: null`, which the UI's origin check
//! rightly refuses), HSTS when served over TLS; and `Cache-Control: no-store` on
//! every API answer, since many carry secrets (database URIs, new tokens,
//! join tokens, agents' credentials and intent). The UI sets its own
//! caching (pages `no-store`, assets public).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

pub async fn security_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if state.config.tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
