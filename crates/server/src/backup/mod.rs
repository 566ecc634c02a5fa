//! Backups on pgBackRest, the control plane's part: backup locations (kept
//! in the store's meta table), a database's policy and the stanza it gets,
//! the backup and restore intent handed to agents in instance specs, the
//! health reasons a failing archive adds, and the `Backup`/restore API
//! (`api`). `schedule` runs the loop that submits scheduled backups and
//! records archive failures as events. pgBackRest does the copying; the
//! agents run it (`pgfleet_agent::pg::backrest`).

pub mod api;
pub mod locations;
pub mod schedule;

use pgfleet_core::backup::{
    BackupPolicy, BackupPolicyRequest, BackupRunSpec, BackupSpec, RestoreSpec, StanzaRecord,
    DEFAULT_ARCHIVE_TIMEOUT_SECS, DEFAULT_RETENTION_FULL,
};
use pgfleet_core::{Database, Desired, HostStatus, Node, NodeRole};

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::ViewContext;

/// Archiving and backup settings for `node` of `db` (data nodes of a
/// database with a policy); the requested backup only on the node chosen.
pub fn instance_backup_spec(db: &Database, node: &Node) -> Option<BackupSpec> {
    let policy = db.backup.policy.as_ref()?;
    if node.role == NodeRole::Monitor || node.desired == Desired::Deleted {
        return None;
    }
    let run = db
        .backup
        .run
        .as_ref()
        .filter(|run| run.node == node.name)
        .map(|run| BackupRunSpec {
            id: run.id,
            kind: run.kind.clone(),
            primary: run.primary.clone(),
        });
    Some(BackupSpec {
        stanza: policy.stanza.clone(),
        repo_path: policy.repo_path.clone(),
        retention_full: policy.retention_full,
        archive_timeout_secs: policy.archive_timeout_secs,
        run,
    })
}

/// The restore a restored database's first node is made by.
pub fn instance_restore_spec(db: &Database, node: &Node) -> Option<RestoreSpec> {
    if node.role != NodeRole::Primary || node.name != db.name {
        return None;
    }
    db.backup.restore.clone()
}

/// Why the database's archiving is unhealthy, read from its primary's report.
pub fn health_reasons(db: &Database, ctx: &ViewContext) -> Vec<String> {
    let mut reasons = Vec::new();
    if db.backup.policy.is_none() {
        return reasons;
    }
    let Some(primary) = db.primary() else {
        return reasons;
    };
    if ctx.observed.host_status(&primary.host, ctx.host_timeout) != HostStatus::Connected {
        return reasons;
    }
    let Some(backup) = ctx
        .observed
        .instance(&primary.host, &db.name, &primary.name)
        .and_then(|i| i.backup.as_ref())
    else {
        return reasons;
    };
    if let Some(reason) = archive_failure(backup) {
        reasons.push(reason);
    }
    reasons
}

/// The reason archiving of a primary fails, if it does.
pub fn archive_failure(backup: &pgfleet_core::backup::BackupObserved) -> Option<String> {
    if let Some(archiver) = backup.archiver.as_ref().filter(|a| a.failing()) {
        let wal = archiver.last_failed_wal.as_deref().unwrap_or("?");
        let cause = backup
            .error
            .as_deref()
            .unwrap_or("see the node's postgres.log");
        return Some(format!(
            "WAL archiving fails ({} segments waiting, last failed {wal}): {cause}",
            archiver.pending_segments
        ));
    }
    backup
        .error
        .as_ref()
        .map(|error| format!("backups are not set up: {error}"))
}

/// Validates a policy request and registers `db`'s stanza in its location.
pub async fn policy_for(
    state: &AppState,
    db: &Database,
    request: &BackupPolicyRequest,
) -> Result<BackupPolicy, ApiError> {
    if let Some(schedule) = &request.schedule {
        schedule::parse(schedule).map_err(|e| {
            ApiError::bad_request(format!("invalid backup schedule {schedule:?}: {e}"))
        })?;
    }
    let retention_full = request.retention_full.unwrap_or(DEFAULT_RETENTION_FULL);
    if !(1..=9999).contains(&retention_full) {
        return Err(ApiError::bad_request(format!(
            "invalid retention {retention_full}: 1..=9999 full backups"
        )));
    }
    let archive_timeout_secs = request
        .archive_timeout_secs
        .unwrap_or(DEFAULT_ARCHIVE_TIMEOUT_SECS);
    if !(1..=86_400).contains(&archive_timeout_secs) {
        return Err(ApiError::bad_request(format!(
            "invalid archive timeout {archive_timeout_secs}: 1..=86400 seconds"
        )));
    }
    // One stanza per database incarnation: a later database of the same
    // name never mixes its WAL with a deleted one's.
    let stanza = db
        .backup
        .policy
        .as_ref()
        .filter(|p| p.location == request.location)
        .map(|p| p.stanza.clone())
        .unwrap_or_else(|| format!("{}-{}", db.name, db.created_at_ms));
    let record = StanzaRecord {
        stanza: stanza.clone(),
        db: db.name.clone(),
        db_created_at_ms: db.created_at_ms,
        version: db.version,
        admin_user: db.admin_user.clone(),
        database_name: db.database_name.clone(),
        deleted: false,
    };
    let location = locations::add_stanza(state, &request.location, record).await?;
    Ok(BackupPolicy {
        location: location.name.clone(),
        repo_path: location.repo_path(&stanza),
        stanza,
        schedule: request.schedule.clone(),
        retention_full,
        archive_timeout_secs,
    })
}
