//! Backups and point-in-time recovery on real pgBackRest and PostgreSQL:
//! restores hold exactly the rows committed before their target, across a
//! failover and a switchover; WAL archiving follows the new primary with
//! no segment missing; a failing archive degrades the database with its reason (and a
//! deleted database's backups stay restorable); viewers cannot touch
//! backups.

mod common;
#[path = "backup/kit.rs"]
mod kit;

use std::time::{Duration, Instant};

use common::{eventually, Fleet};
use kit::{archived_segments, connect, ids, insert, stanza, TinyDisk};
use pgfleet_core::NodeRole;

#[tokio::test(flavor = "multi_thread")]
async fn restores_hold_exactly_the_rows_committed_before_their_target_across_a_failover_and_a_switchover(
) {
    let fleet = Fleet::up(4);
    let locations = fleet.cli_ok(&["backup-location", "list"]);
    assert!(locations.contains("local"), "{locations}");
    fleet.cli_ok(&[
        "db",
        "create",
        "shop",
        "--backup-location",
        "local",
        "--archive-timeout",
        "5",
    ]);
    fleet.cli_ok(&["replica", "create", "shop", "--name", "shop-r1"]);
    fleet.cli_ok(&["replica", "create", "shop", "--name", "shop-r2"]);
    let old_primary = common::wait_ha_settled(&fleet, "shop", Duration::from_secs(60)).await;
    let started = Instant::now();
    let first = fleet.cli_ok(&["db", "backup", "shop"]);
    println!("first backup (empty database): {:?}", started.elapsed());
    assert!(first.contains("taken from the standby shop-r"), "{first}");

    let client = connect(&fleet, "shop").await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    insert(&client, 1..=100).await;
    // pgBackRest restores to a time from the newest backup that stopped in
    // an earlier second: the target is at least a second past the first.
    let first_stop_ms = fleet.client().backups("shop").await.unwrap().backups[0].stop_ms;
    eventually(
        Duration::from_secs(10),
        "a second past the first backup",
        || async {
            let row = client
                .query_one(
                    "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) >= first_stop_ms + 1000).then_some(())
        },
    )
    .await;
    let target: String = client
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'utc', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    insert(&client, 101..=200).await;
    drop(client);

    // Fail over: the primary's host dies.
    let view = fleet.client().database("shop", false).await.unwrap();
    let host = view
        .nodes
        .iter()
        .find(|n| n.name == old_primary)
        .unwrap()
        .host
        .clone();
    assert!(fleet.kill_host(&host) > 0);
    let client = fleet.client();
    let new_primary = eventually(Duration::from_secs(60), "a new primary", || async {
        let view = client.database("shop", false).await.ok()?;
        view.primary.filter(|p| *p != old_primary)
    })
    .await;
    let client = connect(&fleet, "shop").await;
    insert(&client, 201..=300).await;
    drop(client);
    // And a switchover to the other surviving node.
    let survivor = eventually(Duration::from_secs(60), "a streaming standby", || async {
        let view = fleet.client().database("shop", false).await.ok()?;
        view.nodes
            .iter()
            .find(|n| {
                n.role == NodeRole::Replica
                    && n.name != old_primary
                    && matches!(
                        n.replication_status,
                        Some(pgfleet_core::api::ReplicationStatus::Active)
                    )
            })
            .map(|n| n.name.clone())
    })
    .await;
    fleet.cli_ok(&["replica", "promote", "shop", &survivor]);
    let client = connect(&fleet, "shop").await;
    insert(&client, 301..=400).await;
    drop(client);
    let second = fleet.cli_ok(&["db", "backup", "shop"]);
    assert!(second.contains("taken from the"), "{second}");

    // No WAL segment is missing across the promotion: the new timeline's
    // history is archived and segment numbers run on without a hole.
    let stanza = stanza(&fleet, "shop");
    let archive = fleet
        .dir()
        .join("backups/local")
        .join(&stanza)
        .join("archive")
        .join(&stanza);
    let (segments, histories) = archived_segments(&archive);
    for timeline in ["00000002", "00000003"] {
        assert!(
            histories.iter().any(|h| h.starts_with(timeline)),
            "timeline {timeline}'s history archived: {histories:?} ({new_primary}, then {survivor} promoted)"
        );
    }
    let mut all: Vec<u64> = segments.values().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let (low, high) = (all[0], *all.last().unwrap());
    assert_eq!(
        all.len() as u64,
        high - low + 1,
        "every segment from {low:X} to {high:X} is archived: {segments:X?}"
    );
    assert!(
        segments.len() >= 3,
        "segments of the three timelines: {segments:X?}"
    );

    let list: serde_json::Value =
        serde_json::from_str(&fleet.cli_ok(&["db", "backups", "shop", "--json"])).unwrap();
    assert_eq!(list["backups"].as_array().unwrap().len(), 2, "{list}");
    let earliest = list["earliest_restorable_ms"].as_i64().unwrap();
    let latest = list["latest_restorable_ms"].as_i64().unwrap();
    assert!(earliest <= latest, "{list}");

    let started = Instant::now();
    fleet.cli_ok(&[
        "db",
        "create",
        "shop-at-t",
        "--restore-from",
        "shop",
        "--time",
        &target,
    ]);
    println!("point-in-time restore ready in {:?}", started.elapsed());
    assert_eq!(
        ids(&fleet, "shop-at-t").await,
        (1..=100).collect::<Vec<i32>>()
    );
    fleet.cli_ok(&[
        "db",
        "create",
        "shop-latest",
        "--restore-from",
        "shop",
        "--latest",
    ]);
    assert_eq!(
        ids(&fleet, "shop-latest").await,
        (1..=400).collect::<Vec<i32>>()
    );
    // A restored database is a standalone one with its own admin password.
    let restored = fleet.client().database("shop-latest", true).await.unwrap();
    let source = fleet.client().database("shop", true).await.unwrap();
    assert_eq!(restored.nodes.len(), 1);
    assert_eq!(restored.nodes[0].role, NodeRole::Primary);
    assert_ne!(restored.admin_password, source.admin_password);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_archive_degrades_the_database_with_its_reason_and_an_event() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&[
        "db",
        "create",
        "ledger",
        "--backup-location",
        "local",
        "--archive-timeout",
        "2",
    ]);
    let out = fleet.cli_ok(&["db", "backup", "ledger"]);
    assert!(out.contains("taken from the primary ledger"), "{out}");
    let client = connect(&fleet, "ledger").await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let api = fleet.client();
    // RPO of an idle database: a commit's WAL segment reaches the archive
    // within archive_timeout (2 s here) plus the push itself.
    insert(&client, 1..=1).await;
    let committed_ms = pgfleet_core::time::now_ms();
    let segment: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .unwrap()
        .get(0);
    let archived_ms = eventually(Duration::from_secs(30), "the commit archived", || async {
        let archiver = api.backups("ledger").await.ok()?.archiver?;
        let last = archiver.last_archived_wal?;
        (last.as_str() >= segment.as_str()).then_some(archiver.last_archived_at_ms?)
    })
    .await;
    let rpo_ms = archived_ms - committed_ms;
    println!("idle database RPO: {rpo_ms} ms (archive_timeout 2 s)");
    assert!(rpo_ms <= 3000, "{rpo_ms} ms");

    // The location's archive folder becomes read-only.
    let stanza = stanza(&fleet, "ledger");
    let archive = fleet
        .dir()
        .join("backups/local")
        .join(&stanza)
        .join("archive");
    let chmod = |mode: &str| {
        let status = std::process::Command::new("chmod")
            .args(["-R", mode])
            .arg(&archive)
            .status()
            .unwrap();
        assert!(status.success());
    };
    chmod("a-w");
    insert(&client, 2..=2).await;
    let view = eventually(Duration::from_secs(60), "the database degraded", || async {
        let view = api.database("ledger", false).await.ok()?;
        view.health
            .reasons
            .iter()
            .any(|r| r.contains("WAL archiving fails") && r.contains("Permission denied"))
            .then_some(view)
    })
    .await;
    assert!(view.health.degraded, "{:?}", view.health);
    let shown = fleet.cli_ok(&["db", "show", "ledger"]);
    assert!(shown.contains("WAL archiving fails"), "{shown}");
    let failing = eventually(
        Duration::from_secs(30),
        "an archive_failing event",
        || async {
            let events = api.events("ledger").await.ok()?;
            events.into_iter().find(|e| e["kind"] == "archive_failing")
        },
    )
    .await;
    assert!(
        failing["reason"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{failing}"
    );
    let list = api.backups("ledger").await.unwrap();
    let archiver = list.archiver.unwrap();
    assert!(
        archiver.failing() && archiver.failed_count > 0,
        "{archiver:?}"
    );
    assert!(archiver.pending_segments >= 1, "{archiver:?}");

    // Writable again: the waiting WAL is archived and the health recovers.
    chmod("u+w");
    eventually(
        Duration::from_secs(60),
        "the database healthy again",
        || async {
            let view = api.database("ledger", false).await.ok()?;
            (!view.health.degraded).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "an archive_recovered event",
        || async {
            let events = api.events("ledger").await.ok()?;
            events
                .iter()
                .any(|e| e["kind"] == "archive_recovered")
                .then_some(())
        },
    )
    .await;

    // The database deleted, its backups stay restorable.
    drop(client);
    fleet.cli_ok(&["db", "delete", "ledger"]);
    let shown = fleet.cli_ok(&["backup-location", "show", "local"]);
    assert!(
        shown.contains(&stanza) && shown.contains("database deleted"),
        "{shown}"
    );
    fleet.cli_ok(&["db", "create", "ledger-again", "--restore-from", "ledger"]);
    assert_eq!(ids(&fleet, "ledger-again").await, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_cannot_touch_backups_locations_are_checked_and_repositories_are_private() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "vault", "--backup-location", "local"]);
    let viewer_token = fleet
        .cli_ok(&["token", "create", "--role", "viewer", "--name", "reader"])
        .trim()
        .to_string();
    let viewer = pgfleet::client::Client::with_ca(&fleet.api, &viewer_token, fleet.ca().as_deref());
    let forbidden = |result: Result<(), pgfleet::client::ClientError>| {
        assert_eq!(result.unwrap_err().status, Some(403));
    };
    let spare = fleet.dir().join("backups/spare").display().to_string();
    forbidden(
        viewer
            .create_backup_location("spare", &spare)
            .await
            .map(|_| ()),
    );
    forbidden(viewer.delete_backup_location("local").await);
    forbidden(viewer.backup("vault", None).await.map(|_| ()));
    let policy = pgfleet_core::backup::BackupPolicyRequest {
        location: "local".into(),
        ..Default::default()
    };
    forbidden(viewer.set_backup_policy("vault", &policy).await.map(|_| ()));
    let restore = pgfleet_core::api::CreateDatabaseRequest {
        name: "vault-copy".into(),
        version: None,
        admin_user: None,
        database: None,
        backup_policy: None,
        restore: Some(pgfleet_core::backup::RestoreRequest {
            from: "vault".into(),
            backup: None,
            time: None,
        }),
    };
    forbidden(viewer.create_database(&restore).await.map(|_| ()));
    assert!(!std::path::Path::new(&spare).exists());
    // Viewers read.
    assert_eq!(viewer.backup_locations().await.unwrap().len(), 1);

    let admin = fleet.client();
    let refused = |path: String| {
        let admin = admin.clone();
        async move {
            let error = admin
                .create_backup_location("elsewhere", &path)
                .await
                .unwrap_err();
            assert_eq!(error.status, Some(400), "{path}: {}", error.message);
            error.message
        }
    };
    assert!(refused("relative/dir".into()).await.contains("absolute"));
    let inside = fleet.dir().join("hosts").display().to_string();
    assert!(refused(inside).await.contains("data dir"));
    assert!(refused("/proc/pgfleet-backups".into())
        .await
        .contains("cannot be created"));
    let in_use = admin.delete_backup_location("local").await.unwrap_err();
    assert_eq!(in_use.status, Some(409));
    assert!(in_use.message.contains("vault"), "{}", in_use.message);
    let unknown = fleet.cli(&["db", "create", "other", "--backup-location", "nowhere"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no backup location"));
    let none = fleet.cli(&["db", "create", "copy", "--restore-from", "never-existed"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("no backups of database"));
    admin.create_backup_location("spare", &spare).await.unwrap();
    admin.delete_backup_location("spare").await.unwrap();

    // One database's OS user cannot read another's repository.
    let root = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        println!("not root: databases share one OS user, no repository separation to check");
        return;
    }
    fleet.cli_ok(&["db", "create", "other", "--backup-location", "local"]);
    let repo = fleet
        .dir()
        .join("backups/local")
        .join(stanza(&fleet, "vault"));
    let list_as = |user: &str| {
        std::process::Command::new("su")
            .args(["-s", "/bin/sh", user, "-c"])
            .arg(format!("ls {}/backup", repo.display()))
            .output()
            .unwrap()
    };
    eventually(Duration::from_secs(30), "vault's stanza made", || async {
        list_as("pgf-vault").status.success().then_some(())
    })
    .await;
    let denied = list_as("pgf-other");
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_set_on_an_existing_database_archives_and_its_backups_restore() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "older"]);
    let client = connect(&fleet, "older").await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    insert(&client, 1..=3).await;
    drop(client);
    let set = fleet.cli_ok(&[
        "db",
        "backup-policy",
        "set",
        "older",
        "--backup-location",
        "local",
        "--backup-schedule",
        "0 2 * * *",
        "--retention-full",
        "2",
    ]);
    assert!(set.contains("2 full backups kept"), "{set}");
    assert!(set.contains("'0 2 * * *'"), "{set}");
    // archive_mode needs a restart: the agent does it, then the backup runs.
    let out = fleet.cli_ok(&["db", "backup", "older"]);
    assert!(out.contains("taken from the primary older"), "{out}");
    let client = connect(&fleet, "older").await;
    insert(&client, 4..=5).await;
    drop(client);
    fleet.cli_ok(&["db", "backup", "older", "--type", "incr"]);
    let list = fleet.client().backups("older").await.unwrap();
    let kinds: Vec<&str> = list.backups.iter().map(|b| b.r#type.as_str()).collect();
    assert_eq!(kinds, ["full", "incr"]);
    fleet.cli_ok(&["db", "create", "older-copy", "--restore-from", "older"]);
    assert_eq!(ids(&fleet, "older-copy").await, vec![1, 2, 3, 4, 5]);
    // To the end of one backup: the full one holds the first three rows.
    let full = &list.backups[0].label;
    fleet.cli_ok(&[
        "db",
        "create",
        "older-full",
        "--restore-from",
        "older",
        "--backup",
        full,
    ]);
    assert_eq!(ids(&fleet, "older-full").await, vec![1, 2, 3]);
    let listed = fleet.cli_ok(&["db", "backups", "older"]);
    assert!(
        listed.contains(full.as_str()) && listed.contains("incr"),
        "{listed}"
    );
    assert!(listed.contains("recoverable window: "), "{listed}");
    let bad = fleet.cli(&["db", "backup", "older", "--type", "weekly"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("full, diff or incr"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_backup_runs_when_its_minute_comes() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&[
        "db",
        "create",
        "nightly",
        "--backup-location",
        "local",
        "--backup-schedule",
        "* * * * *",
    ]);
    let client = fleet.client();
    let task = eventually(
        Duration::from_secs(150),
        "a scheduled backup finished",
        || async {
            let tasks = client.tasks().await.ok()?;
            tasks.into_iter().find(|t| {
                t.target == "nightly"
                    && t.kind == pgfleet_core::TaskKind::Backup
                    && t.params["scheduled"] == true
                    && t.state.is_finished()
            })
        },
    )
    .await;
    assert_eq!(task.state, pgfleet_core::TaskState::Succeeded, "{task:?}");
    let list = client.backups("nightly").await.unwrap();
    assert!(!list.backups.is_empty(), "{list:?}");
    assert_eq!(
        list.policy.and_then(|p| p.schedule).as_deref(),
        Some("* * * * *")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_backup_disk_degrades_the_database_and_says_how_much_space_is_left() {
    let Some(disk) = TinyDisk::mount("1m") else {
        println!("cannot mount a tmpfs here (needs root): skipped");
        return;
    };
    let fleet = Fleet::up(1);
    let path = disk.path.join("repo").display().to_string();
    fleet.cli_ok(&["backup-location", "create", "tiny", "--posix", &path]);
    fleet.cli_ok(&[
        "db",
        "create",
        "filler",
        "--backup-location",
        "tiny",
        "--archive-timeout",
        "2",
    ]);
    let client = connect(&fleet, "filler").await;
    // A few MB of WAL that compresses poorly: it cannot fit in 1 MB.
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, body text); \
             INSERT INTO t SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text) \
             FROM generate_series(1, 60000) g",
        )
        .await
        .unwrap();
    let api = fleet.client();
    let view = eventually(Duration::from_secs(60), "the database degraded", || async {
        let view = api.database("filler", false).await.ok()?;
        view.health
            .reasons
            .iter()
            .any(|r| r.contains("WAL archiving fails") && r.contains("KiB free)"))
            .then_some(view)
    })
    .await;
    assert!(view.health.degraded);
    let reason = &view.health.reasons[0];
    assert!(reason.contains("unable to write"), "{reason}");
    let list = api.backups("filler").await.unwrap();
    assert!(list.archiver.unwrap().failing());
    drop(client);
    drop(fleet);
    drop(disk);
}
