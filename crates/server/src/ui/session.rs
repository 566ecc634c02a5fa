//! Browser sessions of the web UI.
//!
//! Signing in with an API token creates a session kept in memory (a
//! restarted control plane signs everyone out). The browser holds only a
//! random id in an `HttpOnly`, `SameSite=Strict` cookie. Every request checks
//! the session's token again, so revoking the token ends the session; a
//! viewer token's session may read but not change anything. Every session
//! has its own CSRF token; [`Protected`] checks it (and the admin role) on
//! every form before the handler runs. Sessions also carry a one-shot flash
//! message shown after a redirect.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::auth::Role;
use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "pgfleet_session";
/// Double-submit cookie protecting the sign-in form (there is no session yet).
pub const LOGIN_COOKIE: &str = "pgfleet_login";
/// A session ends this long after sign-in.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// More live sessions than this and the oldest are dropped.
const MAX_SESSIONS: usize = 1000;

/// A message shown once on the next page.
#[derive(Debug, Clone)]
pub struct Flash {
    /// `ok` or `error` (a CSS class too).
    pub tone: &'static str,
    pub message: String,
}

struct SessionData {
    /// The API token the session was opened with, checked on every request:
    /// a revoked token (or another control plane in the same process) ends it.
    token: String,
    csrf: String,
    expires_at: Instant,
    flash: Option<Flash>,
}

fn sessions() -> &'static Mutex<HashMap<String, SessionData>> {
    static SESSIONS: OnceLock<Mutex<HashMap<String, SessionData>>> = OnceLock::new();
    SESSIONS.get_or_init(|| Mutex::new(HashMap::new()))
}

pub use pgfleet_core::secrets::same_secret;

/// Opens a session for a browser that presented a valid API `token`;
/// returns the `Set-Cookie` value.
pub fn open(state: &AppState, token: &str) -> HeaderValue {
    let id = pgfleet_core::secrets::random_token(40);
    let now = Instant::now();
    let mut all = sessions().lock().expect("sessions lock");
    all.retain(|_, s| s.expires_at > now);
    while all.len() >= MAX_SESSIONS {
        let oldest = all
            .iter()
            .min_by_key(|(_, s)| s.expires_at)
            .map(|(id, _)| id.clone());
        let Some(oldest) = oldest else { break };
        all.remove(&oldest);
    }
    all.insert(
        id.clone(),
        SessionData {
            token: token.to_string(),
            csrf: pgfleet_core::secrets::random_token(32),
            expires_at: now + SESSION_LIFETIME,
            flash: None,
        },
    );
    cookie(state, SESSION_COOKIE, &id, SESSION_LIFETIME.as_secs())
}

/// A `Set-Cookie` value, `Secure` when the control plane serves HTTPS;
/// `max_age` 0 deletes the cookie.
pub fn cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.tls { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).expect("cookie values are URL-safe tokens")
}

/// The value of cookie `name` in the request headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((key, value)) = pair.trim().split_once('=') {
                if key == name {
                    return Some(value.to_string());
                }
            }
        }
    }
    None
}

/// A signed-in browser. Extracting it from a request without a valid
/// session answers with a redirect to the sign-in page.
#[derive(Debug, Clone)]
pub struct Session {
    id: String,
    pub csrf: String,
    pub role: Role,
}

impl Session {
    /// Stores a message for the next page this session shows.
    pub fn flash(&self, tone: &'static str, message: impl Into<String>) {
        let mut all = sessions().lock().expect("sessions lock");
        if let Some(data) = all.get_mut(&self.id) {
            data.flash = Some(Flash {
                tone,
                message: message.into(),
            });
        }
    }

    /// The pending flash message, removed.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the session still exists and its token still verifies (it
    /// ends when that token is revoked).
    pub fn still_valid(&self, state: &AppState) -> bool {
        let mut all = sessions().lock().expect("sessions lock");
        let valid = all
            .get(&self.id)
            .is_some_and(|data| state.tokens.verify(&data.token).is_some());
        if !valid {
            all.remove(&self.id);
        }
        valid
    }

