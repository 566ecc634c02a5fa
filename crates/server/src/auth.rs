//! API tokens and roles. Tokens are stored as SHA-256 hashes (never in
//! clear); the first admin token is created at first start and written to
//! `DATA_DIR/admin.token` (mode 0600). Viewers may read, not change; a
//! `metrics` token may only scrape `/metrics` (`require_scrape`). Agents
//! authenticate with host credentials (`host_identity`). Wrong tokens are
//! logged (source and route, never the value) and lock their source out
//! after a few (`attempts`).

pub mod attempts;

use std::path::Path;
use std::sync::RwLock;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pgfleet_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Viewer,
    /// Scrape-only: `GET /metrics`, nothing else (no API route, no UI sign-in).
    Metrics,
}

impl Role {
    /// Whether a token of this role may use the API and the UI at all.
    pub fn is_person(self) -> bool {
        matches!(self, Role::Admin | Role::Viewer)
    }
}

/// A token as stored: its hash, never the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    name: String,
    role: Role,
    sha256: String,
    created_at_ms: i64,
}

/// A token as listed by the API (no secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
}

pub struct Tokens {
    tokens: RwLock<Vec<StoredToken>>,
    /// Serialises change + store write (the stored copy follows the last change).
    writer: tokio::sync::Mutex<()>,
    /// The first admin token when this process knows it in clear (created now,
    /// or read back from `admin.token`); empty otherwise.
    pub admin: String,
}

const META_KEY: &str = "api_tokens";

fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

use pgfleet_core::secrets::same_secret as same;

