//! Backup commands: `pgfleet backup-location create|list|show|delete`,
//! `pgfleet db backup|backups|backup-policy set`, and the backup and
//! restore options of `pgfleet db create`.

use clap::Subcommand;
use pgfleet_core::backup::{BackupListView, BackupLocation, BackupPolicyRequest, RestoreRequest};

use crate::globals::{client, Globals};
use crate::output::{print_json, wait};

#[derive(Subcommand, Debug)]
pub enum BackupLocationCommand {
    /// Add a location (checked: the folder is made if missing and written to).
    Create {
        name: String,
        /// A folder; in production a mount every host shares.
        #[arg(long)]
        posix: String,
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
        BackupLocationCommand::Create { name, posix } => {
            let location = client.create_backup_location(name, posix).await?;
            println!(
                "backup location {} created at {}",
                location.name, location.path
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
                    location.path
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

fn render_location(location: &BackupLocation) -> String {
    let mut text = format!(
        "backup location {} ({}) at {}\n",
        location.name, location.kind, location.path
    );
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
