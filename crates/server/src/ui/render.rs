//! Turning templates into responses, and the small display types every page
//! shares: the page layout (navigation, CSRF token, flash), status badges and
//! human-readable times and sizes.

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, VARY};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::{DbStatus, HaStatus, HostStatus, NodeRole, NodeStatus, TaskState};

use super::session::{is_htmx, Flash, Session};
use crate::error::ApiError;
use crate::state::AppState;

/// What the page frame needs: which navigation entry is current, the CSRF
/// token for the sign-out form and a message left by the previous request.
pub struct Layout {
    pub active: &'static str,
    pub csrf: String,
    pub flash: Option<Flash>,
    /// Whether the session may change things (pages hide actions otherwise).
    pub admin: bool,
}

impl Layout {
    pub fn new(session: &Session, active: &'static str) -> Layout {
        Layout {
            active,
            csrf: session.csrf.clone(),
            flash: session.take_flash(),
            admin: session.is_admin(),
        }
    }
}

/// A signed-in page request: a full page, or (from htmx polling) only one
/// fragment of it, named by the id of the element htmx swaps (`HX-Target`).
pub struct Viewer {
    pub session: Session,
    /// `Some` for htmx requests: the target element's id (may be empty).
    pub fragment: Option<String>,
}

impl Viewer {
    /// The layout; a fragment request leaves the flash for the next page.
    pub fn layout(&self, active: &'static str) -> Layout {
        if self.fragment.is_some() {
            return Layout {
                active,
                csrf: self.session.csrf.clone(),
                flash: None,
                admin: self.session.is_admin(),
            };
        }
        Layout::new(&self.session, active)
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, state).await?;
        let fragment = is_htmx(&parts.headers).then(|| {
            parts
                .headers
                .get("hx-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        });
        Ok(Viewer { session, fragment })
    }
}

/// Renders `template` as an HTML answer that is never cached (pages show
/// live state and sometimes secrets; a page and its htmx fragment share a URL).
pub fn html(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (
            status,
            [
                (CONTENT_TYPE, "text/html; charset=utf-8"),
                (CACHE_CONTROL, "no-store"),
                (VARY, "HX-Request"),
            ],
            body,
        )
            .into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

pub fn page(template: &impl Template) -> Response {
    html(StatusCode::OK, template)
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub title: String,
    pub message: String,
}

/// An API error on a page load, shown as a page with the message.
pub fn error_page(session: &Session, error: ApiError) -> Response {
    let title = match error.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible right now",
        StatusCode::BAD_REQUEST => "Invalid request",
        StatusCode::FORBIDDEN => "Not allowed",
        _ => "Something went wrong",
    };
    html(
        error.status,
        &ErrorPage {
            layout: Layout::new(session, ""),
            title: title.into(),
            message: sentence(&error.message),
        },
    )
}

/// An API message as a sentence: capitalised, ending with a full stop.
pub fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut text = match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => return String::new(),
    };
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

/// The address of a database page (`suffix` empty or like `/cluster`); a
/// name that is not a valid database name leads to the database list.
pub fn db_path(name: &str, suffix: &str) -> String {
    match pgfleet_core::names::validate_name(name) {
        Ok(()) => format!("/databases/{name}{suffix}"),
        Err(_) => "/databases".into(),
    }
}

/// A status shown with colour and text. `tone` is a CSS class:
/// `ok`, `warn`, `bad`, `info` (in progress) or `muted`.
#[derive(Debug, Clone)]
pub struct Badge {
    pub text: &'static str,
    pub tone: &'static str,
}

const fn badge(text: &'static str, tone: &'static str) -> Badge {
    Badge { text, tone }
}

pub fn db_status(status: DbStatus) -> Badge {
    match status {
        DbStatus::Creating => badge("Creating", "info"),
        DbStatus::Online => badge("Online", "ok"),
        DbStatus::Modifying => badge("Modifying", "info"),
        DbStatus::Failed => badge("Failed", "bad"),
        DbStatus::Deleting => badge("Deleting", "warn"),
    }
}

pub fn ha_status(status: HaStatus) -> Badge {
    match status {
        HaStatus::Unconfigured => badge("Unconfigured", "muted"),
        HaStatus::Incomplete => badge("Incomplete", "warn"),
        HaStatus::Complete => badge("Complete", "ok"),
    }
}

pub fn node_status(status: NodeStatus) -> Badge {
    match status {
        NodeStatus::Online => badge("Online", "ok"),
        NodeStatus::Modifying => badge("Modifying", "info"),
        NodeStatus::Offline => badge("Offline", "bad"),
        NodeStatus::Failed => badge("Failed", "bad"),
    }
}

pub fn role(role: NodeRole) -> Badge {
    match role {
        NodeRole::Primary => badge("Primary", "primary"),
        NodeRole::Replica => badge("Replica", "plain"),
        NodeRole::Monitor => badge("Monitor", "plain"),
    }
}

pub fn replication(status: &ReplicationStatus) -> Badge {
    match status {
        ReplicationStatus::Active => badge("Active", "ok"),
        ReplicationStatus::CatchingUp => badge("Catching up", "info"),
        ReplicationStatus::Stopped => badge("Stopped", "bad"),
    }
}

pub fn host_status(status: HostStatus) -> Badge {
    match status {
        HostStatus::Connected => badge("Connected", "ok"),
        HostStatus::Lost => badge("Lost", "bad"),
        HostStatus::Unknown => badge("Unknown", "muted"),
        HostStatus::Joined => badge("Joined", "info"),
    }
}

pub fn task_state(state: TaskState) -> Badge {
    match state {
        TaskState::Queued => badge("Queued", "muted"),
        TaskState::Running => badge("Running", "info"),
        TaskState::Succeeded => badge("Succeeded", "ok"),
        TaskState::Failed => badge("Failed", "bad"),
    }
}

/// `2026-01-31 23:59:59 UTC` for milliseconds since the Unix epoch.
pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// `40 ms`, `1.4 s`, `12 s`, `3 min`, `5 h`, `2 d`.
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 10_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let secs = ms / 1000;
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// `3 s ago` relative to `now_ms`.
pub fn ago(ms: i64, now_ms: i64) -> String {
    format!("{} ago", duration_ms(now_ms - ms))
}

/// `0 B`, `12.0 KiB`, `3.5 MiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(timestamp(1_767_225_599_000), "2025-12-31 23:59:59 UTC");
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(16 * 1024 * 1024), "16.0 MiB");
        assert_eq!(duration_ms(42), "42 ms");
        assert_eq!(duration_ms(1420), "1.4 s");
        assert_eq!(duration_ms(90_000), "90 s");
        assert_eq!(duration_ms(600_000), "10 min");
    }

    #[test]
    fn messages_become_sentences() {
        assert_eq!(
            sentence("database \"x\" not found"),
            "Database \"x\" not found."
        );
        assert_eq!(sentence("done."), "Done.");
    }
}
