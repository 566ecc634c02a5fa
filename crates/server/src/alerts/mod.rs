//! Alerts to webhooks: events worth waking someone for (failover,
//! switchover, degraded and recovered databases, hosts lost and back,
//! failed tasks, host certificates expiring within 14 days, replicas not
//! streaming for `--alert-not-streaming-secs` and streaming again, WAL
//! archiving failing and recovered) are POSTed as
//! JSON with a Slack-compatible `text` to every alert target subscribed to
//! their kind, signed with HMAC-SHA256 over the body
//! (`X-Pgfleet-Signature: sha256=<hex>`) when the target has a secret.
//!
//! Delivery is at least once: [`raise`] writes one entry per target into a
//! durable outbox in the store (setting `alert_outbox`) before anything is
//! sent; the delivery loop (`delivery::run`) sends due entries, removes
//! them when the receiver answers 2xx and otherwise retries with
//! exponential backoff (1 s doubling to 5 min) for 24 hours. A restarted
//! control plane resumes the outbox. Each target records its last attempt,
//! last success and last error (`alert-target list`).
//!
//! Targets (setting `alert_targets`) hold no secret: the webhook address
//! (which often is a credential, as Slack's are) and the signing secret are
//! kept under `secret/alert_target/<name>`, sealed by the store
//! (`pgfleet_store::sealed`), and lists show only the address's origin.
//! Loops: `delivery::run` and `watch::run` (which turns observed state into
//! degraded/recovered, host lost/back, certificate, replica streaming and
//! archiving alerts).

pub mod api;
mod conditions;
mod delivery;
mod store;
mod streams;
mod watch;

pub use delivery::run as run_delivery;
pub use watch::run as run_watch;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};

use crate::state::AppState;

/// Every kind of alert; a target subscribes to some (all when it names none).
pub const KINDS: &[&str] = &[
    "failover",
    "switchover",
    "degraded",
    "recovered",
    "host_lost",
    "host_back",
    "task_failed",
    "certificate_expiring",
    "replica_not_streaming",
    "replica_streaming",
    "archive_failing",
    "archive_recovered",
];

/// The alert loops' shared state (in `AppState`).
#[derive(Default)]
pub struct Alerts {
    /// Serialises read-modify-write cycles of the targets and the outbox.
    pub(crate) lock: Mutex<()>,
    /// Wakes the delivery loop when an alert is queued.
    pub(crate) wakeup: Notify,
}

/// One alert, as POSTed (the JSON body).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    /// Unique per alert and target: receivers deduplicate with it (a
    /// delivery whose answer was lost is sent again).
    pub id: String,
    pub event: String,
    /// Slack-compatible summary.
    pub text: String,
    pub db: Option<String>,
    pub host: Option<String>,
    pub at_ms: i64,
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Alert {
    pub fn new(event: &str, text: String) -> Alert {
        Alert {
            id: String::new(),
            event: event.to_string(),
            text: format!("[pgfleet] {text}"),
            db: None,
            host: None,
            at_ms: pgfleet_core::time::now_ms(),
            details: serde_json::Value::Null,
        }
    }

    pub fn db(mut self, db: &str) -> Alert {
        self.db = Some(db.to_string());
        self
    }

    pub fn host(mut self, host: &str) -> Alert {
        self.host = Some(host.to_string());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Alert {
        self.details = details;
        self
    }

    /// A failover or switchover the control plane recorded (`event`: the
    /// recorded event, with its times).
    pub fn primary_changed(
        change: &pgfleet_core::protocol::PrimaryChanged,
        old_primary: Option<&str>,
        event: serde_json::Value,
    ) -> Alert {
        let kind = if change.reason == "switchover" {
            "switchover"
        } else {
            "failover"
        };
        let was = old_primary.map_or(String::new(), |old| format!(" (was {old})"));
        Alert::new(
            kind,
            format!(
                "{kind} of database {}: {} is the primary{was}",
                change.db, change.new_primary
            ),
        )
        .db(&change.db)
        .details(event)
    }

    pub fn task_failed(task: &pgfleet_core::Task, message: &str) -> Alert {
        Alert::new(
            "task_failed",
            format!(
                "task {} ({:?} of {}) failed: {message}",
                task.id, task.kind, task.target
            ),
        )
        .db(&task.target)
        .details(serde_json::json!({"task_id": task.id, "kind": task.kind, "error": message}))
    }
}

/// Queues `alert` for every target subscribed to its kind (durably, before
/// returning) and wakes the delivery loop. Failures are logged here: an
/// alert that cannot be queued must not fail the change that raised it.
pub async fn raise(state: &AppState, alert: Alert) {
    if let Err(error) = store::enqueue(state, &alert, None).await {
        tracing::error!(event = %alert.event, error = %crate::error::error_chain(&error), "cannot queue alert");
        return;
    }
    state.alerts.wakeup.notify_one();
}

/// A target whose last delivery attempt failed: (name, last error, alerts
/// waiting). What the HA overview shows as failing.
pub async fn failing_targets(
    state: &AppState,
) -> Result<Vec<(String, String, u64)>, pgfleet_store::StoreError> {
    let _guard = state.alerts.lock.lock().await;
    let targets = store::targets(state.store.as_ref()).await?;
    let outbox = store::outbox(state.store.as_ref()).await?;
    let mut failing = Vec::new();
    for target in targets {
        let Some(error) = target.last_error else {
            continue;
        };
        if target.last_success_ms >= target.last_attempt_ms {
            continue;
        }
        let pending = outbox.iter().filter(|p| p.target == target.name).count() as u64;
        failing.push((target.name, error, pending));
    }
    Ok(failing)
}
