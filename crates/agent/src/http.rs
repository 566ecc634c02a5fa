//! The agent's HTTPS endpoint on `<address>:<agent port>`: keepers of other
//! hosts report to the monitors this agent runs, the control plane asks
//! them for switchovers, and monitors' hosts push primary changes to this
//! agent's DNS (`dns_push`, admitted by the zone snapshot's monitor host). Mutual TLS: the endpoint presents the host
//! certificate and accepts only clients with a certificate from the host CA
//! or the fleet CA (the control plane's client certificate, and hosts not
//! yet renewed since the host CA came); each monitor then admits only the certificates its spec lists (the
//! hosts of its data nodes and the control plane) that also present the
//! database's monitor token.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pgfleet_tls::{ClientAuth, PeerCertificate};
use tokio_util::sync::CancellationToken;

use crate::keeper::{Assignment, KeeperReport};
use crate::runtime::AgentRuntime;
use crate::supervisor::Supervisor;

/// The monitor of `db` if the request comes with a client certificate the
/// monitor's spec lists and presents that database's monitor token.
fn authorized_monitor(
    supervisor: &Supervisor,
    db: &str,
    peer: Option<&PeerCertificate>,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<crate::monitor::MonitorShared>, StatusCode> {
    let (monitor, client_listed) = {
        let monitors = supervisor.monitors.lock().expect("monitors lock");
        match monitors.get(db) {
            Some(handle) => {
                let listed =
                    peer.is_some_and(|p| handle.spec.borrow().clients.contains(&p.fingerprint));
                (Some(handle.monitor.clone()), listed)
            }
            None => (None, false),
        }
    };
    if monitor.is_some() && !client_listed {
        return Err(StatusCode::FORBIDDEN);
    }
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
    State(supervisor): State<Supervisor>,
    Path(db): Path<String>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    Json(report): Json<KeeperReport>,
) -> Result<Json<Assignment>, StatusCode> {
    let monitor = authorized_monitor(&supervisor, &db, peer.as_deref(), &headers)?;
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
    State(supervisor): State<Supervisor>,
    Path(db): Path<String>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    Json(request): Json<SwitchoverRequest>,
) -> (StatusCode, Json<serde_json::Value>) {
    let monitor = match authorized_monitor(&supervisor, &db, peer.as_deref(), &headers) {
        Ok(monitor) => monitor,
        Err(status) => {
            return (
                status,
                Json(
                    serde_json::json!({"error": format!("no monitor for {db} that admits this client and token")}),
                ),
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
    State(supervisor): State<Supervisor>,
    Path(db): Path<String>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let monitor = authorized_monitor(&supervisor, &db, peer.as_deref(), &headers)?;
    Ok(Json(
        monitor.observed().map(|o| o.state).unwrap_or_default(),
    ))
}

pub async fn start(
    supervisor: Supervisor,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let runtime = supervisor.runtime.clone();
    let address = format!("{}:{}", runtime.config.address, runtime.config.agent_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("binding the agent endpoint on {address}: {e}"))?;
    let router = Router::new()
        .route("/monitor/{db}/report", post(report))
        .route("/monitor/{db}/state", get(state))
        .route("/monitor/{db}/switchover", post(switchover))
        .route(
            crate::dns_push::ROUTE,
            post(crate::dns_push::primary_changed),
        )
        .route(crate::wake::ROUTE, post(crate::wake::route))
        .route(
            "/intent-changed",
            post(|State(runtime): State<AgentRuntime>| async move {
                runtime.beat_now.notify_one();
                StatusCode::NO_CONTENT
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(supervisor.clone());
    let ca_pem = runtime.identity().peer_cas_pem();
    let tls = runtime
        .server_cert
        .server_config(ClientAuth::Required(ca_pem))?;
    Ok(tokio::spawn(pgfleet_tls::serve(
        listener,
        Some(tls),
        router,
        runtime.config.http,
        cancel,
    )))
}
