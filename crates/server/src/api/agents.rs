//! Agent endpoints: heartbeats (observation in, intent out) and the monitor's
//! push when it changed the primary.

use axum::extract::State;
use axum::Json;
use pgfleet_core::protocol::{HeartbeatRequest, HeartbeatResponse, HostRegistration};
use pgfleet_core::time::now_ms;
use pgfleet_core::Host;

use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/agents/heartbeat", request_body = HeartbeatRequest, responses((status = 200, body = HeartbeatResponse)), security(("token" = [])))]
pub async fn heartbeat(
    State(state): State<AppState>,
    axum::Extension(crate::auth::AgentHost(agent_host)): axum::Extension<crate::auth::AgentHost>,
    crate::api::ApiJson(beat): crate::api::ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    if beat.host.name != agent_host {
        return Err(ApiError::forbidden(format!(
            "this credential belongs to host {agent_host:?}, not {:?}",
            beat.host.name
        )));
    }
    validate_registration(&beat.host)?;
    let hosts = state.store.list_hosts().await?;
    let known = hosts.iter().find(|h| h.name == beat.host.name);
    check_binding(&state, &beat.host, known).await?;
    let changed = match known {
        None => true,
        Some(h) => {
            h.address != beat.host.address
                || h.failure_domain != beat.host.failure_domain
                || h.agent_port != beat.host.agent_port
        }
    };
    if changed {
        let host = Host {
            name: beat.host.name.clone(),
            address: beat.host.address.clone(),
            failure_domain: beat.host.failure_domain.clone(),
            agent_port: beat.host.agent_port,
            registered_at_ms: known.map(|h| h.registered_at_ms).unwrap_or_else(now_ms),
        };
        state.store.put_host(&host).await?;
        tracing::info!(host = %host.name, address = %host.address, "host registered");
    }
    let was_connected = state.host_status(&beat.host.name) == pgfleet_core::HostStatus::Connected;
    state
        .observed
        .lock()
        .expect("observed lock")
        .record(&beat, now_ms());
    if !was_connected {
        tracing::info!(host = %beat.host.name, "host connected");
    }
    state.observation_changed.notify_waiters();
    reconcile_primaries(&state, &beat).await;
    let hosts = state.store.list_hosts().await?;
    let databases = state.store.list_databases().await?;
    let (mut instances, mut monitors) =
        crate::specs::host_intent(&databases, &hosts, &beat.host.name);
    crate::backup::attach_s3(&state, &databases, &mut instances).await?;
    let pg_client = crate::tls::pg_client_tls(&state, &beat.host.name).await?;
    for spec in instances.iter_mut() {
        let mut tls =
            crate::tls::node_certificate(&state, &spec.db, &spec.node, &spec.address).await?;
        tls.client = Some(pg_client.clone());
        spec.tls = Some(tls);
    }
    for spec in monitors.iter_mut() {
        spec.clients = monitor_clients(&state, &databases, &spec.db);
        spec.pg_tls = Some(pg_client.clone());
    }
    {
        let mut observed = state.observed.lock().expect("observed lock");
        for spec in monitors
            .iter()
            .filter(|m| m.desired == pgfleet_core::Desired::Deleted)
        {
            let key = (beat.host.name.clone(), spec.db.clone());
            observed
                .monitor_deletions_sent
                .insert(key, std::time::Instant::now());
        }
    }
    let renew_certificate = state
        .identities
        .certificate(&beat.host.name)
        .is_some_and(|c| c.due_for_renewal(now_ms()));
    let zone = crate::zone_snapshot::current(&state, &databases, &hosts);
    Ok(Json(HeartbeatResponse {
        instances,
        monitors,
        heartbeat_interval_ms: state.config.heartbeat_interval_ms,
        renew_certificate,
        zone: (zone.digest != beat.zone_digest).then_some(zone),
    }))
}

/// A heartbeat must carry the address and failure domain its host's join
/// bound (or, for a host that joined before bindings, its stored record);
/// what is still open is bound now.
async fn check_binding(
    state: &AppState,
    host: &HostRegistration,
    known: Option<&Host>,
) -> Result<(), ApiError> {
    let binding = state.identities.binding(&host.name).unwrap_or_default();
    let address = binding
        .address
        .clone()
        .or_else(|| known.map(|h| h.address.clone()));
    let failure_domain = binding
        .failure_domain
        .clone()
        .or_else(|| known.map(|h| h.failure_domain.clone()));
    if let Some(bound) = address.filter(|a| *a != host.address) {
        return Err(ApiError::conflict(format!(
            "host {:?} is bound to address {bound}, not {}: remove the host and join it again to move it",
            host.name, host.address
        )));
    }
    if let Some(bound) = failure_domain.filter(|f| *f != host.failure_domain) {
        return Err(ApiError::conflict(format!(
            "host {:?} is bound to failure domain {bound:?}, not {:?}: remove the host and join it again to move it",
            host.name, host.failure_domain
        )));
    }
    if binding.address.is_none() || binding.failure_domain.is_none() {
        crate::api::agent_identity::check_host_address(
            &host.address,
            state.config.api_addr,
            state.config.dns_addr,
        )?;
        state
            .identities
            .bind(
                state.store.as_ref(),
                &host.name,
                &host.address,
                &host.failure_domain,
            )
            .await?;
    }
    Ok(())
}

