//! `PromoteReplica` asked by a user: a planned switchover. The monitor drives
//! it (the old primary drains, the target catches up to its last LSN and is
//! promoted, the old primary follows); this task asks for it and waits.

use std::time::Duration;

use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::{Database, HostStatus, NodeRole};

use super::params::{PromoteReplica, TaskParams};
use super::wait::{self, Check};
use super::{TaskError, TaskRun};
use crate::state::AppState;

/// Asks the database's monitor to switch over to `target`.
pub async fn ask_monitor(state: &AppState, db: &Database, target: &str) -> Result<(), TaskError> {
    let monitor = db
        .monitor()
        .ok_or_else(|| TaskError::Refused(format!("database {:?} has no monitor", db.name)))?;
    let hosts = state.store.list_hosts().await?;
    let port = hosts
        .iter()
        .find(|h| h.name == monitor.host)
        .map(|h| h.agent_port)
        .unwrap_or(7071);
    if state.host_status(&monitor.host) != HostStatus::Connected {
        return Err(TaskError::Refused(format!(
            "the monitor's host {} is not connected",
            monitor.host
        )));
    }
    let url = format!(
        "https://{}:{}/monitor/{}/switchover",
        monitor.address, port, db.name
    );
    let response = state
        .http
        .post(&url)
        .bearer_auth(&db.monitor_token)
        .json(&serde_json::json!({"target": target}))
        .send()
        .await
        .map_err(|e| TaskError::Refused(format!("cannot reach the monitor: {e}")))?;
    if !response.status().is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"]
            .as_str()
            .unwrap_or("the monitor refused the switchover")
            .to_string();
        return Err(TaskError::Refused(message));
    }
    Ok(())
}

/// Waits until the stored primary is `target` (the monitor's push moves it).
pub async fn wait_primary(
    state: &AppState,
    name: &str,
    target: &str,
    timeout: Duration,
) -> Result<(), TaskError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let db = state
            .store
            .get_database(name)
            .await?
            .ok_or_else(|| TaskError::Refused(format!("database {name:?} no longer exists")))?;
        if db.primary().is_some_and(|p| p.name == target) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(TaskError::Refused(format!(
                "{target} did not become primary within {}s; the monitor kept the old primary",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    let state = run.state.clone();
    let name = run.task.target.clone();
    let mut params: PromoteReplica = run.params()?;
    let target = params
        .node
        .clone()
        .ok_or_else(|| TaskError::Refused("task has no node".into()))?;
    let old_primary = match params.old_primary.clone() {
        Some(old) => old,
        None => {
            let db =
                state.store.get_database(&name).await?.ok_or_else(|| {
                    TaskError::Refused(format!("database {name:?} no longer exists"))
                })?;
            let old = db.primary().map(|p| p.name.clone()).unwrap_or_default();
            params.old_primary = Some(old.clone());
            run.task.params = TaskParams::PromoteReplica(params).to_json();
            old
        }
    };
    for index in run.task.current_step..run.task.steps.len() {
        run.begin_step(index).await?;
        let db = run.database().await?;
        match index {
            0 => {
                if db.primary().is_some_and(|p| p.name != target) {
                    // The API checked the target; the monitor may still be a
                    // report behind (e.g. a node that just caught up): retry briefly.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                    loop {
                        match ask_monitor(&state, &db, &target).await {
                            Ok(()) => break,
                            Err(error) if tokio::time::Instant::now() < deadline => {
                                tracing::debug!(%error, "switchover not accepted yet");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
            }
            1 => wait_primary(&state, &name, &target, Duration::from_secs(60)).await?,
            _ => {
                let Some(old) = db.node(&old_primary).cloned() else {
                    break;
                };
                let followed = wait::until(
                    &state,
                    Duration::from_secs(30),
                    "the old primary to follow",
                    |state| {
                        let hosts = Vec::new();
                        let observed = state.observed.lock().expect("observed lock");
                        let zone = state.zone.zone();
                        let ctx = crate::views::ViewContext {
                            observed: &observed,
                            hosts: &hosts,
                            host_timeout: state.host_timeout(),
                            zone: &zone,
                            unfinished: &[],
                        };
                        let view = crate::views::database_view(&db, &ctx, false);
                        let node = view.nodes.iter().find(|n| n.name == old.name);
                        match node {
                            Some(n)
                                if n.role == NodeRole::Replica
                                    && matches!(
                                        n.replication_status,
                                        Some(ReplicationStatus::Active)
                                    ) =>
                            {
                                Check::Done(())
                            }
                            _ => Check::Wait,
                        }
                    },
                )
                .await;
                if followed.is_err() {
                    run.message(format!(
                        "{old_primary} has not rejoined yet; the monitor keeps trying"
                    ))
                    .await?;
                }
            }
        }
        run.finish_step(index).await?;
    }
    Ok(())
}
