//! The agent's HTTP endpoint on `<address>:<agent port>`: keepers of other
//! hosts report to the monitors this agent runs.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::keeper::{Assignment, KeeperReport};
use crate::runtime::AgentRuntime;

/// The monitor of `db` if the request presents that database's monitor
/// token (keepers and the control plane have it; nobody else does).
fn authorized_monitor(
    runtime: &AgentRuntime,
    db: &str,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<crate::monitor::MonitorShared>, StatusCode> {
    let monitor = {
        let monitors = runtime.monitors.lock().expect("monitors lock");
        monitors.get(db).map(|h| h.monitor.clone())
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match monitor {
        Some(monitor) if monitor.token_matches(presented) => Ok(monitor),
        Some(_) => Err(StatusCode::UNAUTHORIZED),
        None => Err(StatusCode::NOT_FOUND),
    }
}

async fn report(
    State(runtime): State<AgentRuntime>,
    Path(db): Path<String>,
    headers: HeaderMap,
    Json(report): Json<KeeperReport>,
) -> Result<Json<Assignment>, StatusCode> {
    let monitor = authorized_monitor(&runtime, &db, &headers)?;
    match monitor.keeper_report(report).await {
        Some(assignment) => Ok(Json(assignment)),
        None => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

#[derive(serde::Deserialize)]
struct SwitchoverRequest {
    target: String,
}

async fn switchover(
    State(runtime): State<AgentRuntime>,
    Path(db): Path<String>,
    headers: HeaderMap,
    Json(request): Json<SwitchoverRequest>,
) -> (StatusCode, Json<serde_json::Value>) {
    let monitor = match authorized_monitor(&runtime, &db, &headers) {
        Ok(monitor) => monitor,
        Err(status) => {
            return (
                status,
                Json(serde_json::json!({"error": format!("no monitor for {db} with that token")})),
            )
        }
    };
    match monitor.switchover(&request.target).await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"ok": true}))),
        Err(message) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": message})),
        ),
    }
}

async fn state(
    State(runtime): State<AgentRuntime>,
    Path(db): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let monitor = authorized_monitor(&runtime, &db, &headers)?;
    Ok(Json(
        monitor.observed().map(|o| o.state).unwrap_or_default(),
    ))
}

pub async fn start(
    runtime: AgentRuntime,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let address = format!("{}:{}", runtime.config.address, runtime.config.agent_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("binding the agent endpoint on {address}: {e}"))?;
    let router = Router::new()
        .route("/monitor/{db}/report", post(report))
        .route("/monitor/{db}/state", get(state))
        .route("/monitor/{db}/switchover", post(switchover))
        .route("/health", get(|| async { "ok" }))
        .with_state(runtime);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    }))
}
