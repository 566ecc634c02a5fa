//! `GET /api/v1/databases/{db}/history`: the last hour of a database's
//! points and the timeline of each failover and switchover recorded for it
//! (the recorder's event times, and the first write the history saw).
//! Same authentication as the other database reads (viewer or better).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::series::{HistoryPoint, RESOLUTION_MS};
use crate::error::ApiError;
use crate::state::AppState;

/// One failover or switchover: absolute times (ms since the epoch) as the
/// monitor and the control plane recorded them, and the first write the
/// history saw on the new primary. Detection is when the monitor decided
/// the primary had failed (for a failover, `failure_timeout_ms` after its
/// last good report, or sooner when its port refused probes).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailoverTimeline {
    /// `failover` or `switchover` (the monitor's reason).
    pub kind: String,
    pub old_primary: Option<String>,
    pub new_primary: String,
    pub generation: u64,
    pub detected_at_ms: Option<i64>,
    pub promoted_at_ms: Option<i64>,
    pub dns_switched_at_ms: Option<i64>,
    /// The first writing transaction the new primary completed, as carried
    /// by its agent's heartbeat (none when no write was seen, or the change
    /// happened before this control plane started).
    pub first_write_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseHistory {
    pub db: String,
    /// Seconds between points.
    pub resolution_secs: u64,
    /// The last hour, oldest first; empty after a control-plane restart.
    pub points: Vec<HistoryPoint>,
    /// Recorded primary changes, newest first.
    pub failovers: Vec<FailoverTimeline>,
}

/// The timelines of `db` from its events (newest first).
pub async fn timelines(state: &AppState, db: &str) -> Result<Vec<FailoverTimeline>, ApiError> {
    let events = state.store.list_events(db).await?;
    let mut timelines = Vec::new();
    for event in events {
        let Some(new_primary) = event["new_primary"].as_str() else {
            continue;
        };
        let Some(generation) = event["generation"].as_u64() else {
            continue;
        };
        timelines.push(FailoverTimeline {
            kind: event["reason"].as_str().unwrap_or("failover").to_string(),
            old_primary: event["old_primary"].as_str().map(str::to_string),
            new_primary: new_primary.to_string(),
            generation,
            detected_at_ms: event["detected_at_ms"].as_i64(),
            promoted_at_ms: event["promoted_at_ms"].as_i64(),
            dns_switched_at_ms: event["dns_switched_at_ms"].as_i64(),
            first_write_at_ms: state.history.first_write(db, generation),
        });
    }
    timelines.sort_by_key(|t| std::cmp::Reverse(t.generation));
    Ok(timelines)
}

#[utoipa::path(get, path = "/api/v1/databases/{db}/history", params(("db" = String, Path)),
    responses((status = 200, body = DatabaseHistory), (status = 404, body = pgfleet_core::api::ErrorBody)), security(("token" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DatabaseHistory>, ApiError> {
    if state.store.get_database(&name).await?.is_none() {
        return Err(ApiError::not_found("database", &name));
    }
    let failovers = timelines(&state, &name).await?;
    Ok(Json(DatabaseHistory {
        points: state.history.points(&name, pgfleet_core::time::now_ms()),
        db: name,
        resolution_secs: (RESOLUTION_MS / 1000) as u64,
        failovers,
    }))
}
