//! Backups and point-in-time recovery on pgBackRest: backup locations, a
//! database's backup policy (stored intent), what the control plane asks of
//! an agent (in the instance spec) and what the agent reports back (in the
//! instance observation), and the API bodies. pgfleet configures, schedules
//! and observes pgBackRest; it does not copy data itself.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Default `archive_timeout`: the RPO bound of an idle database.
pub const DEFAULT_ARCHIVE_TIMEOUT_SECS: u32 = 60;
/// Default number of full backups kept.
pub const DEFAULT_RETENTION_FULL: u32 = 7;

/// A place backups go: a POSIX folder (in production a mount every host
/// of the databases that use it shares) or an S3 bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupLocation {
    pub name: String,
    /// `posix` or `s3`.
    pub kind: String,
    /// `posix`: absolute folder; each stanza (one per database) gets its
    /// own sub-folder owned by that database's OS user. `s3`: the prefix in
    /// the bucket (`/` by default); each stanza gets `<path>/<stanza>`.
    pub path: String,
    /// The bucket of an `s3` location (its credentials are kept sealed
    /// apart and never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
    pub created_at_ms: i64,
    /// Every stanza ever configured here, kept after its database is
    /// deleted (its backups stay restorable while the files are there).
    #[serde(default)]
    pub stanzas: Vec<StanzaRecord>,
}

/// One database's pgBackRest stanza in a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StanzaRecord {
    pub stanza: String,
    pub db: String,
    pub db_created_at_ms: i64,
    pub version: u32,
    pub admin_user: String,
    pub database_name: String,
    #[serde(default)]
    pub deleted: bool,
}

impl BackupLocation {
    /// The stanza's repository (`repo1-path`).
    pub fn repo_path(&self, stanza: &str) -> String {
        format!("{}/{stanza}", self.path.trim_end_matches('/'))
    }
}

/// Where an S3 location's bucket is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct S3Location {
    /// `https://host[:port]`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// The CA certificate (PEM) the endpoint's certificate is checked
    /// against, when it is not one the system trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl S3Location {
    /// Host and port of the endpoint (the control plane stores it as
    /// `https://host:port`).
    pub fn host_port(&self) -> Option<(String, u16)> {
        let authority = self.endpoint.strip_prefix("https://")?;
        let authority = authority.trim_end_matches('/');
        match authority.rsplit_once(':') {
            Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
            None => Some((authority.to_string(), 443)),
        }
    }
}

/// An S3 access key. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .finish()
    }
}

/// What an agent needs to reach an S3 repository (in instance specs only,
/// sent over mutual TLS; never stored on a database record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct S3RepoSpec {
    pub location: S3Location,
    pub credentials: S3Credentials,
}

/// A database's backup policy (stored intent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupPolicy {
    pub location: String,
    pub stanza: String,
    pub repo_path: String,
    /// Five-field cron expression (UTC), e.g. `0 2 * * *`.
    #[serde(default)]
    pub schedule: Option<String>,
    pub retention_full: u32,
    pub archive_timeout_secs: u32,
}

/// Backup state stored on the database record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupIntent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<BackupPolicy>,
    /// The backup the `Backup` task in progress asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<BackupRun>,
    /// Set on a database made by a restore, until it is online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,
    /// Minute (ms since epoch) of the last scheduled backup submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_ms: Option<i64>,
}

impl BackupIntent {
    pub fn is_empty(&self) -> bool {
        *self == BackupIntent::default()
    }
}

/// One backup asked of one node's agent; `id` is the task's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupRun {
    pub id: i64,
    /// `full`, `diff` or `incr`.
    pub kind: String,
    /// The node whose agent runs pgBackRest (a standby when one is healthy).
    pub node: String,
    /// With `--backup-standby` (`node` is a standby): the primary, as its
    /// agent reported it when the task chose the node.
    #[serde(default)]
    pub primary: Option<PgLocation>,
}

/// What a restore recovers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RestoreTarget {
    /// All WAL in the archive.
    Latest,
    /// A point in time, `YYYY-MM-DD HH:MM:SS+00`.
    Time { time: String },
    /// The consistent end of one backup.
    Backup { label: String },
}

