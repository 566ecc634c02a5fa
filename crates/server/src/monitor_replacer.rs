//! The monitor-replacement reconciler: a loop (every [`PASS_INTERVAL`]) that submits a
//! `ReplaceMonitor` task for each database whose monitor's host has been
//! `lost` for longer than `--monitor-replace-after-secs`, or is no longer a
//! host of the fleet. [`decide`] is the pure decision; [`run`] the loop.
//!
//! Submission is the store's one-transaction `submit_task_if_idle`, so two
//! passes never queue two tasks; a database busy with another task is
//! retried on the next pass (tasks have step deadlines, none waits for the
//! lost monitor forever). After a failed attempt for the same monitor
//! (e.g. no eligible host) the next one waits `RETRY_AFTER`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgfleet_core::{Database, DbStatus, HostStatus};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::tasks::params::{ReplaceMonitor, TaskParams};

/// How often the reconciler looks (a replacement starts at most this long
/// after the threshold passed; a pass reads hosts and databases once).
pub const PASS_INTERVAL: Duration = Duration::from_millis(250);

/// How long after a submitted replacement of the same monitor the next
/// one may be submitted (when the first failed).
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// What the control plane knows of the monitor's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorHost {
    /// Not a host of the fleet (any more).
    Gone,
    /// Heartbeats arrive, or not heard from since the control plane started.
    Fine,
    /// No heartbeat for longer than the host timeout, since `lost_for`.
    Lost { lost_for: Duration },
}

/// What to do about a database's monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing (no monitor, its host is fine, or the database is busy being made/removed).
    Keep,
    /// Its host is lost, not long enough yet, or a failed attempt is recent.
    Wait(String),
    /// Submit a `ReplaceMonitor` with this reason.
    Replace(String),
}

/// The pure decision for `db`. `last_attempt`: how long ago a replacement
/// of its current monitor was submitted, if one was.
pub fn decide(
    db: &Database,
    host: MonitorHost,
    threshold: Duration,
    last_attempt: Option<Duration>,
) -> Decision {
    let Some(monitor) = db.monitor() else {
        return Decision::Keep;
    };
    if matches!(db.status, DbStatus::Creating | DbStatus::Deleting) {
        return Decision::Keep;
    }
    let reason = match host {
        MonitorHost::Fine => return Decision::Keep,
        MonitorHost::Gone => format!("host {} is no longer in the fleet", monitor.host),
        MonitorHost::Lost { lost_for } if lost_for < threshold => {
            return Decision::Wait(format!(
                "monitor host {} lost for {}s of {}s",
                monitor.host,
                lost_for.as_secs(),
                threshold.as_secs()
            ));
        }
        MonitorHost::Lost { lost_for } => {
            format!("host {} lost for {}s", monitor.host, lost_for.as_secs())
        }
    };
    match last_attempt {
        Some(ago) if ago < RETRY_AFTER => Decision::Wait(format!(
            "{reason}; the last replacement attempt was {}s ago, next in {}s",
            ago.as_secs(),
            (RETRY_AFTER - ago).as_secs()
        )),
        _ => Decision::Replace(reason),
    }
}

/// Submitted replacements: database → (monitor replaced, when).
type Attempts = HashMap<String, (String, Instant)>;

/// Runs until `cancel` fires.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let mut attempts = Attempts::new();
    let mut busy_logged: HashMap<String, i64> = HashMap::new();
    loop {
        if let Err(error) = pass(&state, &mut attempts, &mut busy_logged).await {
            tracing::warn!(error = %crate::error::error_chain(&error), "monitor replacement pass failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PASS_INTERVAL) => {}
        }
    }
}

