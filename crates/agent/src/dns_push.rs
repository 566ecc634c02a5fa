//! Primary changes between agents' DNS servers.
//!
//! [`announce`]: the monitor's host applies its change to its own DNS and
//! pushes it to every other agent in the zone snapshot, over the agents'
//! mutual-TLS endpoint (`POST /dns/primary-changed`), each in its own
//! background task retried until acknowledged (2xx), refused as stale (409:
//! the agent has as new or newer), superseded (the monitor announced a newer
//! change of the database) or the agent left the snapshot. Never blocks the
//! monitor.
//!
//! [`resume`]: a restarted monitor host pushes again its changes the control
//! plane has not recorded yet.
//!
//! [`primary_changed`]: the receiving route; only the host certificate the
//! snapshot names as the database's monitor host is accepted (403 and a
//! warning otherwise), with the control plane's generation fencing.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use pgfleet_core::errors::error_chain;
use pgfleet_core::protocol::PrimaryChanged;
use pgfleet_tls::PeerCertificate;

use crate::dns::merge::Refusal;
use crate::runtime::AgentRuntime;

/// The agent endpoint's route.
pub const ROUTE: &str = "/dns/primary-changed";

/// Longest pause between two pushes to one agent.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Applies the monitor's `change` to this agent's DNS and pushes it to the
/// other agents in the background.
pub fn announce(runtime: &AgentRuntime, change: &PrimaryChanged) {
    let dns = &runtime.dns;
    dns.announce(&change.db, change.generation);
    let own = pgfleet_tls::pem_fingerprint(&runtime.identity().cert_pem).unwrap_or_default();
    match dns.apply_change(change, &own) {
        Ok(()) => {
            tracing::info!(db = %change.db, new_primary = %change.new_primary, generation = change.generation, "primary change applied to this agent's DNS")
        }
        Err(refusal) => {
            tracing::warn!(db = %change.db, generation = change.generation, ?refusal, "this agent's DNS did not take its monitor's primary change")
        }
    }
    let Some(snapshot) = dns.snapshot() else {
        tracing::warn!(db = %change.db, "no zone from the control plane yet: the other agents' DNS are not told");
        return;
    };
    for agent in snapshot.agents {
        if agent.host != runtime.config.name {
            tokio::spawn(push_to(runtime.clone(), agent.host, change.clone()));
        }
    }
}

/// After a restart: pushes again the changes this host's monitor made that
/// the control plane's snapshot does not show yet (the pushes of the
/// previous process may not all have been taken).
pub fn resume(runtime: &AgentRuntime) {
    let own = pgfleet_tls::pem_fingerprint(&runtime.identity().cert_pem).unwrap_or_default();
    let Some(snapshot) = runtime.dns.snapshot() else {
        return;
    };
    for (db, local) in runtime.dns.local_changes() {
        let ours = snapshot
            .database(&db)
            .is_some_and(|d| d.monitor_fingerprints.contains(&own));
        if !ours {
            continue;
        }
        tracing::info!(%db, new_primary = %local.primary, generation = local.generation, "pushing a primary change the control plane has not recorded yet to every agent again");
        let change = PrimaryChanged {
            db: db.clone(),
            old_primary: None,
            new_primary: local.primary,
            generation: local.generation,
            reason: "failover".into(),
            old_lsn: None,
            new_lsn: None,
            detected_at_ms: None,
            promoted_at_ms: None,
        };
        runtime.dns.announce(&db, change.generation);
        for agent in &snapshot.agents {
            if agent.host != runtime.config.name {
                tokio::spawn(push_to(runtime.clone(), agent.host.clone(), change.clone()));
            }
        }
    }
}

/// Pushes `change` to `host`'s agent until it is taken or no longer needed.
async fn push_to(runtime: AgentRuntime, host: String, change: PrimaryChanged) {
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        if runtime.dns.superseded(&change.db, change.generation) {
            return;
        }
        let Some(agent) = runtime
            .dns
            .snapshot()
            .and_then(|s| s.agents.into_iter().find(|a| a.host == host))
        else {
            return;
        };
        let url = format!("https://{}:{}{ROUTE}", agent.address, agent.agent_port);
        let result = runtime
            .peer_http()
            .post(&url)
            .timeout(Duration::from_secs(2))
            .json(&change)
            .send()
            .await;
        let problem = match result {
            Ok(response) if response.status().is_success() => {
                if failures > 0 {
                    tracing::info!(%host, db = %change.db, generation = change.generation, failures, "agent DNS took the primary change");
                }
                return;
            }
            Ok(response) if response.status() == StatusCode::CONFLICT => return,
            Ok(response) => format!("answered {}", response.status()),
            Err(error) => error_chain(&error),
        };
        failures += 1;
        if failures == 1 {
            tracing::warn!(%host, db = %change.db, generation = change.generation, %problem, "agent DNS did not take the primary change; retrying");
        }
        tokio::select! {
            _ = runtime.stopping.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// `POST /dns/primary-changed`: a monitor host's push.
pub async fn primary_changed(
    State(runtime): State<AgentRuntime>,
    peer: Option<Extension<PeerCertificate>>,
    Json(change): Json<PrimaryChanged>,
) -> (StatusCode, Json<serde_json::Value>) {
    let fingerprint = peer.map(|p| p.fingerprint.clone()).unwrap_or_default();
    match runtime.dns.apply_change(&change, &fingerprint) {
        Ok(()) => {
            tracing::info!(db = %change.db, new_primary = %change.new_primary, generation = change.generation, "primary change applied to this agent's DNS");
            (StatusCode::OK, Json(serde_json::json!({"applied": true})))
        }
        Err(Refusal::Stranger) => {
            tracing::warn!(db = %change.db, client = %fingerprint, generation = change.generation, "refused a primary change from a host that does not run the database's monitor");
            let error = format!(
                "this client is not the host of the monitor of {:?}",
                change.db
            );
            (
                StatusCode::FORBIDDEN,
                Json(serde_json::json!({"error": error})),
            )
        }
        Err(Refusal::Stale { current }) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!("generation {} is not newer than {current}", change.generation),
                "current_generation": current,
            })),
        ),
        Err(Refusal::UnknownDatabase) => (
            StatusCode::NOT_FOUND,
            Json(
                serde_json::json!({"error": format!("database {:?} is not in this agent's zone", change.db)}),
            ),
        ),
        Err(Refusal::UnknownNode) => (
            StatusCode::NOT_FOUND,
            Json(
                serde_json::json!({"error": format!("node {:?} is not a data node of {:?} in this agent's zone", change.new_primary, change.db)}),
            ),
        ),
    }
}