/// Archiving settings and a requested backup, for every data node of a
/// database with a backup policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupSpec {
    pub stanza: String,
    pub repo_path: String,
    /// The repository is in this S3 bucket (`repo_path` is then the prefix
    /// in it); a POSIX folder otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3RepoSpec>,
    pub retention_full: u32,
    pub archive_timeout_secs: u32,
    /// A backup this node's agent is asked to take.
    #[serde(default)]
    pub run: Option<BackupRunSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupRunSpec {
    pub id: i64,
    pub kind: String,
    /// With `--backup-standby`: the primary, as its agent reported it (this
    /// node is the standby the files are copied from).
    #[serde(default)]
    pub primary: Option<PgLocation>,
}

/// Where a server's files and socket are (as its agent reports them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PgLocation {
    pub data_dir: String,
    pub socket_dir: String,
    pub port: u16,
}

/// A new database's first node is made by `pgbackrest restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RestoreSpec {
    pub source_db: String,
    pub stanza: String,
    pub repo_path: String,
    pub target: RestoreTarget,
    /// The location the source's stanza is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Filled in the instance spec only (from `location`), never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3RepoSpec>,
}

/// What an agent reports about archiving and backups of one node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct BackupObserved {
    pub stanza: String,
    /// Where this node's files are (for `--backup-standby` from another node).
    #[serde(default)]
    pub location: Option<PgLocation>,
    /// `stanza-create` succeeded (on a primary).
    #[serde(default)]
    pub stanza_ready: bool,
    /// Why setting up the stanza or archiving fails, when it does.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub archiver: Option<ArchiverObserved>,
    /// The last backup run this agent finished.
    #[serde(default)]
    pub last_run: Option<BackupRunResult>,
    /// The stanza's backups and WAL range, read from `pgbackrest info
    /// --output=json` now and then (parsed on the agent: heartbeats stay small).
    #[serde(default)]
    pub info: Option<BackupListView>,
    #[serde(default)]
    pub info_at_ms: Option<i64>,
}

/// `pg_stat_archiver` and the WAL waiting to be archived.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ArchiverObserved {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_at_ms: Option<i64>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_at_ms: Option<i64>,
    /// Segments in `pg_wal/archive_status` still `.ready` (the archive lag).
    pub pending_segments: u64,
}

impl ArchiverObserved {
    /// The last attempt failed (no success since the last failure).
    pub fn failing(&self) -> bool {
        match (self.last_failed_at_ms, self.last_archived_at_ms) {
            (Some(failed), Some(archived)) => failed > archived,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupRunResult {
    pub id: i64,
    pub ok: bool,
    pub error: Option<String>,
    pub label: Option<String>,
}

// ---- API bodies ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackupLocationRequest {
    pub name: String,
    /// Absolute folder (a shared mount in production); or `s3`.
    #[serde(default)]
    pub posix_path: Option<String>,
    #[serde(default)]
    pub s3: Option<CreateS3Location>,
}

/// An S3 location to create: checked with a signed PUT and DELETE of a
/// probe object before it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateS3Location {
    /// `https://host[:port]`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Prefix in the bucket (default `/`).
    #[serde(default)]
    pub path: Option<String>,
    /// PEM of a private CA that signed the endpoint's certificate.
    #[serde(default)]
    pub ca_pem: Option<String>,
    pub credentials: S3Credentials,
}

/// The backup settings of `db create` and `db backup-policy set`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicyRequest {
    pub location: String,
    /// Five-field cron expression in UTC (`0 2 * * *`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Full backups kept (default 7).
    #[serde(default)]
    pub retention_full: Option<u32>,
    /// Seconds (default 60): an idle database's WAL reaches the archive within it.
    #[serde(default)]
    pub archive_timeout_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// `full` (default), `diff` or `incr`.
    #[serde(default)]
    pub r#type: Option<String>,
}

