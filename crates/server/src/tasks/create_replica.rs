//! `CreateReplica`: place the replicas (one, or several asked for at once,
//! each on a host of its own) and, with the first replicas, the monitor, on
//! hosts without a node of the database, in one store write; wait for the
//! monitor to run and for every replica to clone and stream (they clone in
//! parallel), then mark them ready.
//! If anything fails, the new nodes are removed again: nothing changes.

use std::time::Duration;

use pgfleet_core::placement::place;
use pgfleet_core::protocol::InstancePhase;
use pgfleet_core::time::now_ms;
use pgfleet_core::{DbStatus, Desired, HostStatus, Node, NodeRole};

use super::create_database::{candidates, data_node_request, host_address, request_for};
use super::wait::{self, Check};
use super::{TaskError, TaskRun};

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    let state = run.state.clone();
    let name = run.task.target.clone();
    let super::params::CreateReplica {
        node: first,
        priority,
        more,
    } = run.params()?;
    let names: Vec<String> = std::iter::once(first).chain(more).collect();
    let step_timeout = Duration::from_millis(state.config.step_timeout_ms);
    for index in run.task.current_step..run.task.steps.len() {
        run.begin_step(index).await?;
        let db = run.database().await?;
        match index {
            0 => {
                // All placed in one write below: present means placed.
                if db.node(&names[0]).is_some() {
                    run.finish_step(index).await?;
                    continue;
                }
                let hosts = candidates(&state).await?;
                let mut placed: Vec<(String, String, String)> = Vec::new();
                let mut taken: Vec<String> = Vec::new();
                for node_name in &names {
                    let request = data_node_request(&state, &db, &taken).await?;
                    let host =
                        place(&hosts, &request).map_err(|e| TaskError::Refused(e.to_string()))?;
                    let address = host_address(&state, &host).await?;
                    taken.push(host.clone());
                    placed.push((node_name.clone(), host, address));
                }
                let mut monitor_host = None;
                if db.monitor().is_none() {
                    let request = request_for(&state, &db, &taken).await?;
                    monitor_host = Some(
                        place(&hosts, &request).map_err(|e| TaskError::Refused(e.to_string()))?,
                    );
                }
                let monitor_address = match &monitor_host {
                    Some(host) => Some(host_address(&state, host).await?),
                    None => None,
                };
                let placing: Vec<String> = placed
                    .iter()
                    .map(|(node, host, _)| format!("{node} on {host}"))
                    .collect();
                run.message(format!("placing {}", placing.join(", ")))
                    .await?;
                state
                    .update_database(&name, |db| {
                        db.status = DbStatus::Modifying;
                        if let (Some(host), Some(address)) =
                            (monitor_host.clone(), monitor_address.clone())
                        {
                            db.nodes.push(Node {
                                name: format!("{}-monitor", db.name),
                                role: NodeRole::Monitor,
                                host,
                                address,
                                port: 0,
                                desired: Desired::Running,
                                priority: 0,
                                maintenance: false,
                                ready: false,
                                removing: false,
                                created_at_ms: now_ms(),
                            });
                        }
                        let port = db.port;
                        for (node_name, host, address) in &placed {
                            db.nodes.push(Node {
                                name: node_name.clone(),
                                role: NodeRole::Replica,
                                host: host.clone(),
                                address: address.clone(),
                                port,
                                desired: Desired::Running,
                                priority,
                                maintenance: false,
                                ready: false,
                                removing: false,
                                created_at_ms: now_ms(),
                            });
                        }
                    })
                    .await?;
            }
            1 => {
                if let Some(monitor) = db.monitor().cloned() {
                    if !monitor.ready {
                        let db_name = name.clone();
                        wait::until(&state, step_timeout, "the monitor to start", |state| {
                            let observed = state.observed.lock().expect("observed lock");
                            if observed.host_status(&monitor.host, state.host_timeout())
                                != HostStatus::Connected
                            {
                                return Check::Wait;
                            }
                            match observed.monitor(&monitor.host, &db_name) {
                                Some(m) if m.running => Check::Done(()),
                                _ => Check::Wait,
                            }
                        })
                        .await?;
                    }
                }
            }
            2 => {
                // They clone in parallel; waiting for each in turn costs
                // no more than the slowest.
                for node_name in &names {
                    let replica = db
                        .node(node_name)
                        .cloned()
                        .ok_or_else(|| TaskError::Refused(format!("node {node_name:?} missing")))?;
                    wait::until(
                        &state,
                        step_timeout,
                        &format!("{node_name} to clone and stream"),
                        |state| {
                            let (status, observed) =
                                wait::instance(state, &replica.host, &db.name, &replica.name);
                            if status != HostStatus::Connected {
                                return Check::Wait;
                            }
                            match observed {
                                Some(obs)
                                    if obs.phase == InstancePhase::Running
                                        && obs.wal_receiver_streaming == Some(true) =>
                                {
                                    Check::Done(())
                                }
                                Some(obs) if obs.phase == InstancePhase::Failed => {
                                    Check::Fail(format!(
                                        "{} on {} failed: {}",
                                        replica.name,
                                        replica.host,
                                        obs.error.unwrap_or_default()
                                    ))
                                }
                                _ => Check::Wait,
                            }
                        },
                    )
                    .await?;
                }
            }
            _ => {
                state
                    .update_database(&name, |db| {
                        for node in db.nodes.iter_mut() {
                            if node.desired != Desired::Deleted {
                                node.ready = true;
                            }
                        }
                        db.status = DbStatus::Online;
                    })
                    .await?;
            }
        }
        run.finish_step(index).await?;
    }
    Ok(())
}

/// Removes the nodes this task added (the agents clean their data up) and
/// puts the database back online.
pub async fn on_failure(run: &TaskRun, _message: &str) -> Result<(), TaskError> {
    run.state
        .update_database(&run.task.target, |db| {
            for node in db.nodes.iter_mut() {
                if !node.ready {
                    node.desired = Desired::Deleted;
                }
            }
            db.status = DbStatus::Online;
        })
        .await?;
    Ok(())
}
