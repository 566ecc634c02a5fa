//! The web UI, served at `/` on the API's port.

use axum::Router;

use crate::state::AppState;

pub fn router(_state: AppState) -> Router<AppState> {
    Router::new()
}
