//! `DeleteReplica`: scale down. The replica first leaves the monitor's and
//! the primary's view (so no synchronous standby name is left that would
//! block commits), then its agent stops it and removes its data. Deleting the
//! last replica also removes the monitor: HA status back to unconfigured.

use std::time::Duration;

use pgfleet_core::protocol::InstancePhase;
use pgfleet_core::{Desired, HostStatus, NodeRole};

use super::wait::{self, Check};
use super::{TaskError, TaskRun};

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    let state = run.state.clone();
    let name = run.task.target.clone();
    let super::params::DeleteReplica { node: node_name } = run.params()?;
    let grace = state.host_timeout() * 5;
    for index in run.task.current_step..run.task.steps.len() {
        run.begin_step(index).await?;
        let db = run.database().await?;
        match index {
            0 => {
                let node = node_name.clone();
                state
                    .update_database(&name, |db| {
                        if let Some(n) = db.node_mut(&node) {
                            n.removing = true;
                        }
                    })
                    .await?;
                let Some(primary) = db.primary().cloned() else {
                    run.finish_step(index).await?;
                    continue;
                };
                let quoted = format!("\"{node_name}\"");
                let mut since_lost: Option<tokio::time::Instant> = None;
                wait::until(
                    &state,
                    Duration::from_secs(30),
                    "the primary to drop the replica from its synchronous set",
                    |state| {
                        let (status, observed) =
                            wait::instance(state, &primary.host, &name, &primary.name);
                        if status != HostStatus::Connected {
                            // Nothing to wait for on a primary we cannot see.
                            let since = *since_lost.get_or_insert_with(tokio::time::Instant::now);
                            return if since.elapsed() > grace {
                                Check::Done(())
                            } else {
                                Check::Wait
                            };
                        }
                        match observed.and_then(|o| o.sync_standby_names) {
                            Some(names) if names.contains(&quoted) => Check::Wait,
                            _ => Check::Done(()),
                        }
                    },
                )
                .await?;
            }
            1 => {
                let node = node_name.clone();
                state
                    .update_database(&name, |db| {
                        if let Some(n) = db.node_mut(&node) {
                            n.desired = Desired::Deleted;
                        }
                    })
                    .await?;
                let Some(replica) = db.node(&node_name).cloned() else {
                    run.finish_step(index).await?;
                    continue;
                };
                wait_deleted(
                    &state,
                    &replica.host,
                    &replica.name,
                    NodeRole::Replica,
                    &name,
                    grace,
                )
                .await?;
                let node = node_name.clone();
                state
                    .update_database(&name, |db| db.nodes.retain(|n| n.name != node))
                    .await?;
            }
            _ => {
                let replicas_left = db.replicas().count();
                if replicas_left == 0 {
                    if let Some(monitor) = db.monitor().cloned() {
                        state
                            .update_database(&name, |db| {
                                if let Some(m) = db.node_mut(&monitor.name) {
                                    m.desired = Desired::Deleted;
                                }
                            })
                            .await?;
                        wait_deleted(
                            &state,
                            &monitor.host,
                            &monitor.name,
                            NodeRole::Monitor,
                            &name,
                            grace,
                        )
                        .await?;
                        state
                            .update_database(&name, |db| {
                                db.nodes.retain(|n| n.name != monitor.name)
                            })
                            .await?;
                    }
                }
            }
        }
        run.finish_step(index).await?;
    }
    Ok(())
}

async fn wait_deleted(
    state: &crate::state::AppState,
    host: &str,
    node: &str,
    role: NodeRole,
    db: &str,
    grace: Duration,
) -> Result<(), TaskError> {
    let mut since_lost: Option<tokio::time::Instant> = None;
    wait::until(
        state,
        Duration::from_millis(state.config.step_timeout_ms),
        &format!("{node} to be removed"),
        |state| {
            let observed = state.observed.lock().expect("observed lock");
            if observed.host_status(host, state.host_timeout()) != HostStatus::Connected {
                let since = *since_lost.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > grace {
                    return Check::Fail(format!(
                        "host {host} is lost: {node} is removed when the host is back"
                    ));
                }
                return Check::Wait;
            }
            let gone = match role {
                NodeRole::Monitor => observed.monitor(host, db).is_none(),
                _ => observed
                    .instance(host, db, node)
                    .is_none_or(|i| i.phase == InstancePhase::Deleted),
            };
            if gone {
                Check::Done(())
            } else {
                Check::Wait
            }
        },
    )
    .await
}

/// A failed scale-down leaves the node marked deleted (the agent removes it
/// when it can); the database itself stays as it is.
pub async fn on_failure(_run: &TaskRun, _message: &str) -> Result<(), TaskError> {
    Ok(())
}
