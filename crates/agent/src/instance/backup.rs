//! Archiving and backups of a running node, each cycle after `observe`:
//! writes the node's pgBackRest config (`pg::backrest`), restarts the
//! server once when `archive_mode` changed, reports `pg_stat_archiver` and
//! the segments waiting to be archived (with pgBackRest's last error from
//! the server's log when archiving fails), and runs one background job at
//! a time so the keeper's reports never wait: `stanza-create` on a primary,
//! after a promotion the push of the complete segments of older timelines
//! still in `pg_wal` (the old primary may have died before archiving them;
//! a standby marks what it receives as archived under `archive_mode = on`),
//! the backup the spec asks of this node (each request id once; the result
//! is kept in `pgbackrest/last-run.json`), and `info` now and then.

use std::time::{Duration, Instant};

use pgfleet_core::backup::{
    ArchiverObserved, BackupObserved, BackupRunResult, BackupSpec, PgLocation,
};
use pgfleet_core::protocol::InstanceSpec;
use pgfleet_core::time::now_ms;
use tokio::task::JoinHandle;

use super::Actor;
use crate::pg::backrest::{self, BackrestPaths};

/// How often a primary (or the node that just backed up) reads `info`.
const INFO_EVERY: Duration = Duration::from_secs(15);

enum Job {
    StanzaCreate(String),
    /// Pushes the older timelines' complete segments still in `pg_wal`.
    CatchUp(u32),
    Backup(i64),
    Info,
}

type JobOutput = anyhow::Result<Option<serde_json::Value>>;

/// The node's backup bookkeeping (one per actor).
#[derive(Default)]
pub(super) struct BackupJobs {
    job: Option<(Job, JoinHandle<JobOutput>)>,
    info_at: Option<Instant>,
    stanza_ready: Option<String>,
    /// Timeline whose catch-up push (after a promotion) is done.
    caught_up_timeline: Option<u32>,
    last_run: Option<BackupRunResult>,
    loaded: bool,
    error: Option<String>,
}

impl Actor {
    pub(super) async fn backup_cycle(&mut self, spec: &InstanceSpec) {
        let Some(backup) = spec.backup.clone() else {
            self.observed.lock().expect("observed lock").backup = None;
            return;
        };
        if let Err(error) = self.backup_step(spec, &backup).await {
            let message = format!("{error:#}");
            tracing::warn!(db = %spec.db, node = %spec.node, error = %message, "backup step failed");
            self.backups.error = Some(message);
        }
        self.report_backup(spec, &backup);
    }

