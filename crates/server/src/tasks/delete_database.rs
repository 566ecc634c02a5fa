//! `DeleteDatabase`: mark every node deleted, wait for the agents to stop the
//! servers and remove their data, then drop the record and its DNS names.

use std::time::Duration;

use pgfleet_core::protocol::InstancePhase;
use pgfleet_core::{DbStatus, Desired, HostStatus, NodeRole};

use super::wait::{self, Check};
use super::{TaskError, TaskRun};

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    let state = run.state.clone();
    let name = run.task.target.clone();
    for index in run.task.current_step..run.task.steps.len() {
        run.begin_step(index).await?;
        match index {
            0 => {
                state
                    .update_database(&name, |db| {
                        db.status = DbStatus::Deleting;
                        for node in db.nodes.iter_mut() {
                            node.desired = Desired::Deleted;
                        }
                    })
                    .await?;
            }
            1 => {
                let Some(db) = state.store.get_database(&name).await? else {
                    break;
                };
                let lost_grace = state.host_timeout() * 5;
                let mut lost_since: Option<tokio::time::Instant> = None;
                let nodes = db.nodes.clone();
                wait::until(&state, Duration::from_millis(state.config.step_timeout_ms), "agents to remove the data", |state| {
                    let observed = state.observed.lock().expect("observed lock");
                    let mut pending = Vec::new();
                    for node in &nodes {
                        let status = observed.host_status(&node.host, state.host_timeout());
                        if status != HostStatus::Connected {
                            let since = *lost_since.get_or_insert_with(tokio::time::Instant::now);
                            if since.elapsed() > lost_grace {
                                return Check::Fail(format!(
                                    "host {} is lost: the data of {} cannot be removed now; run delete again when the host is back",
                                    node.host, node.name
                                ));
                            }
                            pending.push(node.name.clone());
                            continue;
                        }
                        let done = if node.role == NodeRole::Monitor {
                            observed.monitor(&node.host, &name).is_none()
                        } else {
                            observed.instance(&node.host, &name, &node.name).is_none_or(|i| i.phase == InstancePhase::Deleted)
                        };
                        if !done {
                            pending.push(node.name.clone());
                        }
                    }
                    if pending.is_empty() {
                        Check::Done(())
                    } else {
                        Check::Wait
                    }
                })
                .await?;
            }
            _ => {
                state.store.delete_database(&name).await?;
                crate::dns_sync::publish(&state)
                    .await
                    .map_err(|e| TaskError::Refused(format!("dns update failed: {e}")))?;
            }
        }
        run.finish_step(index).await?;
    }
    Ok(())
}

pub async fn on_failure(run: &TaskRun, message: &str) -> Result<(), TaskError> {
    let message = message.to_string();
    run.state
        .update_database(&run.task.target, |db| {
            db.error = Some(message);
        })
        .await?;
    Ok(())
}