pub fn write_secret(path: &Path, value: &str) -> std::io::Result<()> {
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
        let mut tokens: Vec<StoredToken> = match store.get_meta(META_KEY).await? {
            Some(text) => serde_json::from_str(&text)?,
            None => Vec::new(),
        };
        let mut admin = String::new();
        if tokens.is_empty() {
            admin = pgfleet_core::secrets::random_token(40);
            tokens.push(StoredToken {
                name: "admin".into(),
                role: Role::Admin,
                sha256: hash(&admin),
                created_at_ms: pgfleet_core::time::now_ms(),
            });
            store
                .put_meta(META_KEY, &serde_json::to_string(&tokens)?)
                .await?;
            write_secret(&data_dir.join("admin.token"), &admin)?;
        } else if let Ok(text) = std::fs::read_to_string(data_dir.join("admin.token")) {
            let candidate = text.trim();
            if tokens
                .iter()
                .any(|t| t.role == Role::Admin && same(&t.sha256, &hash(candidate)))
            {
                admin = candidate.to_string();
            }
        }
        Ok(Tokens {
            tokens: RwLock::new(tokens),
            writer: tokio::sync::Mutex::new(()),
            admin,
        })
    }

    /// The role of `token`, if it is a valid token for the API and the UI
    /// (admin or viewer). A `metrics` token is not: see [`Tokens::role_of`].
    pub fn verify(&self, token: &str) -> Option<Role> {
        self.role_of(token).filter(|role| role.is_person())
    }

    /// The role of `token` whatever it is, `metrics` included.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let digest = hash(token);
        let tokens = self.tokens.read().expect("tokens lock");
        tokens
            .iter()
            .find(|t| same(&t.sha256, &digest))
            .map(|t| t.role)
    }

    pub fn list(&self) -> Vec<TokenInfo> {
        let tokens = self.tokens.read().expect("tokens lock");
        tokens
            .iter()
            .map(|t| TokenInfo {
                name: t.name.clone(),
                role: t.role,
                created_at_ms: t.created_at_ms,
            })
            .collect()
    }

    /// Creates a token named `name`; returns it in clear (the only time).
    pub async fn create(
        &self,
        store: &dyn Store,
        name: &str,
        role: Role,
    ) -> Result<String, ApiError> {
        let _writer = self.writer.lock().await;
        let token = pgfleet_core::secrets::random_token(40);
        let snapshot = {
            let mut tokens = self.tokens.write().expect("tokens lock");
            if tokens.iter().any(|t| t.name == name) {
                return Err(ApiError::conflict(format!("token {name:?} already exists")));
            }
            tokens.push(StoredToken {
                name: name.into(),
                role,
                sha256: hash(&token),
                created_at_ms: pgfleet_core::time::now_ms(),
            });
            serde_json::to_string(&*tokens).map_err(ApiError::internal)?
        };
        store.put_meta(META_KEY, &snapshot).await?;
        Ok(token)
    }

    /// Revokes `name`; the last admin token cannot be revoked.
    pub async fn revoke(&self, store: &dyn Store, name: &str) -> Result<(), ApiError> {
        let _writer = self.writer.lock().await;
        let snapshot = {
            let mut tokens = self.tokens.write().expect("tokens lock");
            let Some(index) = tokens.iter().position(|t| t.name == name) else {
                return Err(ApiError::not_found("token", name));
            };
            let admins = tokens.iter().filter(|t| t.role == Role::Admin).count();
            if tokens[index].role == Role::Admin && admins == 1 {
                return Err(ApiError::conflict(
                    "the last admin token cannot be revoked".to_string(),
                ));
            }
            tokens.remove(index);
            serde_json::to_string(&*tokens).map_err(ApiError::internal)?
        };
        store.put_meta(META_KEY, &snapshot).await?;
        Ok(())
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

/// Every API route but the health check: a valid token; changes need an admin.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let source = attempts::SourceAddress::of(request.extensions()).0;
    let now = std::time::Instant::now();
    if let Some(locked_for) = state.attempts.locked_for(source, now) {
        return attempts::too_many_attempts(locked_for);
    }
    let presented = bearer(&request);
    let Some(role) = presented.and_then(|t| state.tokens.role_of(t)) else {
        if presented.is_some() {
            let lockout = state.attempts.failed(source, now);
            tracing::warn!(
                %source,
                route = %request.uri().path(),
                locked_out_secs = lockout.map(|d| d.as_secs()),
                "api token refused"
            );
        }
        return ApiError::unauthorized().into_response();
    };
    if !role.is_person() {
        return ApiError::forbidden("metrics tokens can only scrape /metrics").into_response();
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if role == Role::Viewer && !reads {
        return ApiError::forbidden("viewer tokens can only read").into_response();
    }
    let reveals_secret = request.uri().path().ends_with("/uri")
        || request
            .uri()
            .query()
            .is_some_and(|q| q.contains("show_password=true"));
    if role == Role::Viewer && reveals_secret {
        return ApiError::forbidden("passwords are shown to admin tokens only").into_response();
    }
    request.extensions_mut().insert(role);
    next.run(request).await
}

/// `GET /metrics`: any valid token (admin, viewer or metrics), with the
/// same lockout of sources that send wrong tokens as the API.
pub async fn require_scrape(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let source = attempts::SourceAddress::of(request.extensions()).0;
    let now = std::time::Instant::now();
    if let Some(locked_for) = state.attempts.locked_for(source, now) {
        return attempts::too_many_attempts(locked_for);
    }
    let presented = bearer(&request);
    if presented.and_then(|t| state.tokens.role_of(t)).is_none() {
        if presented.is_some() {
            let lockout = state.attempts.failed(source, now);
            tracing::warn!(%source, route = "/metrics", locked_out_secs = lockout.map(|d| d.as_secs()), "metrics token refused");
        }
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

/// The host an agent request speaks for (from its credential).
#[derive(Debug, Clone)]
pub struct AgentHost(pub String);

/// Agent routes: a host credential (see `host_identity`) and, when the API
/// is served over TLS, the host's current client certificate.
pub async fn require_agent(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(host) = bearer(&request).and_then(|t| state.identities.verify(t)) else {
        return ApiError::unauthorized().into_response();
    };
    if state.config.tls {
        let presented = request
            .extensions()
            .get::<pgfleet_tls::PeerCertificate>()
            .map(|p| p.fingerprint.clone());
        if state.identities.certificate(&host).is_none() {
            return ApiError::unauthorized_because(format!(
                "host {host:?} has no client certificate yet: restart its agent to obtain one"
            ))
            .into_response();
        }
        match state
            .identities
            .accept_presented(state.store.as_ref(), &host, presented.as_deref())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return ApiError::unauthorized_because(format!(
                    "host {host:?} must present its current client certificate"
                ))
                .into_response()
            }
            Err(error) => return error.into_response(),
        }
    }
    request.extensions_mut().insert(AgentHost(host));
    next.run(request).await
}

/// The certificate route: a host credential is enough for a host that has
/// no certificate yet; a renewal also needs the current certificate (the
/// handler checks, see `api::agents::certificate`).
pub async fn require_agent_credential(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(host) = bearer(&request).and_then(|t| state.identities.verify(t)) else {
        return ApiError::unauthorized().into_response();
    };
    request.extensions_mut().insert(AgentHost(host));
    next.run(request).await
}

#[cfg(test)]
mod properties;
