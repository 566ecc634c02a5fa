//! Helpers of the backup tests: connections to a database's primary,
//! committed inserts, the archive's segments, a tiny tmpfs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::common::{eventually, Fleet};

/// Connects to `db`'s primary by its current address (retrying while a
/// failover moves it).
pub async fn connect(fleet: &Fleet, db: &str) -> tokio_postgres::Client {
    eventually(
        Duration::from_secs(60),
        "a connection to the primary",
        || async {
            let output = fleet.cli(&["db", "uri", db, "--resolved"]);
            if !output.status.success() {
                return None;
            }
            let uri = String::from_utf8(output.stdout).ok()?.trim().to_string();
            let (client, connection) = tokio_postgres::connect(&uri, fleet.pg_tls()).await.ok()?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client.query_one("SELECT 1", &[]).await.ok()?;
            Some(client)
        },
    )
    .await
}

/// Inserts `ids` into `t`, one committed transaction each.
pub async fn insert(client: &tokio_postgres::Client, ids: std::ops::RangeInclusive<i32>) {
    for id in ids {
        client
            .execute("INSERT INTO t VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
}

/// The ids in `t` of database `db`.
pub async fn ids(fleet: &Fleet, db: &str) -> Vec<i32> {
    let client = connect(fleet, db).await;
    let rows = client
        .query("SELECT id FROM t ORDER BY id", &[])
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

pub fn stanza(fleet: &Fleet, db: &str) -> String {
    let view: serde_json::Value =
        serde_json::from_str(&fleet.cli_ok(&["db", "show", db, "--json"])).unwrap();
    view["backup_policy"]["stanza"]
        .as_str()
        .unwrap()
        .to_string()
}

/// WAL segment numbers in the archive, by timeline (`.partial` included),
/// and the timeline history files.
pub fn archived_segments(archive: &Path) -> (BTreeMap<u32, Vec<u64>>, Vec<String>) {
    let mut segments: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut histories = Vec::new();
    let mut pending = vec![archive.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else if name.ends_with(".history") {
                histories.push(name);
            } else if name.len() >= 24 && name[..24].chars().all(|c| c.is_ascii_hexdigit()) {
                let timeline = u32::from_str_radix(&name[..8], 16).unwrap();
                let log = u64::from_str_radix(&name[8..16], 16).unwrap();
                let seg = u64::from_str_radix(&name[16..24], 16).unwrap();
                segments
                    .entry(timeline)
                    .or_default()
                    .push(log * 0x100 + seg);
            }
        }
    }
    for numbers in segments.values_mut() {
        numbers.sort_unstable();
        numbers.dedup();
    }
    (segments, histories)
}

/// A tiny tmpfs, unmounted when dropped (after the fleet that used it).
pub struct TinyDisk {
    pub path: std::path::PathBuf,
}

impl TinyDisk {
    pub fn mount(size: &str) -> Option<TinyDisk> {
        let path = std::env::temp_dir().join(format!("pgfleet-tinydisk-{}", std::process::id()));
        std::fs::create_dir_all(&path).ok()?;
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0711"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .ok()?;
        mounted.success().then_some(TinyDisk { path })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir(&self.path);
    }
}
