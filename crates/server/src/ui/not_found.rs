//! Unknown addresses: a page for browsers, the API's JSON error under `/api`.

use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::render::{html, Layout};
use super::session::Session;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    layout: Layout,
    path: String,
}

/// The router's fallback. API clients get the API's JSON error; a signed-in
/// browser gets a page with the way back; others are sent to sign in first.
pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("no API endpoint at {path}"),
        }
        .into_response();
    }
    let (mut parts, _) = request.into_parts();
    let session = match Session::from_request_parts(&mut parts, &state).await {
        Ok(session) => session,
        Err(sign_in) => return sign_in,
    };
    let page = NotFoundPage {
        layout: Layout::new(&session, ""),
        path,
    };
    html(StatusCode::NOT_FOUND, &page)
}