async fn pass(
    state: &AppState,
    attempts: &mut Attempts,
    busy_logged: &mut HashMap<String, i64>,
) -> Result<(), pgfleet_store::StoreError> {
    let threshold = Duration::from_secs(state.config.monitor_replace_after_secs);
    let hosts = state.store.list_hosts().await?;
    for db in state.store.list_databases().await? {
        let Some(monitor) = db.monitor().cloned() else {
            continue;
        };
        let host = if !hosts.iter().any(|h| h.name == monitor.host) {
            MonitorHost::Gone
        } else {
            let observed = state.observed.lock().expect("observed lock");
            match observed.host_status(&monitor.host, state.host_timeout()) {
                HostStatus::Lost => {
                    let silent = observed
                        .hosts
                        .get(&monitor.host)
                        .map(|h| h.last_seen.elapsed())
                        .unwrap_or_default();
                    MonitorHost::Lost {
                        lost_for: silent.saturating_sub(state.host_timeout()),
                    }
                }
                _ => MonitorHost::Fine,
            }
        };
        let last = attempts
            .get(&db.name)
            .filter(|(node, _)| *node == monitor.name)
            .map(|(_, at)| at.elapsed());
        let reason = match decide(&db, host, threshold, last) {
            Decision::Replace(reason) => reason,
            Decision::Keep | Decision::Wait(_) => continue,
        };
        let params = TaskParams::ReplaceMonitor(ReplaceMonitor {
            old_node: monitor.name.clone(),
            old_host: monitor.host.clone(),
            reason: reason.clone(),
            new_node: None,
            new_host: None,
        });
        match crate::tasks::submit_if_idle(state, &params, &db.name).await? {
            pgfleet_store::Submission::Queued(task) => {
                attempts.insert(db.name.clone(), (monitor.name.clone(), Instant::now()));
                busy_logged.remove(&db.name);
                tracing::warn!(db = %db.name, monitor = %monitor.name, host = %monitor.host, %reason, task_id = task.id, "replacing the monitor");
            }
            pgfleet_store::Submission::Busy(task) => {
                if busy_logged.insert(db.name.clone(), task.id) != Some(task.id) {
                    tracing::warn!(db = %db.name, %reason, task_id = task.id, kind = ?task.kind, "monitor replacement waits: the database is busy with another task; retrying");
                }
            }
            pgfleet_store::Submission::NoDatabase => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgfleet_core::{Desired, Node, NodeRole};

    fn db(status: DbStatus, monitor: bool) -> Database {
        let node = |name: &str, role, host: &str| Node::fixture(name, role, host, "127.0.0.1");
        let mut nodes = vec![
            node("d", NodeRole::Primary, "h1"),
            node("r1", NodeRole::Replica, "h2"),
        ];
        if monitor {
            nodes.push(node("d-monitor", NodeRole::Monitor, "h3"));
        }
        Database {
            status,
            admin_user: "a".into(),
            admin_password: "p".into(),
            replication_password: "p".into(),
            monitor_token: "t".into(),
            superuser_password: "s".into(),
            created_at_ms: 0,
            nodes,
            ..Database::fixture("d")
        }
    }

    const T: Duration = Duration::from_secs(10);

    fn lost(secs: u64) -> MonitorHost {
        MonitorHost::Lost {
            lost_for: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_monitor_lost_past_the_threshold_is_replaced_once_a_minute_at_most() {
        let online = db(DbStatus::Online, true);
        assert_eq!(decide(&online, MonitorHost::Fine, T, None), Decision::Keep);
        assert!(
            matches!(decide(&online, lost(3), T, None), Decision::Wait(r) if r.contains("3s of 10s"))
        );
        assert!(
            matches!(decide(&online, lost(10), T, None), Decision::Replace(r) if r == "host h3 lost for 10s")
        );
        // A failed attempt for the same monitor: not again at once.
        assert!(matches!(
            decide(&online, lost(30), T, Some(Duration::from_secs(20))),
            Decision::Wait(r) if r.contains("next in 40s")
        ));
        assert!(matches!(
            decide(&online, lost(80), T, Some(RETRY_AFTER)),
            Decision::Replace(_)
        ));
        assert!(matches!(
            decide(&online, MonitorHost::Gone, T, None),
            Decision::Replace(r) if r.contains("no longer in the fleet")
        ));
    }

    #[test]
    fn databases_without_a_monitor_or_being_made_or_removed_are_left_alone() {
        assert_eq!(
            decide(&db(DbStatus::Online, false), lost(99), T, None),
            Decision::Keep
        );
        assert_eq!(
            decide(&db(DbStatus::Deleting, true), lost(99), T, None),
            Decision::Keep
        );
        assert_eq!(
            decide(&db(DbStatus::Creating, true), lost(99), T, None),
            Decision::Keep
        );
        // A database busy with another change (Modifying) still gets one:
        // the submission itself says whether it is idle.
        assert!(matches!(
            decide(&db(DbStatus::Modifying, true), lost(99), T, None),
            Decision::Replace(_)
        ));
        // The old monitor, deleted, is not the monitor any more.
        let mut replaced = db(DbStatus::Online, true);
        replaced.nodes[2].desired = Desired::Deleted;
        assert_eq!(decide(&replaced, lost(99), T, None), Decision::Keep);
    }
}