    async fn backup_step(
        &mut self,
        spec: &InstanceSpec,
        backup: &BackupSpec,
    ) -> anyhow::Result<()> {
        let files = BackrestPaths::of(&self.paths);
        if !self.backups.loaded {
            self.backups.loaded = true;
            self.backups.last_run = std::fs::read(files.dir.join("last-run.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            self.backups.stanza_ready = std::fs::read_to_string(files.dir.join("stanza")).ok();
        }
        let (user, paths) = (self.user, self.paths.clone());
        let stanza_spec = backup.clone();
        let (port, password) = (spec.port, spec.superuser_password.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            backrest::ensure_repository(&stanza_spec, &user)?;
            backrest::write(&stanza_spec, &paths, port, &password, &user)
        })
        .await??;
        let Some(client) = self.client.as_ref() else {
            return Ok(());
        };
        let pending_restart: bool = client
            .query_one(
                "SELECT pending_restart FROM pg_settings WHERE name = 'archive_mode'",
                &[],
            )
            .await?
            .get(0);
        if pending_restart {
            tracing::info!(db = %spec.db, node = %spec.node, "restarting to change archive_mode");
            self.stop_server().await;
            return Ok(());
        }
        let in_recovery: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        let archiver = self.read_archiver().await?;
        self.backups.error = archiver.failing().then(|| {
            let cause = backrest::last_archive_error(&self.paths.log)
                .unwrap_or_else(|| "see the node's postgres.log".into());
            let free = match backup.s3 {
                Some(_) => None,
                None => backrest::free_bytes(&backup.repo_path),
            };
            match free {
                Some(free) if free < backrest::LOW_SPACE_BYTES => {
                    format!("{cause} (the backup location has {} KiB free)", free / 1024)
                }
                _ => cause,
            }
        });
        self.observed
            .lock()
            .expect("observed lock")
            .backup
            .get_or_insert_with(Default::default)
            .archiver = Some(archiver);
        self.finish_job(spec).await?;
        if self.backups.job.is_some() {
            return Ok(());
        }
        let stanza = backup.stanza.clone();
        let (user, paths) = (self.user, self.paths.clone());
        if !in_recovery && self.backups.stanza_ready.as_deref() != Some(stanza.as_str()) {
            let job_stanza = stanza.clone();
            let handle = tokio::spawn(async move {
                backrest::stanza_create(&user, &paths, &job_stanza).await?;
                Ok(None)
            });
            self.backups.job = Some((Job::StanzaCreate(stanza), handle));
            return Ok(());
        }
        let timeline = self.observed.lock().expect("observed lock").timeline;
        if let Some(timeline) = timeline.filter(|t| !in_recovery && *t > 1) {
            if self.backups.caught_up_timeline != Some(timeline) {
                let job_stanza = stanza.clone();
                let handle = tokio::spawn(async move {
                    backrest::push_older_timelines(&user, &paths, &job_stanza, timeline).await?;
                    Ok(None)
                });
                self.backups.job = Some((Job::CatchUp(timeline), handle));
                return Ok(());
            }
        }
        let asked = backup.run.clone().filter(|run| {
            self.backups
                .last_run
                .as_ref()
                .is_none_or(|last| run.id > last.id)
        });
        if let Some(run) = asked {
            tracing::info!(db = %spec.db, node = %spec.node, id = run.id, kind = %run.kind, from_standby = run.primary.is_some(), "backup starting");
            let handle = tokio::spawn(async move {
                backrest::backup(
                    &user,
                    &paths,
                    port,
                    &stanza,
                    &run.kind,
                    run.primary.as_ref(),
                )
                .await?;
                Ok(Some(backrest::info(&user, &paths, &stanza).await?))
            });
            self.backups.job = Some((Job::Backup(backup.run.as_ref().map_or(0, |r| r.id)), handle));
            return Ok(());
        }
        let info_due = self
            .backups
            .info_at
            .is_none_or(|at| at.elapsed() > INFO_EVERY);
        if !in_recovery && info_due {
            self.backups.info_at = Some(Instant::now());
            let handle =
                tokio::spawn(
                    async move { Ok(Some(backrest::info(&user, &paths, &stanza).await?)) },
                );
            self.backups.job = Some((Job::Info, handle));
        }
        Ok(())
    }

    /// Takes the result of a finished job.
    async fn finish_job(&mut self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let finished = self
            .backups
            .job
            .as_ref()
            .is_some_and(|(_, h)| h.is_finished());
        if !finished {
            return Ok(());
        }
        let Some((job, handle)) = self.backups.job.take() else {
            return Ok(());
        };
        let output = match handle.await {
            Ok(output) => output,
            Err(error) => Err(anyhow::anyhow!("backup job panicked: {error}")),
        };
        let files = BackrestPaths::of(&self.paths);
        match (job, output) {
            (Job::StanzaCreate(stanza), Ok(_)) => {
                pgfleet_tls::write_durable(&files.dir.join("stanza"), stanza.as_bytes())?;
                tracing::info!(db = %spec.db, node = %spec.node, stanza = %stanza, "stanza ready");
                self.backups.stanza_ready = Some(stanza);
                self.backups.error = None;
            }
            (Job::StanzaCreate(_), Err(error)) => return Err(error),
            (Job::CatchUp(timeline), Ok(_)) => {
                tracing::info!(db = %spec.db, node = %spec.node, timeline, "older timelines' WAL pushed to the archive");
                self.backups.caught_up_timeline = Some(timeline);
            }
            (Job::CatchUp(_), Err(error)) => return Err(error),
            (Job::Backup(id), result) => {
                let (ok, error, label) = match &result {
                    Ok(info) => (true, None, info.as_ref().and_then(backrest::newest_label)),
                    Err(error) => (false, Some(format!("{error:#}")), None),
                };
                if let Ok(Some(info)) = result {
                    self.store_info(info);
                }
                tracing::info!(db = %spec.db, node = %spec.node, id, ok, label = ?label, error = ?error, "backup finished");
                let last = BackupRunResult {
                    id,
                    ok,
                    error,
                    label,
                };
                pgfleet_tls::write_durable(
                    &files.dir.join("last-run.json"),
                    &serde_json::to_vec(&last)?,
                )?;
                self.backups.last_run = Some(last);
            }
            (Job::Info, Ok(Some(info))) => self.store_info(info),
            (Job::Info, Ok(None)) => {}
            (Job::Info, Err(error)) => {
                tracing::warn!(db = %spec.db, node = %spec.node, error = %format!("{error:#}"), "pgbackrest info failed")
            }
        }
        Ok(())
    }

    fn store_info(&mut self, info: serde_json::Value) {
        self.backups.info_at = Some(Instant::now());
        let mut observed = self.observed.lock().expect("observed lock");
        let backup = observed.backup.get_or_insert_with(Default::default);
        backup.info = Some(pgfleet_core::backup::parse_info(&backup.stanza, &info));
        backup.info_at_ms = Some(now_ms());
    }

    async fn read_archiver(&self) -> anyhow::Result<ArchiverObserved> {
        let Some(client) = self.client.as_ref() else {
            return Ok(ArchiverObserved::default());
        };
        let row = client
            .query_one(
                "SELECT archived_count, last_archived_wal, \
                        (EXTRACT(EPOCH FROM last_archived_time) * 1000)::bigint, \
                        failed_count, last_failed_wal, \
                        (EXTRACT(EPOCH FROM last_failed_time) * 1000)::bigint \
                 FROM pg_stat_archiver",
                &[],
            )
            .await?;
        let status = self.paths.data.join("pg_wal").join("archive_status");
        let pending = std::fs::read_dir(status)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
                    .count() as u64
            })
            .unwrap_or(0);
        Ok(ArchiverObserved {
            archived_count: row.get(0),
            last_archived_wal: row.get(1),
            last_archived_at_ms: row.get(2),
            failed_count: row.get(3),
            last_failed_wal: row.get(4),
            last_failed_at_ms: row.get(5),
            pending_segments: pending,
        })
    }

    fn report_backup(&self, spec: &InstanceSpec, backup: &BackupSpec) {
        let mut observed = self.observed.lock().expect("observed lock");
        let report: &mut BackupObserved = observed.backup.get_or_insert_with(Default::default);
        report.stanza = backup.stanza.clone();
        report.stanza_ready = self.backups.stanza_ready.as_deref() == Some(backup.stanza.as_str());
        report.error = self.backups.error.clone();
        report.last_run = self.backups.last_run.clone();
        report.location = Some(PgLocation {
            data_dir: self.paths.data.display().to_string(),
            socket_dir: self.paths.socket_dir.display().to_string(),
            port: spec.port,
        });
    }
}
