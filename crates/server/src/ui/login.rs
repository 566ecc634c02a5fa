//! Sign-in with an API token (admin, or viewer for read-only use), and
//! sign-out.
//!
//! The sign-in form has no session to hold a CSRF token yet, so it uses a
//! double-submit cookie: a value both in a `SameSite=Strict` cookie and in
//! the form, which this control plane must have issued (`csrf`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::render::html;
use super::session::{self, SignedIn, LOGIN_COOKIE};
use crate::auth::attempts::{self, SourceAddress};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    error: Option<String>,
    /// Why the browser was signed out, shown above the form.
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
    /// Set after the session's own token was revoked.
    #[serde(default)]
    revoked: Option<String>,
}

/// Only local paths are followed after sign-in (no open redirect).
pub(super) fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if local && next != "/login" {
        next
    } else {
        "/databases"
    }
}

fn login_page(state: &AppState, status: StatusCode, next: &str, error: Option<String>) -> Response {
    login_page_with(state, status, next, error, None)
}

fn login_page_with(
    state: &AppState,
    status: StatusCode,
    next: &str,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let csrf = super::csrf::issue_login_value();
    let page = LoginPage {
        csrf: csrf.clone(),
        next: safe_next(next).to_string(),
        error,
        notice,
    };
    session::with_cookie(
        html(status, &page),
        session::cookie(state, LOGIN_COOKIE, &csrf, 3600),
    )
}

pub async fn show(State(state): State<AppState>, Query(query): Query<NextQuery>) -> Response {
    let notice = query.revoked.is_some().then(|| {
        "You revoked the token this session signed in with, so you were signed out. \
         Sign in with another token."
            .to_string()
    });
    login_page_with(&state, StatusCode::OK, &query.next, None, notice)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

pub async fn submit(
    State(state): State<AppState>,
    SourceAddress(source): SourceAddress,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let cookie_value = session::read_cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !super::csrf::is_issued_login_value(&cookie_value)
        || !session::same_secret(&form.csrf, &cookie_value)
    {
        tracing::warn!("ui sign-in refused: the form's CSRF value was not issued here or expired");
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            &form.next,
            Some("The sign-in form expired. Please try again.".into()),
        );
    }
    let now = std::time::Instant::now();
    if let Some(locked_for) = state.attempts.locked_for(source, now) {
        let seconds = attempts::retry_after_secs(locked_for);
        let message =
            format!("Too many failed sign-ins from this address. Try again in {seconds} seconds.");
        let mut page = login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &form.next,
            Some(message),
        );
        page.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
        return page;
    }
    let token = form.token.trim();
    if state
        .tokens
        .role_of(token)
        .is_some_and(|role| !role.is_person())
    {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            &form.next,
            Some(
                "A metrics token can only scrape /metrics: sign in with an admin or viewer token."
                    .into(),
            ),
        );
    }
    let Some(role) = state.tokens.verify(token) else {
        let lockout = (!token.is_empty())
            .then(|| state.attempts.failed(source, now))
            .flatten();
        tracing::warn!(
            %source,
            route = "/login",
            locked_out_secs = lockout.map(|d| d.as_secs()),
            "ui sign-in refused"
        );
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &form.next,
            Some("That is not a valid API token.".into()),
        );
    };
    tracing::info!(?role, "ui sign-in");
    let response = Redirect::to(safe_next(&form.next)).into_response();
    let response = session::with_cookie(response, session::open(&state, token));
    session::with_cookie(response, session::cookie(&state, LOGIN_COOKIE, "", 0))
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn logout(State(state): State<AppState>, SignedIn { session }: SignedIn) -> Response {
    let cleared = session.close(&state);
    session::with_cookie(Redirect::to("/login").into_response(), cleared)
}
