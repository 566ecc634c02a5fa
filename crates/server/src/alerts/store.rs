//! Alert targets and the outbox as settings in the metadata store (both
//! backends): `alert_targets` (no secrets), `alert_outbox` (undelivered
//! alerts), and per target `secret/alert_target/<name>` (webhook address
//! and signing secret, sealed by the store). Callers hold `Alerts::lock`
//! across each read-modify-write.

use pgfleet_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use super::Alert;
use crate::state::AppState;

const TARGETS_KEY: &str = "alert_targets";
const OUTBOX_KEY: &str = "alert_outbox";
/// More undelivered alerts than this and the oldest are dropped (logged).
pub const MAX_OUTBOX: usize = 5000;

/// A target as stored (no secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredTarget {
    pub name: String,
    /// Scheme, host and port of the webhook: what lists show.
    pub origin: String,
    /// Kinds it receives; empty means all.
    pub events: Vec<String>,
    pub signed: bool,
    pub created_at_ms: i64,
    #[serde(default)]
    pub last_attempt_ms: Option<i64>,
    #[serde(default)]
    pub last_success_ms: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub delivered: u64,
}

impl StoredTarget {
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

/// The sealed part of a target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetSecret {
    pub url: String,
    pub secret: Option<String>,
}

/// An alert waiting for delivery to one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub target: String,
    /// The JSON body, exactly as it is signed and sent.
    pub body: String,
    pub alert_id: String,
    pub event: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub created_at_ms: i64,
}

pub fn secret_key(name: &str) -> String {
    format!(
        "{}alert_target/{name}",
        pgfleet_store::sealed::SECRET_META_PREFIX
    )
}

pub async fn targets(store: &dyn Store) -> Result<Vec<StoredTarget>, StoreError> {
    match store.get_meta(TARGETS_KEY).await? {
        Some(text) if !text.is_empty() => Ok(serde_json::from_str(&text)?),
        _ => Ok(Vec::new()),
    }
}

pub async fn put_targets(store: &dyn Store, targets: &[StoredTarget]) -> Result<(), StoreError> {
    store
        .put_meta(TARGETS_KEY, &serde_json::to_string(targets)?)
        .await
}

pub async fn secret(store: &dyn Store, name: &str) -> Result<Option<TargetSecret>, StoreError> {
    match store.get_meta(&secret_key(name)).await? {
        Some(text) if !text.is_empty() => Ok(Some(serde_json::from_str(&text)?)),
        _ => Ok(None),
    }
}

pub async fn outbox(store: &dyn Store) -> Result<Vec<Pending>, StoreError> {
    match store.get_meta(OUTBOX_KEY).await? {
        Some(text) if !text.is_empty() => Ok(serde_json::from_str(&text)?),
        _ => Ok(Vec::new()),
    }
}

pub async fn put_outbox(store: &dyn Store, outbox: &[Pending]) -> Result<(), StoreError> {
    store
        .put_meta(OUTBOX_KEY, &serde_json::to_string(outbox)?)
        .await
}

/// Queues `alert` for every target that wants it, or for target `only`
/// whatever it subscribed to (`alert-target test`). Returns how many.
pub async fn enqueue(
    state: &AppState,
    alert: &Alert,
    only: Option<&str>,
) -> Result<usize, StoreError> {
    let _guard = state.alerts.lock.lock().await;
    let store = state.store.as_ref();
    let receivers: Vec<StoredTarget> = targets(store)
        .await?
        .into_iter()
        .filter(|t| match only {
            Some(name) => t.name == name,
            None => t.wants(&alert.event),
        })
        .collect();
    if receivers.is_empty() {
        return Ok(0);
    }
    let mut pending = outbox(store).await?;
    let now = pgfleet_core::time::now_ms();
    for target in &receivers {
        let mut copy = alert.clone();
        copy.id = pgfleet_core::secrets::random_token(20);
        pending.push(Pending {
            target: target.name.clone(),
            body: serde_json::to_string(&copy)?,
            alert_id: copy.id,
            event: copy.event.clone(),
            attempts: 0,
            next_attempt_ms: now,
            created_at_ms: now,
        });
    }
    if pending.len() > MAX_OUTBOX {
        let dropped = pending.len() - MAX_OUTBOX;
        pending.drain(..dropped);
        tracing::warn!(
            dropped,
            "alert outbox full: oldest undelivered alerts dropped"
        );
    }
    put_outbox(store, &pending).await?;
    tracing::info!(event = %alert.event, db = ?alert.db, host = ?alert.host, targets = receivers.len(), "alert queued");
    Ok(receivers.len())
}
