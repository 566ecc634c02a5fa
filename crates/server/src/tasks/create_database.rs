//! `CreateDatabase`: place the primary, let its agent initialise and start
//! PostgreSQL, then publish DNS and mark the database online.

use std::time::Duration;

use pgfleet_core::placement::{place, HostCandidate, PlacementRequest};
use pgfleet_core::protocol::InstancePhase;
use pgfleet_core::time::now_ms;
use pgfleet_core::{Database, DbStatus, Desired, HostStatus, Node, NodeRole};

use super::wait::{self, Check};
use super::{TaskError, TaskRun};
use crate::state::AppState;

/// Host candidates with their current instance counts. Right after a
/// control-plane restart every host is `unknown` until it beats again:
/// wait a few heartbeat timeouts for them rather than place on no host.
pub async fn candidates(state: &AppState) -> Result<Vec<HostCandidate>, TaskError> {
    let deadline = tokio::time::Instant::now() + state.host_timeout() * 3;
    loop {
        let hosts = state.store.list_hosts().await?;
        let unknown = hosts
            .iter()
            .any(|h| state.host_status(&h.name) == HostStatus::Unknown);
        if !unknown || tokio::time::Instant::now() >= deadline {
            break;
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(250),
            state.observation_changed.notified(),
        )
        .await;
    }
    current_candidates(state).await
}

async fn current_candidates(state: &AppState) -> Result<Vec<HostCandidate>, TaskError> {
    let hosts = state.store.list_hosts().await?;
    let databases = state.store.list_databases().await?;
    let mut out = Vec::with_capacity(hosts.len());
    for host in hosts {
        let mut instances = 0;
        for db in &databases {
            instances += db
                .nodes
                .iter()
                .filter(|n| n.host == host.name && n.desired != Desired::Deleted)
                .count();
        }
        out.push(HostCandidate {
            connected: state.host_status(&host.name) == HostStatus::Connected,
            pg_version: state.pg_version_of(&host.name),
            name: host.name,
            failure_domain: host.failure_domain,
            instances,
        });
    }
    Ok(out)
}

/// The placement request for a data node of `db`: apart from its other
/// nodes, on a host of its major version.
pub async fn data_node_request(
    state: &AppState,
    db: &Database,
    extra_hosts: &[String],
) -> Result<PlacementRequest, TaskError> {
    let mut request = request_for(state, db, extra_hosts).await?;
    request.version = Some(db.version);
    Ok(request)
}

/// The placement request that keeps `db`'s nodes apart (any version: for
/// its monitor).
pub async fn request_for(
    state: &AppState,
    db: &Database,
    extra_hosts: &[String],
) -> Result<PlacementRequest, TaskError> {
    let hosts = state.store.list_hosts().await?;
    let mut request = PlacementRequest {
        database: db.name.clone(),
        ..Default::default()
    };
    for node in db.nodes.iter().filter(|n| n.desired != Desired::Deleted) {
        request.hosts_in_use.push(node.host.clone());
    }
    request.hosts_in_use.extend(extra_hosts.iter().cloned());
    for host_name in request.hosts_in_use.clone() {
        if let Some(host) = hosts.iter().find(|h| h.name == host_name) {
            request.domains_in_use.push(host.failure_domain.clone());
        }
    }
    Ok(request)
}

pub async fn host_address(state: &AppState, host: &str) -> Result<String, TaskError> {
    let hosts = state.store.list_hosts().await?;
    hosts
        .into_iter()
        .find(|h| h.name == host)
        .map(|h| h.address)
        .ok_or_else(|| TaskError::Refused(format!("host {host:?} not found")))
}

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    let state = run.state.clone();
    let name = run.task.target.clone();
    for index in run.task.current_step..run.task.steps.len() {
        run.begin_step(index).await?;
        let db = run.database().await?;
        match index {
            0 => {
                if db.primary().is_none() {
                    let request = data_node_request(&state, &db, &[]).await?;
                    let host = place(&candidates(&state).await?, &request)
                        .map_err(|e| TaskError::Refused(e.to_string()))?;
                    let address = host_address(&state, &host).await?;
                    run.message(format!("placing primary on {host}")).await?;
                    state
                        .update_database(&name, |db| {
                            db.nodes.push(Node {
                                name: db.name.clone(),
                                role: NodeRole::Primary,
                                host: host.clone(),
                                address: address.clone(),
                                port: db.port,
                                desired: Desired::Running,
                                priority: 50,
                                maintenance: false,
                                ready: false,
                                removing: false,
                                created_at_ms: now_ms(),
                            });
                        })
                        .await?;
                }
            }
            1 => {
                let primary = db
                    .primary()
                    .cloned()
                    .ok_or_else(|| TaskError::Refused("primary node missing".into()))?;
                wait_running(
                    &state,
                    &primary.host,
                    &db.name,
                    &primary.name,
                    Duration::from_millis(state.config.step_timeout_ms),
                )
                .await?;
            }
            _ => {
                state
                    .update_database(&name, |db| {
                        for node in db.nodes.iter_mut() {
                            node.ready = true;
                        }
                        db.status = DbStatus::Online;
                        db.error = None;
                    })
                    .await?;
            }
        }
        run.finish_step(index).await?;
    }
    Ok(())
}

/// Waits until the agent reports the instance running (or failed).
pub async fn wait_running(
    state: &AppState,
    host: &str,
    db: &str,
    node: &str,
    timeout: Duration,
) -> Result<(), TaskError> {
    let host_timeout = state.host_timeout() * 5;
    let mut lost_since: Option<tokio::time::Instant> = None;
    wait::until(
        state,
        timeout,
        &format!("{node} to start on {host}"),
        |state| {
            let (status, observed) = wait::instance(state, host, db, node);
            if status != HostStatus::Connected {
                let since = *lost_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > host_timeout {
                    return Check::Fail(format!("host {host} is lost"));
                }
                return Check::Wait;
            }
            lost_since = None;
            match observed {
                Some(obs) if obs.phase == InstancePhase::Running => Check::Done(()),
                Some(obs) if obs.phase == InstancePhase::Failed => Check::Fail(format!(
                    "{node} on {host} failed: {}",
                    obs.error.unwrap_or_else(|| "unknown error".into())
                )),
                _ => Check::Wait,
            }
        },
    )
    .await
}

pub async fn on_failure(run: &TaskRun, message: &str) -> Result<(), TaskError> {
    let message = message.to_string();
    run.state
        .update_database(&run.task.target, |db| {
            db.status = DbStatus::Failed;
            db.error = Some(message);
        })
        .await?;
    Ok(())
}
