//! The delivery loop: sends due outbox entries, at most one per target per
//! pass (in order), removes the delivered ones, reschedules the others with
//! exponential backoff, and records each target's last attempt, success and
//! error. Requests are bounded: 10 s in all, no redirects followed, at most
//! 1 KiB of an error answer read (for the recorded error).

use std::collections::HashSet;
use std::time::Duration;

use pgfleet_core::time::now_ms;
use tokio_util::sync::CancellationToken;

use super::store::{self, Pending};
use crate::state::AppState;

/// Retries stop this long after an alert was raised.
const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;
const MAX_BACKOFF_MS: i64 = 300_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const ERROR_BODY_BYTES: usize = 1024;

/// The header that carries the body's signature.
pub const SIGNATURE_HEADER: &str = "x-pgfleet-signature";

/// `sha256=<hex>` of HMAC-SHA256 over `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Wait before attempt `attempts + 1`: 1 s, 2 s, 4 s … at most 5 min.
fn backoff_ms(attempts: u32) -> i64 {
    let doubled = 1000i64.saturating_mul(1i64 << attempts.saturating_sub(1).min(20));
    doubled.min(MAX_BACKOFF_MS)
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent("pgfleet-alerts")
        .build()
        .expect("the alert client builds")
}

/// Posts `pending` to its target; `Err` says why it was not delivered.
async fn send(state: &AppState, http: &reqwest::Client, pending: &Pending) -> Result<(), String> {
    let secret = store::secret(state.store.as_ref(), &pending.target)
        .await
        .map_err(|e| {
            format!(
                "cannot read the target's webhook: {}",
                crate::error::error_chain(&e)
            )
        })?
        .ok_or_else(|| "the target's webhook is gone".to_string())?;
    let mut request = http
        .post(&secret.url)
        .header("content-type", "application/json")
        .header("x-pgfleet-event", &pending.event)
        .header("x-pgfleet-delivery", &pending.alert_id)
        .body(pending.body.clone());
    if let Some(key) = &secret.secret {
        request = request.header(SIGNATURE_HEADER, signature(key, pending.body.as_bytes()));
    }
    let mut response = request
        .send()
        .await
        // Without the address: it may hold a credential (Slack's do).
        .map_err(|e| {
            format!(
                "cannot reach the webhook: {}",
                crate::error::error_chain(&e.without_url())
            )
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut excerpt = Vec::new();
    while excerpt.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
            _ => break,
        }
    }
    excerpt.truncate(ERROR_BODY_BYTES);
    let text = String::from_utf8_lossy(&excerpt);
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    Err(format!("the webhook answered HTTP {status}: {text}"))
}

/// One pass; returns when the next entry is due (ms), if any.
async fn deliver_due(
    state: &AppState,
    http: &reqwest::Client,
) -> Result<Option<i64>, pgfleet_store::StoreError> {
    let now = now_ms();
    let due: Vec<Pending> = {
        let _guard = state.alerts.lock.lock().await;
        let mut seen = HashSet::new();
        store::outbox(state.store.as_ref())
            .await?
            .into_iter()
            .filter(|p| seen.insert(p.target.clone()))
            .filter(|p| p.next_attempt_ms <= now)
            .collect()
    };
    let mut results = Vec::with_capacity(due.len());
    for pending in &due {
        let result = send(state, http, pending).await;
        match &result {
            Ok(()) => {
                tracing::info!(target_name = %pending.target, event = %pending.event, id = %pending.alert_id, "alert delivered")
            }
            Err(error) => {
                tracing::warn!(target_name = %pending.target, event = %pending.event, attempts = pending.attempts + 1, %error, "alert delivery failed")
            }
        }
        results.push((pending.alert_id.clone(), pending.target.clone(), result));
    }
    let _guard = state.alerts.lock.lock().await;
    let store_ref = state.store.as_ref();
    let mut outbox = store::outbox(store_ref).await?;
    let mut targets = store::targets(store_ref).await?;
    let finished = now_ms();
    for (id, target_name, result) in results {
        let target = targets.iter_mut().find(|t| t.name == target_name);
        let Some(index) = outbox.iter().position(|p| p.alert_id == id) else {
            continue;
        };
        if let Some(target) = target {
            target.last_attempt_ms = Some(finished);
            match &result {
                Ok(()) => {
                    target.last_success_ms = Some(finished);
                    target.last_error = None;
                    target.delivered += 1;
                }
                Err(error) => target.last_error = Some(error.clone()),
            }
        }
        let entry = &mut outbox[index];
        entry.attempts += 1;
        let expired = finished - entry.created_at_ms > GIVE_UP_AFTER_MS;
        if result.is_ok() || expired {
            if expired && result.is_err() {
                tracing::error!(target_name = %entry.target, event = %entry.event, attempts = entry.attempts, "alert given up after 24 h of failed deliveries");
            }
            outbox.remove(index);
        } else {
            entry.next_attempt_ms = finished + backoff_ms(entry.attempts);
        }
    }
    // Entries of deleted targets are dropped.
    outbox.retain(|p| targets.iter().any(|t| t.name == p.target));
    store::put_outbox(store_ref, &outbox).await?;
    store::put_targets(store_ref, &targets).await?;
    Ok(outbox.iter().map(|p| p.next_attempt_ms).min())
}

/// Runs until `cancel` fires.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let http = http_client();
    loop {
        let woken = state.alerts.wakeup.notified();
        let next_due = match deliver_due(&state, &http).await {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(error = %crate::error::error_chain(&error), "alert delivery pass failed");
                None
            }
        };
        let wait_ms = next_due.map_or(5000, |due| (due - now_ms()).clamp(50, 5000));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = woken => {}
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(4), 8000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }
}
