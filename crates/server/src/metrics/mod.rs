//! `GET /metrics`: the fleet and the control plane in the Prometheus text
//! format (0.0.4), encoded by `prometheus-client`, never by hand.
//!
//! Two kinds of figures: instruments the control plane updates as it works
//! ([`Metrics`]: API request durations by route template and status, task
//! durations by kind and outcome, store operation durations: `store`'s
//! `TimedStore` wraps the store), kept for the life of the process; and the
//! fleet's state (`fleet::collect`: databases, nodes, hosts, the task queue,
//! DNS answers), read afresh from the store and the observations at every
//! scrape, so a deleted database or host leaves no stale series.
//!
//! Any valid token may scrape (admin, viewer, or a scrape-only `metrics`
//! token: `auth::require_scrape`). Nothing here is secret: names, roles,
//! states, lags and times, never passwords or URIs.

mod fleet;
pub mod http;
pub mod store;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::state::AppState;

/// Labels of an API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`/api/v1/databases/{db}`), never the concrete
    /// path (one series per database name would grow without bound);
    /// `unmatched` for paths no route serves.
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// Labels of a finished task.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub kind: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn task_histogram() -> Histogram {
    // 100 ms .. ~30 min.
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
}

/// The control plane's own instruments (cheap to clone: shared inside).
#[derive(Clone)]
pub struct Metrics {
    pub api_requests: Histograms<RequestLabels>,
    pub tasks: Histograms<TaskLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            api_requests: Family::new_with_constructor(seconds_histogram),
            tasks: Family::new_with_constructor(task_histogram),
        }
    }
}

impl Metrics {
    /// Records a task that finished after `seconds` (from its start).
    pub fn task_finished(&self, kind: pgfleet_core::TaskKind, succeeded: bool, seconds: f64) {
        let labels = TaskLabels {
            kind: format!("{kind:?}"),
            outcome: if succeeded { "succeeded" } else { "failed" }.into(),
        };
        self.tasks.get_or_create(&labels).observe(seconds);
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "api_request_duration_seconds",
            "API and UI request durations by route template, method and status",
            self.api_requests.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Durations of finished tasks (start to finish) by kind and outcome",
            self.tasks.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Metadata store operation durations by operation and outcome",
            store::histograms().clone(),
        );
    }
}

/// The `/metrics` body for `state` (also used by the benchmark).
pub async fn render(state: &AppState) -> Result<String, ApiError> {
    let mut registry = Registry::with_prefix("pgfleet");
    state.metrics.register(&mut registry);
    fleet::collect(state, &mut registry).await?;
    let mut body = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut body, &registry)
        .map_err(ApiError::internal)?;
    Ok(body)
}

/// `GET /metrics`: any valid token, a scrape-only `metrics` token included.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "the fleet and the control plane in the Prometheus text format (0.0.4)", content_type = "text/plain", body = String),
        (status = 401, body = pgfleet_core::api::ErrorBody)),
    security(("token" = [])))]
pub async fn scrape(State(state): State<AppState>) -> Response {
    match render(&state).await {
        Ok(body) => (
            [(
                CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            body,
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}
