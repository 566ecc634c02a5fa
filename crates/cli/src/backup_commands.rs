//! Backup commands: `pgfleet backup-location create|list|show|delete`,
//! `pgfleet db backup|backups|backup-policy set`, and the backup and
//! restore options of `pgfleet db create`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use pgfleet_core::backup::{
    BackupListView, BackupLocation, BackupPolicyRequest, CreateS3Location, RestoreRequest,
    S3Credentials,
};

use crate::globals::{client, Globals};
use crate::output::{print_json, wait};

#[derive(Subcommand, Debug)]
pub enum BackupLocationCommand {
    /// Add a location (checked: the folder is made if missing and written
    /// to; in a bucket, a probe object is written and deleted).
    Create {
        name: String,
        /// A folder; in production a mount every host shares.
        #[arg(
            long,
            required_unless_present = "s3_endpoint",
            conflicts_with = "s3_endpoint"
        )]
        posix: Option<String>,
        #[command(flatten)]
        s3: S3Args,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// A location and the stanzas (one per database) it holds.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Refused while a database's policy names it; its files stay.
    Delete { name: String },
}

/// An S3 location of `backup-location create`. The access key comes from
/// `--s3-key-file` or from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
/// never from the command line.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct S3Args {
    /// `https://host[:port]` of an S3-protocol server.
    #[arg(long, requires_all = ["bucket", "region"])]
    pub s3_endpoint: Option<String>,
    #[arg(long, requires = "s3_endpoint")]
    pub bucket: Option<String>,
    #[arg(long, requires = "s3_endpoint")]
    pub region: Option<String>,
    /// Prefix in the bucket (default /); each database gets <path>/<stanza>.
    #[arg(long, requires = "s3_endpoint")]
    pub path: Option<String>,
    /// A file (mode 0600) with the access key id on its first line and the
    /// secret access key on its second.
    #[arg(long, requires = "s3_endpoint")]
    pub s3_key_file: Option<PathBuf>,
    /// PEM of the CA that signed the endpoint's certificate (a private CA).
    #[arg(long, requires = "s3_endpoint")]
    pub s3_ca_file: Option<PathBuf>,
}

impl S3Args {
    fn request(&self) -> anyhow::Result<Option<CreateS3Location>> {
        let Some(endpoint) = self.s3_endpoint.clone() else {
            return Ok(None);
        };
        let credentials = match &self.s3_key_file {
            Some(path) => read_key_file(path)?,
            None => credentials_from_environment()?,
        };
        let ca_pem = match &self.s3_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the S3 CA file {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Some(CreateS3Location {
            endpoint,
            bucket: self.bucket.clone().unwrap_or_default(),
            region: self.region.clone().unwrap_or_default(),
            path: self.path.clone(),
            ca_pem,
            credentials,
        }))
    }
}

/// The access key id and secret of a key file, which only its owner may read.
fn read_key_file(path: &Path) -> anyhow::Result<S3Credentials> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the S3 key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "the S3 key file {} is readable by others (mode {mode:o}): chmod 600 it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the S3 key file {}", path.display()))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next(), lines.next()) {
        (Some(id), Some(secret), None) => Ok(S3Credentials {
            access_key_id: id.to_string(),
            secret_access_key: secret.to_string(),
        }),
        _ => anyhow::bail!(
            "the S3 key file {} must hold two lines: the access key id, then the secret access key",
            path.display()
        ),
    }
}

fn credentials_from_environment() -> anyhow::Result<S3Credentials> {
    let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (read("AWS_ACCESS_KEY_ID"), read("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(S3Credentials {
            access_key_id,
            secret_access_key,
        }),
        _ => anyhow::bail!(
            "an S3 location needs an access key: --s3-key-file FILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
        ),
    }
}

