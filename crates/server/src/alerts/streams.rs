//! The watcher's checks of a database's WAL streams, from its API view and
//! its primary's report: a replica not streaming for longer than
//! `--alert-not-streaming-secs` (`replica_not_streaming`, then
//! `replica_streaming`), and WAL archiving of a database with a backup
//! policy failing or lagging (`archive_failing`, then `archive_recovered`).
//! The reasons are the ones `db show` prints (`backup::archive_failure`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pgfleet_core::api::{DatabaseView, ReplicationStatus};
use pgfleet_core::backup::BackupObserved;
use pgfleet_core::NodeRole;

use super::conditions::{Conditions, Transition};
use super::Alert;

/// Archiving counts as failing when this many segments wait to be archived
/// (1 GiB of 16 MiB segments), even without a failed attempt.
pub const ARCHIVE_LAG_SEGMENTS: u64 = 64;
/// Archiving must stay failing this long before it is alerted (one failed
/// attempt is retried by PostgreSQL within a second or so).
const ARCHIVE_GRACE: Duration = Duration::from_secs(4);

#[derive(Default)]
pub struct StreamConditions {
    /// (database, replica).
    replicas: Conditions<(String, String)>,
    archives: Conditions<String>,
    replicas_present: HashSet<(String, String)>,
    archives_present: HashSet<String>,
}

/// Why a database's archiving is unhealthy, if it is: the primary's
/// archiver failing (or stanza not set up), or too much WAL waiting.
pub fn archive_problem(backup: &BackupObserved) -> Option<String> {
    if let Some(reason) = crate::backup::archive_failure(backup) {
        return Some(reason);
    }
    let waiting = backup.archiver.as_ref()?.pending_segments;
    (waiting > ARCHIVE_LAG_SEGMENTS).then(|| {
        format!("WAL archiving lags: {waiting} segments wait to be archived (bound {ARCHIVE_LAG_SEGMENTS})")
    })
}

impl StreamConditions {
    /// Starts a pass: keys not checked during it are forgotten by `finish`.
    pub fn begin(&mut self) {
        self.replicas_present.clear();
        self.archives_present.clear();
    }

    pub fn finish(&mut self) {
        self.replicas.retain(&self.replicas_present);
        self.archives.retain(&self.archives_present);
    }

    /// Replicas of `view` not streaming (on a lost host, stopped, or with
    /// a WAL receiver that does not stream); not those in maintenance.
    pub fn check_replicas(
        &mut self,
        view: &DatabaseView,
        now: Instant,
        grace: Duration,
        alerts: &mut Vec<Alert>,
    ) {
        for node in view.nodes.iter().filter(|n| n.role == NodeRole::Replica) {
            if node.maintenance {
                continue;
            }
            let key = (view.name.clone(), node.name.clone());
            self.replicas_present.insert(key.clone());
            let streaming = matches!(
                node.replication_status,
                Some(ReplicationStatus::Active | ReplicationStatus::CatchingUp)
            );
            match self.replicas.observe(&key, !streaming, now, grace) {
                Some(Transition::Raise) => alerts.push(
                    Alert::new(
                        "replica_not_streaming",
                        format!(
                            "replica {} of database {} has not been streaming WAL for {} s (host {}, node {:?})",
                            node.name,
                            view.name,
                            grace.as_secs(),
                            node.host,
                            node.status
                        ),
                    )
                    .db(&view.name)
                    .host(&node.host)
                    .details(serde_json::json!({
                        "node": node.name,
                        "status": node.status,
                        "ha_state": node.ha_state,
                        "error": node.error,
                        "not_streaming_secs": grace.as_secs(),
                    })),
                ),
                Some(Transition::Clear) => alerts.push(
                    Alert::new(
                        "replica_streaming",
                        format!(
                            "replica {} of database {} streams WAL again",
                            node.name, view.name
                        ),
                    )
                    .db(&view.name)
                    .host(&node.host)
                    .details(serde_json::json!({"node": node.name, "lag_bytes": node.lag_bytes})),
                ),
                None => {}
            }
        }
    }

    /// Archiving of `db` from its primary's report (`None`: no policy, or
    /// no live report; the condition is then left as it was).
    pub fn check_archive(
        &mut self,
        db: &str,
        backup: Option<&BackupObserved>,
        now: Instant,
        alerts: &mut Vec<Alert>,
    ) {
        let key = db.to_string();
        let Some(backup) = backup else {
            if self.archives.is_alerted(&key) {
                self.archives_present.insert(key);
            }
            return;
        };
        self.archives_present.insert(key.clone());
        let problem = archive_problem(backup);
        let archiver = backup.archiver.clone().unwrap_or_default();
        match self
            .archives
            .observe(&key, problem.is_some(), now, ARCHIVE_GRACE)
        {
            Some(Transition::Raise) => {
                let reason = problem.unwrap_or_default();
                alerts.push(
                    Alert::new(
                        "archive_failing",
                        format!("archiving of database {db} fails: {reason}"),
                    )
                    .db(db)
                    .details(serde_json::json!({
                        "reason": reason,
                        "failed_count": archiver.failed_count,
                        "last_failed_wal": archiver.last_failed_wal,
                        "pending_segments": archiver.pending_segments,
                    })),
                )
            }
            Some(Transition::Clear) => alerts.push(
                Alert::new(
                    "archive_recovered",
                    format!(
                        "archiving of database {db} works again (last archived {})",
                        archiver.last_archived_wal.as_deref().unwrap_or("?")
                    ),
                )
                .db(db)
                .details(serde_json::json!({
                    "archived_count": archiver.archived_count,
                    "last_archived_wal": archiver.last_archived_wal,
                    "pending_segments": archiver.pending_segments,
                })),
            ),
            None => {}
        }
    }
}
