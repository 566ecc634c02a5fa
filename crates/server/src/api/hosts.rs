//! `GET /api/v1/hosts`

use axum::extract::State;
use axum::Json;
use pgfleet_core::api::HostView;
use pgfleet_core::Desired;

use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/hosts", responses((status = 200, body = [HostView])), security(("token" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<HostView>>, ApiError> {
    let hosts = state.store.list_hosts().await?;
    let databases = state.store.list_databases().await?;
    let observed = state.observed.lock().expect("observed lock");
    let mut views = Vec::with_capacity(hosts.len());
    for host in hosts {
        let mut instances = Vec::new();
        for db in &databases {
            for node in &db.nodes {
                if node.host == host.name && node.desired != Desired::Deleted {
                    instances.push(format!("{}/{}", db.name, node.name));
                }
            }
        }
        let obs = observed.hosts.get(&host.name);
        views.push(HostView {
            status: observed.host_status(&host.name, state.host_timeout()),
            last_heartbeat_ms: obs.map(|o| o.last_seen_ms),
            pg_version: obs.map(|o| o.pg_version),
            name: host.name,
            address: host.address,
            failure_domain: host.failure_domain,
            instances,
        });
    }
    Ok(Json(views))
}