/// Restore options of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The database (existing or deleted) whose backups are used.
    pub from: String,
    /// A backup label; or `time`; or neither for the latest point.
    #[serde(default)]
    pub backup: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS+00`.
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupView {
    pub label: String,
    pub r#type: String,
    pub start_ms: i64,
    pub stop_ms: i64,
    /// Database size, and the size in the repository (compressed).
    pub size_bytes: u64,
    pub repository_size_bytes: u64,
    pub wal_start: Option<String>,
    pub wal_stop: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupListView {
    pub db: String,
    pub policy: Option<BackupPolicy>,
    pub backups: Vec<BackupView>,
    /// Earliest restorable time: the end of the oldest backup.
    pub earliest_restorable_ms: Option<i64>,
    /// Latest restorable time: when the newest WAL segment reached the archive.
    pub latest_restorable_ms: Option<i64>,
    pub wal_min: Option<String>,
    pub wal_max: Option<String>,
    pub archiver: Option<ArchiverObserved>,
    /// When the listing was read from pgBackRest.
    pub read_at_ms: Option<i64>,
}

/// Backups, WAL range and window from `pgbackrest info --output=json`.
pub fn parse_info(db: &str, info: &serde_json::Value) -> BackupListView {
    let stanza = info.as_array().and_then(|a| a.first()).unwrap_or(info);
    let mut backups = Vec::new();
    for backup in stanza["backup"].as_array().into_iter().flatten() {
        backups.push(BackupView {
            label: backup["label"].as_str().unwrap_or_default().to_string(),
            r#type: backup["type"].as_str().unwrap_or_default().to_string(),
            start_ms: backup["timestamp"]["start"].as_i64().unwrap_or(0) * 1000,
            stop_ms: backup["timestamp"]["stop"].as_i64().unwrap_or(0) * 1000,
            size_bytes: backup["info"]["size"].as_u64().unwrap_or(0),
            repository_size_bytes: backup["info"]["repository"]["size"].as_u64().unwrap_or(0),
            wal_start: backup["archive"]["start"].as_str().map(str::to_string),
            wal_stop: backup["archive"]["stop"].as_str().map(str::to_string),
        });
    }
    let archive = stanza["archive"].as_array().and_then(|a| a.last());
    BackupListView {
        db: db.to_string(),
        policy: None,
        earliest_restorable_ms: backups.iter().map(|b| b.stop_ms).min(),
        latest_restorable_ms: None,
        wal_min: archive.and_then(|a| a["min"].as_str()).map(str::to_string),
        wal_max: archive.and_then(|a| a["max"].as_str()).map(str::to_string),
        backups,
        archiver: None,
        read_at_ms: None,
    }
}

/// A restore target time as pgBackRest and PostgreSQL take it:
/// `YYYY-MM-DD HH:MM:SS` with an optional fraction and a `+00` offset.
pub fn valid_target_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        range
            .clone()
            .all(|i| bytes.get(i).is_some_and(u8::is_ascii_digit))
    };
    let shape = bytes.len() >= 22
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b' '
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let rest = &text[19..];
    let rest = match rest.strip_prefix('.') {
        Some(fraction) => fraction.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    matches!(rest, "+00" | "+00:00" | "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_take_only_utc_with_seconds() {
        assert!(valid_target_time("2026-12-01 10:00:00+00"));
        assert!(valid_target_time("2026-12-01 10:00:00.123456+00"));
        assert!(!valid_target_time("2026-12-01 10:00+00"));
        assert!(!valid_target_time("2026-12-01 10:00:00+02"));
        assert!(!valid_target_time("2026-12-01 10:00:00'; --"));
    }

    #[test]
    fn info_gives_backups_and_the_earliest_restorable_time() {
        let info = serde_json::json!([{
            "archive": [{"min": "000000010000000000000001", "max": "000000020000000000000007"}],
            "backup": [
                {"label": "F1", "type": "full", "timestamp": {"start": 10, "stop": 12},
                 "info": {"size": 100, "repository": {"size": 10}},
                 "archive": {"start": "000000010000000000000003", "stop": "000000010000000000000003"}},
                {"label": "F1_I", "type": "incr", "timestamp": {"start": 20, "stop": 21},
                 "info": {"size": 100, "repository": {"size": 1}}, "archive": {}}
            ]
        }]);
        let view = parse_info("d", &info);
        assert_eq!(view.backups.len(), 2);
        assert_eq!(view.earliest_restorable_ms, Some(12_000));
        assert_eq!(view.wal_max.as_deref(), Some("000000020000000000000007"));
        assert_eq!(view.backups[1].r#type, "incr");
        assert_eq!(view.backups[0].repository_size_bytes, 10);
    }

    #[test]
    fn an_archiver_whose_last_attempt_failed_is_failing() {
        let mut archiver = ArchiverObserved {
            last_archived_at_ms: Some(10),
            last_failed_at_ms: Some(20),
            ..Default::default()
        };
        assert!(archiver.failing());
        archiver.last_archived_at_ms = Some(30);
        assert!(!archiver.failing());
    }
}