    pub fn take_flash(&self) -> Option<Flash> {
        let mut all = sessions().lock().expect("sessions lock");
        all.get_mut(&self.id).and_then(|data| data.flash.take())
    }

    /// Ends the session; returns the `Set-Cookie` value that clears it.
    pub fn close(self, state: &AppState) -> HeaderValue {
        sessions().lock().expect("sessions lock").remove(&self.id);
        cookie(state, SESSION_COOKIE, "", 0)
    }
}

fn lookup(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let id = read_cookie(headers, SESSION_COOKIE)?;
    let mut all = sessions().lock().expect("sessions lock");
    let data = all.get(&id)?;
    let role = state.tokens.verify(&data.token);
    let Some(role) = role.filter(|_| data.expires_at > Instant::now()) else {
        all.remove(&id);
        return None;
    };
    Some(Session {
        csrf: data.csrf.clone(),
        role,
        id,
    })
}

/// Whether htmx sent the request (it then wants a fragment, not a page).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

fn sign_in_required(parts: &Parts) -> Response {
    if is_htmx(&parts.headers) {
        // htmx follows this with a full page load instead of swapping the
        // sign-in page into a fragment.
        return (StatusCode::UNAUTHORIZED, [("hx-redirect", "/login")]).into_response();
    }
    let wanted = parts.uri.path();
    let safe_to_return = parts.method == axum::http::Method::GET
        && wanted.starts_with('/')
        && !wanted.starts_with("//")
        && wanted
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if safe_to_return && wanted != "/" {
        return Redirect::to(&format!("/login?next={wanted}")).into_response();
    }
    Redirect::to("/login").into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        lookup(state, &parts.headers).ok_or_else(|| sign_in_required(parts))
    }
}

fn forbidden(session: &Session, message: &str) -> Response {
    let error = ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message: message.into(),
    };
    super::render::error_page(session, error)
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// Reads a form posted by a signed-in browser and checks its CSRF token
/// (and, when `admin_only`, that the session may change things).
async fn signed_form<T: DeserializeOwned>(
    request: Request,
    state: &AppState,
    admin_only: bool,
) -> Result<(Session, T), Response> {
    let (mut parts, body) = request.into_parts();
    let session = Session::from_request_parts(&mut parts, state).await?;
    let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(IntoResponse::into_response)?;
    let field: CsrfField = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| (StatusCode::BAD_REQUEST, "malformed form").into_response())?;
    if !same_secret(&field.csrf, &session.csrf) {
        let message = "this form has expired: go back, reload the page and try again";
        return Err(forbidden(&session, message));
    }
    if admin_only && !session.is_admin() {
        let message = "you are signed in with a viewer token, which can only read: \
                       sign in with an admin token to make changes";
        return Err(forbidden(&session, message));
    }
    let form = serde_urlencoded::from_bytes(&bytes).map_err(|error| {
        (StatusCode::BAD_REQUEST, format!("malformed form: {error}")).into_response()
    })?;
    Ok((session, form))
}

/// A URL-encoded form posted by a signed-in admin with the session's CSRF
/// token in the `csrf` field: every form that changes something.
pub struct Protected<T> {
    pub session: Session,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Protected<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (session, form) = signed_form(request, state, true).await?;
        Ok(Protected { session, form })
    }
}

/// Like [`Protected`] for a form without fields that any signed-in session
/// may post (sign-out).
pub struct SignedIn {
    pub session: Session,
}

impl FromRequest<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (session, _) = signed_form::<CsrfField>(request, state, false).await?;
        Ok(SignedIn { session })
    }
}

/// Adds a `Set-Cookie` header to a response.
pub fn with_cookie(mut response: Response, value: HeaderValue) -> Response {
    response.headers_mut().append(SET_COOKIE, value);
    response
}
