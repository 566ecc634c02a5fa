//! `Backup`: a pgBackRest backup of a database with a backup policy. The
//! task chooses the node (a healthy streaming standby when there is one:
//! `--backup-standby` copies its files and only asks the primary to start
//! and stop the backup; else the primary), records the request on the
//! database (`BackupIntent::run`, handed to that node's agent in its spec),
//! waits for the agent to report the run finished, and clears the request.
//! Re-running a step is safe: the agent runs a request id once.

use std::time::Duration;

use pgfleet_core::backup::{BackupRun, PgLocation};
use pgfleet_core::protocol::{InstanceObserved, InstancePhase};
use pgfleet_core::{Database, HostStatus, Node};

use super::params;
use super::wait::{self, Check};
use super::{TaskError, TaskRun};
use crate::state::AppState;

pub const STEPS: &[&str] = &[
    "choose the node to copy from",
    "run pgBackRest backup",
    "record the result",
];

/// How long a backup may run.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    let state = run.state.clone();
    let mut request: params::Backup = run.params()?;
    let task_id = run.task.id;
    for index in run.task.current_step..run.task.steps.len() {
        run.begin_step(index).await?;
        let db = run.database().await?;
        match index {
            0 => {
                if db.backup.run.as_ref().is_some_and(|r| r.id == task_id) {
                    run.finish_step(index).await?;
                    continue;
                }
                if db.backup.policy.is_none() {
                    return Err(TaskError::Refused(format!(
                        "database {:?} has no backup policy (pgfleet db backup-policy set)",
                        db.name
                    )));
                }
                let primary_location = wait_stanza_ready(&state, &db).await?;
                let chosen = choose_node(&state, &db, primary_location);
                let what = match &chosen.primary {
                    Some(_) => format!("backing up from standby {}", chosen.node),
                    None => format!("backing up from the primary {}", chosen.node),
                };
                run.message(what).await?;
                request.node = Some(chosen.node.clone());
                request.from_standby = Some(chosen.primary.is_some());
                run.task.params = params::TaskParams::Backup(request.clone()).to_json();
                let backup_run = BackupRun {
                    id: task_id,
                    kind: request.kind.clone(),
                    node: chosen.node,
                    primary: chosen.primary,
                };
                state
                    .update_database(&db.name, |db| db.backup.run = Some(backup_run))
                    .await?;
            }
            1 => {
                let Some(backup_run) = db.backup.run.clone().filter(|r| r.id == task_id) else {
                    return Err(TaskError::Refused("the backup request disappeared".into()));
                };
                let node = db.node(&backup_run.node).cloned().ok_or_else(|| {
                    TaskError::Refused(format!("node {} no longer exists", backup_run.node))
                })?;
                let label = wait_run_finished(&state, &db.name, &node, task_id).await?;
                request.label = Some(label.clone());
                run.task.params = params::TaskParams::Backup(request.clone()).to_json();
                run.message(format!("backup {label} done")).await?;
            }
            _ => clear_request(&state, &db.name, task_id).await?,
        }
        run.finish_step(index).await?;
    }
    Ok(())
}

pub async fn on_failure(run: &TaskRun, _message: &str) -> Result<(), TaskError> {
    clear_request(&run.state, &run.task.target, run.task.id).await
}

async fn clear_request(state: &AppState, db: &str, task_id: i64) -> Result<(), TaskError> {
    let current = state.store.get_database(db).await?;
    if current.is_some_and(|d| d.backup.run.as_ref().is_some_and(|r| r.id == task_id)) {
        state.update_database(db, |db| db.backup.run = None).await?;
    }
    Ok(())
}

fn observed_node(state: &AppState, db: &str, node: &Node) -> Option<InstanceObserved> {
    let (status, observed) = wait::instance(state, &node.host, db, &node.name);
    (status == HostStatus::Connected)
        .then_some(observed)
        .flatten()
}

/// Waits for the primary's agent to report the stanza made; returns where
/// the primary's files are.
async fn wait_stanza_ready(state: &AppState, db: &Database) -> Result<PgLocation, TaskError> {
    let primary = db
        .primary()
        .cloned()
        .ok_or_else(|| TaskError::Refused("the database has no primary".into()))?;
    let timeout = Duration::from_millis(state.config.step_timeout_ms);
    wait::until(state, timeout, "the primary's stanza", |state| {
        let Some(observed) = observed_node(state, &db.name, &primary) else {
            return Check::Wait;
        };
        let Some(backup) = observed.backup else {
            return Check::Wait;
        };
        match (backup.stanza_ready, backup.location, backup.error) {
            (true, Some(location), _) => Check::Done(location),
            (false, _, Some(error)) if observed.phase == InstancePhase::Running => {
                Check::Fail(format!("the stanza cannot be set up: {error}"))
            }
            _ => Check::Wait,
        }
    })
    .await
}

struct Chosen {
    node: String,
    primary: Option<PgLocation>,
}

/// A healthy streaming standby if there is one, else the primary.
fn choose_node(state: &AppState, db: &Database, primary_location: PgLocation) -> Chosen {
    let mut replicas: Vec<&Node> = db
        .replicas()
        .filter(|n| n.ready && !n.maintenance)
        .collect();
    replicas.sort_by_key(|n| n.name.clone());
    for replica in replicas {
        let Some(observed) = observed_node(state, &db.name, replica) else {
            continue;
        };
        let healthy = observed.phase == InstancePhase::Running
            && observed.is_primary == Some(false)
            && observed.wal_receiver_streaming == Some(true)
            && observed.backup.is_some_and(|b| b.location.is_some());
        if healthy {
            return Chosen {
                node: replica.name.clone(),
                primary: Some(primary_location),
            };
        }
    }
    let primary = db.primary().map(|p| p.name.clone()).unwrap_or_default();
    Chosen {
        node: primary,
        primary: None,
    }
}

/// Waits for the node's agent to report run `task_id` finished.
async fn wait_run_finished(
    state: &AppState,
    db: &str,
    node: &Node,
    task_id: i64,
) -> Result<String, TaskError> {
    let lost_limit = state.host_timeout() * 5;
    let mut lost_since: Option<tokio::time::Instant> = None;
    let what = format!("the backup on {}", node.name);
    wait::until(state, BACKUP_TIMEOUT, &what, |state| {
        let Some(observed) = observed_node(state, db, node) else {
            let since = *lost_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() > lost_limit {
                return Check::Fail(format!("host {} of {} is lost", node.host, node.name));
            }
            return Check::Wait;
        };
        lost_since = None;
        let last = observed.backup.and_then(|b| b.last_run);
        match last {
            Some(result) if result.id == task_id && result.ok => {
                Check::Done(result.label.unwrap_or_default())
            }
            Some(result) if result.id == task_id => Check::Fail(format!(
                "pgBackRest backup on {} failed: {}",
                node.name,
                result.error.unwrap_or_else(|| "unknown error".into())
            )),
            _ => Check::Wait,
        }
    })
    .await
}
