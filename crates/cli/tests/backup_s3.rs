//! Backups in an S3 bucket, on real pgBackRest and PostgreSQL and a real
//! S3-protocol server over TLS (moto, see `backup/s3_server.rs`): a
//! location is checked when it is created and a refusal says what failed
//! (credentials, bucket, TLS, a key file others can read); a database
//! archives and backs up to the bucket across a failover; restores to a
//! time and to the latest hold exactly the rows committed before their
//! target; the access key never shows in lists, tasks, logs or the store.

mod common;
#[path = "backup/kit.rs"]
#[allow(dead_code)]
mod kit;
#[path = "backup/s3_server.rs"]
mod s3_server;

use std::time::{Duration, Instant};

use common::{eventually, Fleet};
use kit::{connect, ids, insert};
use s3_server::S3Server;

fn failure(output: &std::process::Output) -> String {
    assert!(
        !output.status.success(),
        "expected a refusal, got: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_backups_restore_exactly_the_rows_before_their_target_across_a_failover() {
    let s3 = match S3Server::start("pgfleet-backups").await {
        Ok(server) => server,
        Err(why) => {
            println!("SKIPPED: no S3 server for this test: {why}");
            return;
        }
    };
    let fleet = Fleet::up(3);
    let ca_file = s3.ca_file().display().to_string();
    let create = |name: &str, bucket: &str, extra: &[&str]| {
        let mut args = vec![
            "backup-location",
            "create",
            name,
            "--s3-endpoint",
            &s3.endpoint,
            "--bucket",
            bucket,
            "--region",
            "us-east-1",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let run = |args: &[String], env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fleet.cli_with_env(&args, env)
    };

    // Refusals say what failed.
    let wrong_key = s3.key_file("wrong.key", Some("not-the-secret"));
    let wrong_key = wrong_key.display().to_string();
    let refused = failure(&run(
        &create(
            "bad",
            "pgfleet-backups",
            &["--s3-key-file", &wrong_key, "--s3-ca-file", &ca_file],
        ),
        &[],
    ));
    assert!(refused.contains("credentials were refused"), "{refused}");
    let good_key = s3.key_file("good.key", None);
    let good_key = good_key.display().to_string();
    let refused = failure(&run(
        &create(
            "bad",
            "no-such-bucket",
            &["--s3-key-file", &good_key, "--s3-ca-file", &ca_file],
        ),
        &[],
    ));
    assert!(
        refused.contains("bucket \\\"no-such-bucket\\\" does not exist")
            || refused.contains("bucket \"no-such-bucket\" does not exist"),
        "{refused}"
    );
    let refused = failure(&run(
        &create("bad", "pgfleet-backups", &["--s3-key-file", &good_key]),
        &[],
    ));
    assert!(refused.contains("TLS handshake"), "{refused}");
    {
        use std::os::unix::fs::PermissionsExt;
        let open = s3.key_file("open.key", None);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = failure(&run(
            &create(
                "bad",
                "pgfleet-backups",
                &["--s3-key-file", &open.display().to_string()],
            ),
            &[],
        ));
        assert!(refused.contains("readable by others"), "{refused}");
    }
    let listed = fleet.cli_ok(&["backup-location", "list"]);
    assert!(!listed.contains("bad"), "{listed}");

    // The access key from the environment.
    let created = run(
        &create(
            "bucket",
            "pgfleet-backups",
            &["--path", "/fleet", "--s3-ca-file", &ca_file],
        ),
        &[
            ("AWS_ACCESS_KEY_ID", &s3.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key),
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    fleet.cli_ok(&[
        "db",
        "create",
        "shop",
        "--backup-location",
        "bucket",
        "--archive-timeout",
        "5",
        "--retention-full",
        "2",
    ]);
    fleet.cli_ok(&["replica", "create", "shop", "--name", "shop-r1"]);
    // One standby (HA incomplete, but watched by the monitor): streaming
    // and a caught-up secondary, so it can take over.
    let api = fleet.client();
    let old_primary = eventually(
        Duration::from_secs(120),
        "a streaming secondary",
        || async {
            let view = api.database("shop", false).await.ok()?;
            let standby_ready = view.nodes.iter().any(|n| {
                n.role == pgfleet_core::NodeRole::Replica
                    && matches!(
                        n.replication_status,
                        Some(pgfleet_core::api::ReplicationStatus::Active)
                    )
                    && n.ha_state.as_deref() == Some("secondary")
            });
            standby_ready.then_some(view.primary?)
        },
    )
    .await;
    let refused = failure(&fleet.cli(&["backup-location", "delete", "bucket"]));
    assert!(refused.contains("is used by shop"), "{refused}");
    let started = Instant::now();
    let first = fleet.cli_ok(&["db", "backup", "shop"]);
    println!("first backup to S3: {:?}", started.elapsed());
    assert!(first.contains("taken from the standby shop-r1"), "{first}");

    let client = connect(&fleet, "shop").await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    insert(&client, 1..=100).await;
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
    eventually(Duration::from_secs(60), "a new primary", || async {
        let view = api.database("shop", false).await.ok()?;
        view.primary.filter(|p| *p != old_primary)
    })
    .await;
    let client = connect(&fleet, "shop").await;
    insert(&client, 201..=300).await;
    drop(client);
    // A second full backup (from the new primary, the only node left)
    // also archives the WAL up to its end.
    let second = fleet.cli_ok(&["db", "backup", "shop"]);
    assert!(second.contains("taken from the primary"), "{second}");

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
    println!(
        "point-in-time restore from S3 ready in {:?}",
        started.elapsed()
    );
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
        (1..=300).collect::<Vec<i32>>()
    );

    // Retention (two full backups) expires the oldest at the third.
    fleet.cli_ok(&["db", "backup", "shop"]);
    let list = eventually(
        Duration::from_secs(60),
        "two backups listed after the third",
        || async {
            let list = api.backups("shop").await.ok()?;
            (list.backups.len() == 2 && list.backups[0].stop_ms > first_stop_ms).then_some(list)
        },
    )
    .await;
    println!("kept after expiry: {:?}", list.backups);

    // The secret shows nowhere.
    let secret = s3.secret_access_key.as_str();
    for shown in [
        fleet.cli_ok(&["backup-location", "list", "--json"]),
        fleet.cli_ok(&["backup-location", "list"]),
        fleet.cli_ok(&["backup-location", "show", "bucket", "--json"]),
        fleet.cli_ok(&["backup-location", "show", "bucket"]),
        fleet.cli_ok(&["task", "list", "--json"]),
        fleet.cli_ok(&["db", "show", "shop", "--json"]),
        fleet.cli_ok(&["db", "show", "shop-latest", "--json"]),
    ] {
        assert!(!shown.contains(secret), "the secret in {shown}");
        assert!(!shown.contains(&s3.access_key_id), "the key id in {shown}");
    }
    let shown = fleet.cli_ok(&["backup-location", "show", "bucket"]);
    assert!(shown.contains("pgfleet-backups/fleet"), "{shown}");
    let mut logs = vec![fleet.dir().join("up.log")];
    for entry in std::fs::read_dir(fleet.dir().join("hosts")).unwrap() {
        logs.push(entry.unwrap().path().join("agent.log"));
    }
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!text.contains(secret), "the secret in {}", log.display());
    }
    let store = std::fs::read(fleet.dir().join("pgfleet.db")).unwrap();
    let clear = store
        .windows(secret.len())
        .any(|window| window == secret.as_bytes());
    assert!(!clear, "the secret in clear in the store");
}
