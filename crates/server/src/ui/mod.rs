//! The web UI, served at `/` on the API's port.
//!
//! Server-rendered HTML (askama templates under `crates/server/templates/`,
//! checked at compile time) with htmx 2 vendored into the binary. Every page
//! works without JavaScript: forms POST and redirect (POST/redirect/GET), and
//! with JavaScript the parts that change (`data-live` regions) poll their
//! page, which then answers with only that fragment. Handlers call the API
//! handlers in `crate::api` directly, so the UI and the API share validation
//! and messages. Browsers sign in with the admin token and then hold a
//! session cookie (`session`); every form carries the session's CSRF token,
//! and forms posted from other origins are refused (`csrf`).

mod assets;
mod backups;
mod charts;
mod cluster;
mod confirm;
mod csrf;
mod database;
mod databases;
mod events;
mod fleet;
mod health;
mod login;
mod node_actions;
mod not_found;
#[cfg(test)]
mod properties;
mod render;
mod session;
mod tasks;
#[cfg(test)]
mod tests;
mod tokens;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(databases::home))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/assets/{name}", get(assets::serve))
        .route("/databases", get(databases::list).post(databases::create))
        .route("/databases/{db}", get(database::summary))
        .route("/databases/{db}/uri", post(database::reveal_uri))
        .route(
            "/databases/{db}/delete",
            get(database::confirm_delete).post(database::delete),
        )
        .route("/databases/{db}/cluster", get(cluster::show))
        .route("/databases/{db}/tasks", get(database::tasks))
        .route("/databases/{db}/events", get(database::events))
        .route(
            "/databases/{db}/backups",
            get(backups::show).post(backups::create),
        )
        .route(
            "/databases/{db}/replicas/new",
            get(node_actions::new_replica),
        )
        .route(
            "/databases/{db}/replicas",
            post(node_actions::create_replica),
        )
        .route(
            "/databases/{db}/replicas/{node}/delete",
            get(node_actions::confirm_delete_replica).post(node_actions::delete_replica),
        )
        .route(
            "/databases/{db}/nodes/{node}/promote",
            get(node_actions::confirm_promote).post(node_actions::promote),
        )
        .route(
            "/databases/{db}/nodes/{node}/maintenance",
            post(node_actions::maintenance),
        )
        .route("/hosts", get(fleet::hosts))
        .route("/hosts/join-token", post(fleet::create_join_token))
        .route("/tasks", get(tasks::list))
        .route("/ha", get(fleet::ha))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/tokens/{name}/revoke",
            get(tokens::confirm_revoke).post(tokens::revoke),
        )
        .fallback(not_found::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state,
            csrf::same_origin_forms,
        ))
}
