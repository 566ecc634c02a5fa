//! API tokens. The admin token is created at first start and written to
//! `DATA_DIR/admin.token` (mode 0600); agents authenticate with the join token
//! (`DATA_DIR/join.token`).

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pgfleet_store::Store;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Clone)]
pub struct Tokens {
    pub admin: String,
    pub join: String,
}

fn write_secret(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")
}

impl Tokens {
    pub async fn load_or_create(store: &dyn Store, data_dir: &Path) -> anyhow::Result<Tokens> {
        let admin = match store.get_meta("admin_token").await? {
            Some(token) => token,
            None => {
                let token = pgfleet_core::secrets::random_token(40);
                store.put_meta("admin_token", &token).await?;
                token
            }
        };
        let join = match store.get_meta("join_token").await? {
            Some(token) => token,
            None => {
                let token = pgfleet_core::secrets::random_token(40);
                store.put_meta("join_token", &token).await?;
                token
            }
        };
        write_secret(&data_dir.join("admin.token"), &admin)?;
        write_secret(&data_dir.join("join.token"), &join)?;
        Ok(Tokens { admin, join })
    }
}

fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn same(a: &str, b: &str) -> bool {
    // Constant-time comparison of equal-length tokens.
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(&request) {
        Some(token) if same(token, &state.tokens.admin) => next.run(request).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

pub async fn require_agent(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(&request) {
        Some(token) if same(token, &state.tokens.join) || same(token, &state.tokens.admin) => {
            next.run(request).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
}
