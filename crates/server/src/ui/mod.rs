//! The web UI, served at `/` on the API's port.
//!
//! Server-rendered HTML (askama templates under `crates/server/templates/`,
//! checked at compile time) with htmx 2 vendored into the binary. Every page
//! works without JavaScript: forms POST and redirect (POST/redirect/GET), and
//! with JavaScript the parts that change (`data-live` regions) poll their
//! page, which then answers with only that fragment. Handlers call the API
//! handlers in `crate::api` directly, so the UI and the API share validation
//! and messages. Browsers sign in with the admin token and then hold a
//! session cookie (`session`); every form carries the session's CSRF token.

mod assets;
mod databases;
mod login;
mod render;
mod session;

use axum::routing::get;
use axum::Router;

use crate::state::AppState;

pub fn router(_state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(databases::home))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", axum::routing::post(login::logout))
        .route("/assets/{name}", get(assets::serve))
        .route("/databases", get(databases::list).post(databases::create))
}