/// Backup settings of `db create` and `db backup-policy set`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Archive WAL and keep backups in this location.
    #[arg(long)]
    pub backup_location: Option<String>,
    /// Scheduled backups, a five-field cron expression in UTC ('0 2 * * *').
    #[arg(long, requires = "backup_location")]
    pub backup_schedule: Option<String>,
    /// Full backups kept (default 7).
    #[arg(long, requires = "backup_location")]
    pub retention_full: Option<u32>,
    /// Seconds after which an idle database's WAL is archived (default 60).
    #[arg(long, requires = "backup_location")]
    pub archive_timeout: Option<u32>,
}

impl PolicyArgs {
    pub fn request(&self) -> Option<BackupPolicyRequest> {
        Some(BackupPolicyRequest {
            location: self.backup_location.clone()?,
            schedule: self.backup_schedule.clone(),
            retention_full: self.retention_full,
            archive_timeout_secs: self.archive_timeout,
        })
    }
}

/// Restore options of `db create`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RestoreArgs {
    /// Make the database from this database's backups (it may be deleted).
    #[arg(long)]
    pub restore_from: Option<String>,
    /// Restore this backup (its label, see `db backups`).
    #[arg(long, requires = "restore_from", conflicts_with_all = ["time", "latest"])]
    pub backup: Option<String>,
    /// Recover to this time: 'YYYY-MM-DD HH:MM:SS+00'.
    #[arg(long, requires = "restore_from", conflicts_with = "latest")]
    pub time: Option<String>,
    /// Recover all archived WAL (the default with --restore-from).
    #[arg(long, requires = "restore_from")]
    pub latest: bool,
}

