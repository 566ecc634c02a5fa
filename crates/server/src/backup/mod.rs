//! Backups on pgBackRest, the control plane's part: backup locations (kept
//! in the store's meta table), a database's policy and the stanza it gets,
//! the backup and restore intent handed to agents in instance specs, the
//! health reasons a failing archive adds, and the `Backup`/restore API
//! (`api`). `schedule` runs the loop that submits scheduled backups and
//! records archive failures as events. pgBackRest does the copying; the
//! agents run it (`pgfleet_agent::pg::backrest`).

pub mod api;
pub mod locations;
pub mod s3;
pub mod schedule;

use pgfleet_core::backup::{
    BackupPolicy, BackupPolicyRequest, BackupRunSpec, BackupSpec, RestoreSpec, S3RepoSpec,
    StanzaRecord, DEFAULT_ARCHIVE_TIMEOUT_SECS, DEFAULT_RETENTION_FULL,
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
        s3: None,
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

/// Adds what agents need to reach S3 repositories (bucket and access key)
/// to the instance specs of one heartbeat answer; POSIX ones need nothing.
pub async fn attach_s3(
    state: &AppState,
    databases: &[Database],
    instances: &mut [pgfleet_core::protocol::InstanceSpec],
) -> Result<(), ApiError> {
    let wants_location = |spec: &pgfleet_core::protocol::InstanceSpec| {
        let policy = spec.backup.as_ref().and_then(|_| {
            let db = databases.iter().find(|d| d.name == spec.db)?;
            db.backup.policy.as_ref().map(|p| p.location.clone())
        });
        let restore = spec.restore.as_ref().and_then(|r| r.location.clone());
        (policy, restore)
    };
    if instances
        .iter()
        .all(|spec| wants_location(spec) == (None, None))
    {
        return Ok(());
    }
    let all = locations::list(state).await?;
    let mut found: std::collections::HashMap<String, Option<S3RepoSpec>> = Default::default();
    for spec in instances.iter_mut() {
        let (policy, restore) = wants_location(spec);
        for (name, is_restore) in [(policy, false), (restore, true)] {
            let Some(name) = name else { continue };
            if !found.contains_key(&name) {
                let repo = match all
                    .iter()
                    .find(|l| l.name == name)
                    .and_then(|l| l.s3.clone())
                {
                    Some(location) => {
                        locations::credentials(state, &name)
                            .await?
                            .map(|credentials| S3RepoSpec {
                                location,
                                credentials,
                            })
                    }
                    None => None,
                };
                found.insert(name.clone(), repo);
            }
            let repo = found.get(&name).cloned().flatten();
            if is_restore {
                if let Some(restore) = spec.restore.as_mut() {
                    restore.s3 = repo;
                }
            } else if let Some(backup) = spec.backup.as_mut() {
                backup.s3 = repo;
            }
        }
    }
    Ok(())
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
