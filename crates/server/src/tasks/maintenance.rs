//! `SetMaintenance`: a node in maintenance is never a failover candidate nor
//! a synchronous standby. Putting the primary in maintenance switches over
//! to the best healthy replica first.

use std::time::Duration;

use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::NodeRole;

use super::{TaskError, TaskRun};

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    let state = run.state.clone();
    let name = run.task.target.clone();
    let super::params::SetMaintenance {
        node: node_name,
        on,
    } = run.params()?;
    for index in run.task.current_step..run.task.steps.len() {
        run.begin_step(index).await?;
        let db = run.database().await?;
        match index {
            0 => {
                let is_primary = db.primary().is_some_and(|p| p.name == node_name);
                if on && is_primary {
                    let hosts = state.store.list_hosts().await?;
                    let view = {
                        let observed = state.observed.lock().expect("observed lock");
                        let zone = state.zone.zone();
                        let ctx = crate::views::ViewContext {
                            observed: &observed,
                            hosts: &hosts,
                            host_timeout: state.host_timeout(),
                            zone: &zone,
                            unfinished: &[],
                        };
                        crate::views::database_view(&db, &ctx, false)
                    };
                    let mut candidates: Vec<_> = view
                        .nodes
                        .iter()
                        .filter(|n| n.role == NodeRole::Replica && !n.maintenance && n.priority > 0)
                        .filter(|n| {
                            matches!(n.replication_status, Some(ReplicationStatus::Active))
                                && n.ha_state.as_deref() == Some("secondary")
                        })
                        .collect();
                    candidates
                        .sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
                    let target = candidates.first().map(|n| n.name.clone()).ok_or_else(|| {
                        TaskError::Refused(format!(
                            "{node_name} is the primary and no healthy replica can take over"
                        ))
                    })?;
                    run.message(format!("switching over to {target}")).await?;
                    super::switchover::ask_monitor(&state, &db, &target).await?;
                    super::switchover::wait_primary(
                        &state,
                        &name,
                        &target,
                        Duration::from_secs(60),
                    )
                    .await?;
                }
            }
            _ => {
                let node = node_name.clone();
                state
                    .update_database(&name, |db| {
                        if let Some(n) = db.node_mut(&node) {
                            n.maintenance = on;
                        }
                    })
                    .await?;
            }
        }
        run.finish_step(index).await?;
    }
    Ok(())
}
