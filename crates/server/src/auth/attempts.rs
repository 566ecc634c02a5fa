//! Failed authentication attempts per source address, with lockout and
//! backoff: a source with [`THRESHOLD`] failures within [`WINDOW`] is locked
//! out for [`FIRST_LOCKOUT`], and each further failure before it has been
//! quiet for a window after its lockout doubles the lockout, up to
//! [`MAX_LOCKOUT`]. A locked-out
//! source is answered with 429 and `Retry-After` without its token being
//! checked (else the answer would tell a right guess from a wrong one).
//! After a window with no failure the source starts afresh. Other sources
//! are not affected, so a valid token still works from elsewhere.
//!
//! Applies to API tokens (`require_token`) and the UI's sign-in; only a
//! presented, wrong token counts (a request without one guesses nothing).
//! Agent routes are not limited: host credentials are 40 random characters
//! and a certificate, and on one machine every agent and the CLI share the
//! loopback source address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const THRESHOLD: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(5);
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// More sources than this and the quiet ones are forgotten.
const MAX_SOURCES: usize = 10_000;

#[derive(Debug, Default)]
struct Source {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    lockouts: u32,
}

impl Source {
    /// Drops failures older than the window; a source that has been quiet
    /// for a whole window after its last lockout starts afresh.
    fn forget_old(&mut self, now: Instant) {
        while self
            .failures
            .front()
            .is_some_and(|at| now.duration_since(*at) >= WINDOW)
        {
            self.failures.pop_front();
        }
        if let Some(until) = self.locked_until {
            if now >= until && now.duration_since(until) >= WINDOW && self.failures.is_empty() {
                self.locked_until = None;
                self.lockouts = 0;
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct FailedAttempts {
    sources: Mutex<HashMap<IpAddr, Source>>,
}

impl FailedAttempts {
    /// How long `source` is still locked out, if it is.
    pub fn locked_for(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let sources = self.sources.lock().expect("attempts lock");
        let until = sources.get(&source)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failed attempt; returns the lockout it started, if any.
    pub fn failed(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let mut sources = self.sources.lock().expect("attempts lock");
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, entry| {
                entry.forget_old(now);
                !entry.failures.is_empty() || entry.locked_until.is_some()
            });
            if sources.len() >= MAX_SOURCES {
                sources.clear();
            }
        }
        let entry = sources.entry(source).or_default();
        entry.forget_old(now);
        entry.failures.push_back(now);
        if entry.lockouts == 0 && entry.failures.len() < THRESHOLD {
            return None;
        }
        let doubling = 2u32.saturating_pow(entry.lockouts.min(16));
        let lockout = FIRST_LOCKOUT.saturating_mul(doubling).min(MAX_LOCKOUT);
        entry.lockouts += 1;
        entry.locked_until = Some(now + lockout);
        Some(lockout)
    }
}

/// The `Retry-After` value (whole seconds, at least 1) for a lockout.
pub fn retry_after_secs(locked_for: Duration) -> u64 {
    (locked_for.as_secs() + u64::from(locked_for.subsec_nanos() > 0)).max(1)
}

/// The address a request came from (`0.0.0.0` when the serve loop did not
/// say, e.g. a router called directly).
#[derive(Debug, Clone, Copy)]
pub struct SourceAddress(pub IpAddr);

impl SourceAddress {
    pub fn of(extensions: &axum::http::Extensions) -> SourceAddress {
        let address = extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        SourceAddress(address)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SourceAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(SourceAddress::of(&parts.extensions))
    }
}

/// The API's answer to a locked-out source: 429 with `Retry-After`.
pub fn too_many_attempts(locked_for: Duration) -> axum::response::Response {
    use axum::response::IntoResponse;
    let seconds = retry_after_secs(locked_for);
    let error = crate::error::ApiError {
        status: axum::http::StatusCode::TOO_MANY_REQUESTS,
        code: "too_many_attempts",
        message: format!("too many failed attempts from this address: try again in {seconds} s"),
    };
    let mut response = error.into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 8));

    #[test]
    fn ten_failures_in_a_minute_lock_the_source_out_with_doubling_backoff() {
        let attempts = FailedAttempts::default();
        let start = Instant::now();
        for n in 0..THRESHOLD - 1 {
            let at = start + Duration::from_secs(n as u64);
            assert_eq!(attempts.failed(HOST, at), None);
            assert_eq!(attempts.locked_for(HOST, at), None);
        }
        let tenth = start + Duration::from_secs(9);
        assert_eq!(attempts.failed(HOST, tenth), Some(FIRST_LOCKOUT));
        assert_eq!(attempts.locked_for(HOST, tenth), Some(FIRST_LOCKOUT));
        assert_eq!(attempts.locked_for(OTHER, tenth), None, "only that source");
        // After the lockout, the next failure doubles it, and so on up to the cap.
        let mut now = tenth + FIRST_LOCKOUT;
        assert_eq!(attempts.locked_for(HOST, now), None);
        assert_eq!(attempts.failed(HOST, now), Some(FIRST_LOCKOUT * 2));
        now += FIRST_LOCKOUT * 2;
        assert_eq!(attempts.failed(HOST, now), Some(FIRST_LOCKOUT * 4));
        assert_eq!(
            attempts.locked_for(HOST, now + FIRST_LOCKOUT),
            Some(FIRST_LOCKOUT * 3),
            "refused while locked"
        );
        let mut last = None;
        for _ in 0..10 {
            now = now + attempts.locked_for(HOST, now).unwrap_or_default();
            last = attempts.failed(HOST, now);
        }
        assert_eq!(last, Some(MAX_LOCKOUT));
        // A quiet window after the lockout starts afresh.
        now += MAX_LOCKOUT + WINDOW;
        assert_eq!(attempts.locked_for(HOST, now), None);
        assert_eq!(attempts.failed(HOST, now), None);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(4001)), 5);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
    }
}
