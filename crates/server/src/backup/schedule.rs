//! The backup loop of the control plane (every 2 s, woken by nothing
//! else): submits a `Backup` task when a database's cron schedule (UTC)
//! came due since the last one (a missed run is taken once, not once per
//! miss; a database busy with another task gets it on a later turn), and
//! records an event when a database's WAL archiving starts or stops
//! failing.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use pgfleet_core::errors::error_chain;
use pgfleet_core::time::now_ms;
use pgfleet_core::HostStatus;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::tasks::params::{self, TaskParams};

/// A five-field cron expression (minute hour day month weekday), UTC.
pub fn parse(expression: &str) -> Result<cron::Schedule, String> {
    let fields = expression.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "{fields} fields; expected 5 (minute hour day-of-month month day-of-week)"
        ));
    }
    cron::Schedule::from_str(&format!("0 {expression}")).map_err(|e| e.to_string())
}

/// Whether a run of `schedule` falls in `(since_ms, now_ms]`.
pub fn due(schedule: &cron::Schedule, since_ms: i64, now_ms: i64) -> bool {
    let Some(since) = chrono::DateTime::from_timestamp_millis(since_ms) else {
        return false;
    };
    schedule
        .after(&since)
        .next()
        .is_some_and(|next| next.timestamp_millis() <= now_ms)
}

pub async fn run(state: AppState, cancel: CancellationToken) {
    let mut failing: HashMap<String, Option<String>> = HashMap::new();
    loop {
        if let Err(error) = scheduled_backups(&state).await {
            tracing::warn!(error = %error_chain(&error), "backup schedule turn failed");
        }
        if let Err(error) = archive_events(&state, &mut failing).await {
            tracing::warn!(error = %error_chain(&error), "archive health turn failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

async fn scheduled_backups(state: &AppState) -> Result<(), pgfleet_store::StoreError> {
    let now = now_ms();
    for db in state.store.list_databases().await? {
        let Some(policy) = &db.backup.policy else {
            continue;
        };
        let Some(expression) = &policy.schedule else {
            continue;
        };
        if db.status != pgfleet_core::DbStatus::Online {
            continue;
        }
        let Ok(schedule) = parse(expression) else {
            continue;
        };
        let Some(since) = db.backup.last_scheduled_ms else {
            // First turn with this schedule: runs count from now.
            state
                .update_database(&db.name, |db| db.backup.last_scheduled_ms = Some(now))
                .await?;
            continue;
        };
        if !due(&schedule, since, now) {
            continue;
        }
        let params = TaskParams::Backup(params::Backup {
            kind: "full".into(),
            scheduled: true,
            ..Default::default()
        });
        if let pgfleet_store::Submission::Queued(task) =
            crate::tasks::submit_if_idle(state, &params, &db.name).await?
        {
            tracing::info!(db = %db.name, task_id = task.id, schedule = %expression, "scheduled backup submitted");
            state
                .update_database(&db.name, |db| db.backup.last_scheduled_ms = Some(now))
                .await?;
        }
    }
    Ok(())
}

/// One event per change of a database's archive failure (its reason).
async fn archive_events(
    state: &AppState,
    failing: &mut HashMap<String, Option<String>>,
) -> Result<(), pgfleet_store::StoreError> {
    for db in state.store.list_databases().await? {
        if db.backup.policy.is_none() {
            continue;
        }
        let Some(primary) = db.primary() else {
            continue;
        };
        let reason = {
            let observed = state.observed.lock().expect("observed lock");
            if observed.host_status(&primary.host, state.host_timeout()) != HostStatus::Connected {
                continue;
            }
            let Some(backup) = observed
                .instance(&primary.host, &db.name, &primary.name)
                .and_then(|i| i.backup.clone())
            else {
                continue;
            };
            super::archive_failure(&backup)
        };
        let before = failing.insert(db.name.clone(), reason.clone());
        let was_failing = before.as_ref().is_some_and(Option::is_some);
        let kind = match (&reason, was_failing) {
            (Some(_), false) => "archive_failing",
            (None, true) => "archive_recovered",
            _ => continue,
        };
        tracing::warn!(db = %db.name, kind, reason = ?reason, "wal archiving changed");
        let event = serde_json::json!({
            "at_ms": now_ms(),
            "kind": kind,
            "node": primary.name,
            "reason": reason,
        });
        state.store.insert_event(&db.name, &event).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_schedules_parse_and_come_due_once_their_minute_passed() {
        let nightly = parse("0 2 * * *").unwrap();
        let day = 86_400_000;
        let one_am = day + 3_600_000;
        let two_am = day + 2 * 3_600_000;
        assert!(!due(&nightly, one_am, two_am - 1));
        assert!(due(&nightly, one_am, two_am));
        assert!(!due(&nightly, two_am, two_am + 3_600_000));
        assert!(parse("0 2 * *").unwrap_err().contains("expected 5"));
        assert!(parse("61 2 * * *").is_err());
    }
}