impl RestoreArgs {
    pub fn request(&self) -> Option<RestoreRequest> {
        Some(RestoreRequest {
            from: self.restore_from.clone()?,
            backup: self.backup.clone(),
            time: self.time.clone(),
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum BackupPolicyCommand {
    /// Set (or change) a database's backup policy.
    Set {
        db: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

pub async fn location(globals: &Globals, command: &BackupLocationCommand) -> anyhow::Result<()> {
    let client = client(globals)?;
    match command {
        BackupLocationCommand::Create { name, posix, s3 } => {
            let location = match (posix, s3.request()?) {
                (Some(path), None) => client.create_backup_location(name, path).await?,
                (None, Some(bucket)) => client.create_s3_backup_location(name, bucket).await?,
                _ => anyhow::bail!("give --posix PATH or --s3-endpoint URL"),
            };
            println!(
                "backup location {} created at {}",
                location.name,
                where_it_is(&location)
            );
        }
        BackupLocationCommand::List { json } => {
            let locations = client.backup_locations().await?;
            if *json {
                return print_json(&locations);
            }
            println!("{:<16} {:<6} {:<8} PATH", "NAME", "KIND", "STANZAS");
            for location in locations {
                println!(
                    "{:<16} {:<6} {:<8} {}",
                    location.name,
                    location.kind,
                    location.stanzas.len(),
                    where_it_is(&location)
                );
            }
        }
        BackupLocationCommand::Show { name, json } => {
            let location = client.backup_location(name).await?;
            if *json {
                return print_json(&location);
            }
            print!("{}", render_location(&location));
        }
        BackupLocationCommand::Delete { name } => {
            client.delete_backup_location(name).await?;
            println!("backup location {name} deleted (its files stay)");
        }
    }
    Ok(())
}

/// The folder of a POSIX location; endpoint, bucket and prefix of an S3 one.
fn where_it_is(location: &BackupLocation) -> String {
    match &location.s3 {
        Some(s3) => format!(
            "{}/{}{}",
            s3.endpoint,
            s3.bucket,
            location.path.trim_end_matches('/')
        ),
        None => location.path.clone(),
    }
}

fn render_location(location: &BackupLocation) -> String {
    let mut text = format!(
        "backup location {} ({}) at {}\n",
        location.name,
        location.kind,
        where_it_is(location)
    );
    if let Some(s3) = &location.s3 {
        text.push_str(&format!(
            "region {}, TLS checked against {}\n",
            s3.region,
            if s3.ca_pem.is_some() {
                "the location's CA"
            } else {
                "the system's CAs"
            }
        ));
    }
    text.push_str(&format!("{:<32} {:<20} STATE\n", "STANZA", "DATABASE"));
    for stanza in &location.stanzas {
        let state = if stanza.deleted {
            "database deleted"
        } else {
            "in use"
        };
        text.push_str(&format!(
            "{:<32} {:<20} {state}\n",
            stanza.stanza, stanza.db
        ));
    }
    text
}

pub async fn set_policy(globals: &Globals, command: &BackupPolicyCommand) -> anyhow::Result<()> {
    let client = client(globals)?;
    let BackupPolicyCommand::Set { db, policy } = command;
    let Some(request) = policy.request() else {
        anyhow::bail!("--backup-location is required");
    };
    let stored = client.set_backup_policy(db, &request).await?;
    println!(
        "database {db} archives to {} (stanza {}), {} full backups kept{}",
        stored.location,
        stored.stanza,
        stored.retention_full,
        stored
            .schedule
            .map(|s| format!(", backups at '{s}' UTC"))
            .unwrap_or_default()
    );
    Ok(())
}

pub async fn backup(
    globals: &Globals,
    db: &str,
    kind: Option<&str>,
    no_wait: bool,
) -> anyhow::Result<()> {
    let client = client(globals)?;
    let task = client.backup(db, kind).await?;
    if no_wait {
        println!("{}", task.task_id);
        return Ok(());
    }
    wait(&client, task.task_id).await?;
    let done = client.task(task.task_id).await?;
    let params = &done.params;
    let from = match params["from_standby"].as_bool() {
        Some(true) => "standby",
        _ => "primary",
    };
    println!(
        "backup {} of {db} taken from the {from} {}",
        params["label"].as_str().unwrap_or("?"),
        params["node"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub async fn backups(globals: &Globals, db: &str, json: bool) -> anyhow::Result<()> {
    let client = client(globals)?;
    let list = client.backups(db).await?;
    if json {
        return print_json(&list);
    }
    print!("{}", render_backups(&list));
    Ok(())
}

fn utc(ms: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) else {
        return ms.to_string();
    };
    let Ok(format) = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day] [hour]:[minute]:[second]+00",
    ) else {
        return ms.to_string();
    };
    at.format(&format).unwrap_or_else(|_| ms.to_string())
}

fn render_backups(list: &BackupListView) -> String {
    let mut text = String::new();
    let window = match (list.earliest_restorable_ms, list.latest_restorable_ms) {
        (Some(earliest), Some(latest)) => format!("{} .. {}", utc(earliest), utc(latest)),
        (Some(earliest), None) => format!("from {}", utc(earliest)),
        _ => "none (no backup yet)".into(),
    };
    text.push_str(&format!("recoverable window: {window}\n"));
    if let (Some(min), Some(max)) = (&list.wal_min, &list.wal_max) {
        text.push_str(&format!("WAL in the archive: {min} .. {max}\n"));
    }
    if let Some(archiver) = &list.archiver {
        text.push_str(&format!(
            "archiving: {} archived, {} failed, {} segments waiting{}\n",
            archiver.archived_count,
            archiver.failed_count,
            archiver.pending_segments,
            if archiver.failing() { " (FAILING)" } else { "" }
        ));
    }
    text.push_str(&format!(
        "{:<28} {:<5} {:<23} {:<23} {:>10} {:>10}  WAL\n",
        "LABEL", "TYPE", "START", "STOP", "SIZE", "STORED"
    ));
    for backup in &list.backups {
        text.push_str(&format!(
            "{:<28} {:<5} {:<23} {:<23} {:>10} {:>10}  {}..{}\n",
            backup.label,
            backup.r#type,
            utc(backup.start_ms),
            utc(backup.stop_ms),
            backup.size_bytes,
            backup.repository_size_bytes,
            backup.wal_start.as_deref().unwrap_or("?"),
            backup.wal_stop.as_deref().unwrap_or("?"),
        ));
    }
    text
}
