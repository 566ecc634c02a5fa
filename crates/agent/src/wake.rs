//! Waking a keeper: when its monitor assigns a node a new state, the node's
//! keeper should not wait for its next report interval to learn it (a
//! failover is several such hops: report your final LSN, promote, follow
//! the new primary). [`wake`] is the monitor's side, best effort (the
//! keeper reports every interval anyway); [`route`] is the keeper host's
//! side: `POST /keeper/{db}/{node}/wake` on the agent endpoint (mutual
//! TLS), admitted only with the database's monitor token, which makes the
//! node's actor run its next step (observe, report) at once.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use pgfleet_core::protocol::PeerSpec;

use crate::runtime::AgentRuntime;

/// The agent endpoint's route.
pub const ROUTE: &str = "/keeper/{db}/{node}/wake";

/// The monitor of `db` tells `peer`'s keeper that it has a new assignment.
/// A node on this host is woken directly.
pub fn wake(runtime: &AgentRuntime, db: &str, peer: &PeerSpec, token: &str) {
    if wake_local(runtime, db, &peer.node, token) != StatusCode::NOT_FOUND {
        return;
    }
    let url = format!(
        "https://{}:{}/keeper/{db}/{}/wake",
        peer.address, peer.agent_port, peer.node
    );
    let request = runtime
        .peer_http()
        .post(url)
        .bearer_auth(token)
        .timeout(Duration::from_millis(500));
    let (db, node) = (db.to_string(), peer.node.clone());
    tokio::spawn(async move {
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::debug!(%db, %node, status = %response.status(), "keeper wake refused")
            }
            Err(error) => tracing::debug!(%db, %node, %error, "keeper wake not delivered"),
        }
    });
}

/// Wakes the actor of `node` of `db` on this host if `token` is the one its
/// spec holds for its monitor.
fn wake_local(runtime: &AgentRuntime, db: &str, node: &str, token: &str) -> StatusCode {
    let instances = runtime.instances.lock().expect("instances lock");
    let Some(handle) = instances.get(&pgfleet_core::protocol::instance_key(db, node)) else {
        return StatusCode::NOT_FOUND;
    };
    let spec = handle.spec.borrow();
    if spec.db != db || spec.monitor.is_none() {
        return StatusCode::NOT_FOUND;
    }
    if spec.monitor_token.is_empty()
        || !pgfleet_core::secrets::same_secret(token, &spec.monitor_token)
    {
        return StatusCode::UNAUTHORIZED;
    }
    handle.wake.notify_one();
    StatusCode::NO_CONTENT
}

/// `POST /keeper/{db}/{node}/wake`.
pub async fn route(
    State(runtime): State<AgentRuntime>,
    Path((db, node)): Path<(String, String)>,
    headers: HeaderMap,
) -> StatusCode {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    wake_local(&runtime, &db, &node, token)
}