/// Who may call the monitor of `db`: the current (and renewed) certificates of the hosts
/// of its data nodes, and the control plane.
fn monitor_clients(
    state: &AppState,
    databases: &[pgfleet_core::Database],
    db: &str,
) -> Vec<String> {
    let mut clients = vec![state.client_fingerprint.clone()];
    if let Some(db) = databases.iter().find(|d| d.name == db) {
        let data_nodes = db
            .nodes
            .iter()
            .filter(|n| n.role != pgfleet_core::NodeRole::Monitor);
        for node in data_nodes {
            for fingerprint in state.identities.fingerprints(&node.host) {
                if !clients.contains(&fingerprint) {
                    clients.push(fingerprint);
                }
            }
        }
    }
    clients
}

/// Checks what a heartbeat says about its host (pure): a valid host name and an IPv4
/// address.
pub fn validate_registration(host: &HostRegistration) -> Result<(), ApiError> {
    pgfleet_core::names::validate_name(&host.name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if host.address.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(ApiError::bad_request(format!(
            "host address {:?} is not an IPv4 address",
            host.address
        )));
    }
    Ok(())
}

pub use pgfleet_core::protocol::PrimaryChanged;

#[utoipa::path(post, path = "/api/v1/agents/primary-changed", request_body = PrimaryChanged, responses((status = 200, body = pgfleet_core::api::TaskRef)), security(("token" = [])))]
pub async fn primary_changed(
    State(state): State<AppState>,
    axum::Extension(crate::auth::AgentHost(agent_host)): axum::Extension<crate::auth::AgentHost>,
    crate::api::ApiJson(change): crate::api::ApiJson<PrimaryChanged>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Only the host that runs the database's monitor may move its primary.
    let db = state
        .store
        .get_database(&change.db)
        .await?
        .ok_or_else(|| ApiError::not_found("database", &change.db))?;
    if db.monitor().is_none_or(|m| m.host != agent_host) {
        return Err(ApiError::forbidden(format!(
            "host {agent_host:?} does not run the monitor of {:?}",
            change.db
        )));
    }
    let applied = crate::tasks::failover_recorder::record_primary_change(&state, &change).await?;
    Ok(Json(
        serde_json::json!({"applied": applied.is_some(), "task_id": applied}),
    ))
}

/// The reconcile poll: a monitor's heartbeat says which node it made primary;
/// if the stored metadata disagrees (a push was lost), apply it now.
async fn reconcile_primaries(state: &AppState, beat: &HeartbeatRequest) {
    for monitor in &beat.monitors {
        let Some(primary) = &monitor.primary else {
            continue;
        };
        let Ok(Some(db)) = state.store.get_database(&monitor.db).await else {
            continue;
        };
        // Only the current monitor counts: a retired one (replaced while its
        // host was lost) is another node, and its generations are older.
        let is_monitor_host = db
            .monitor()
            .is_some_and(|m| m.host == beat.host.name && m.name == monitor.node);
        if !is_monitor_host || monitor.primary_generation <= db.ha_generation {
            continue;
        }
        // The monitor's own record of the change (its times, LSNs and
        // reason) when it is the one reported; else what the beat says.
        let recorded = monitor
            .last_change
            .clone()
            .filter(|c| c.generation == monitor.primary_generation && c.new_primary == *primary);
        let change = recorded.unwrap_or_else(|| PrimaryChanged {
            db: monitor.db.clone(),
            old_primary: db.primary().map(|p| p.name.clone()),
            new_primary: primary.clone(),
            generation: monitor.primary_generation,
            reason: "failover".into(),
            old_lsn: None,
            new_lsn: None,
            detected_at_ms: None,
            promoted_at_ms: None,
        });
        if let Err(error) =
            crate::tasks::failover_recorder::record_primary_change(state, &change).await
        {
            tracing::warn!(db = %monitor.db, error = ?error.message, "cannot apply the monitor's primary");
        }
    }
}
