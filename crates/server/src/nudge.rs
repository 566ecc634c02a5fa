//! Nudging agents: agents pull their intent with every heartbeat; when a
//! database's intent changed (a task placed a node, a node is to stop), its
//! hosts are asked to beat now (`POST /intent-changed` on their agent
//! endpoint, with the control plane's client certificate) rather than at
//! their next interval. Best effort: a lost nudge costs one interval.

use std::time::Duration;

use crate::state::AppState;

/// The agent endpoint's route.
pub const ROUTE: &str = "/intent-changed";

/// Asks the agents of `hosts` to beat now.
pub async fn hosts(state: &AppState, hosts: &[String]) {
    let Ok(known) = state.store.list_hosts().await else {
        return;
    };
    for host in known.iter().filter(|h| hosts.contains(&h.name)) {
        let url = format!("https://{}:{}{ROUTE}", host.address, host.agent_port);
        let request = state.http.post(url).timeout(Duration::from_millis(500));
        let name = host.name.clone();
        tokio::spawn(async move {
            if let Err(error) = request.send().await {
                tracing::debug!(host = %name, %error, "agent not nudged");
            }
        });
    }
}
