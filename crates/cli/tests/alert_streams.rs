//! Alerts about WAL streams against live fleets and a real HTTP receiver on
//! loopback: a replica cut off from its primary raises a signed
//! `replica_not_streaming` once `--alert-not-streaming-secs` passed, and
//! `replica_streaming` when healed; a backup location that refuses writes
//! raises `archive_failing`, and `archive_recovered` once writable again.

mod common;
#[path = "backup/kit.rs"]
#[allow(dead_code)]
mod kit;
#[path = "alerts/receiver.rs"]
mod receiver;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, Fleet};
use pgfleet_core::NodeRole;
use receiver::{alerts, receiver, secret_file, signed_alert};

const SECRET: &str = "stream-alert-signing-secret-31ab";

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_cut_off_from_its_primary_is_alerted_once_and_cleared() {
    if let Some(reason) = Fleet::netns_unavailable() {
        eprintln!("SKIPPED: network namespaces are unavailable here: {reason}");
        return;
    }
    let fleet = Fleet::up_with(4, &["--netns", "--alert-not-streaming-secs", "3"]);
    let (url, received) = receiver(Arc::new(AtomicUsize::new(0))).await;
    let file = secret_file(&fleet, SECRET);
    fleet.cli_ok(&[
        "alert-target",
        "create",
        "dba",
        "--webhook",
        &url,
        "--secret-file",
        &file,
        "--events",
        "replica_not_streaming,replica_streaming",
    ]);
    fleet.cli_ok(&["db", "create", "stream-db"]);
    fleet.cli_ok(&["replica", "create", "stream-db", "--name", "r1"]);
    fleet.cli_ok(&["replica", "create", "stream-db", "--name", "r2"]);
    let primary = common::wait_ha_settled(&fleet, "stream-db", Duration::from_secs(90)).await;
    let view = fleet.client().database("stream-db", false).await.unwrap();
    let host_of = |name: &str| {
        view.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap()
            .host
            .clone()
    };
    let replica = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Replica)
        .unwrap()
        .name
        .clone();
    let (primary_host, replica_host) = (host_of(&primary), host_of(&replica));
    assert!(
        alerts(&received).is_empty(),
        "a healthy database raised {:?}",
        alerts(&received)
    );

    // Cut the link between the replica's host and the primary's: the host
    // stays connected to the control plane, its WAL receiver times out.
    let cut_at = Instant::now();
    fleet.cut(&replica_host, &primary_host).unwrap();
    let alert = eventually(
        Duration::from_secs(60),
        "a replica_not_streaming alert",
        || {
            let received = received.clone();
            async move { signed_alert(&received, SECRET, "replica_not_streaming") }
        },
    )
    .await;
    let waited = cut_at.elapsed();
    assert!(
        waited >= Duration::from_secs(3),
        "alerted after {waited:?}, before the 3 s bound"
    );
    assert_eq!(alert["db"], "stream-db");
    assert_eq!(alert["host"], replica_host.as_str());
    assert_eq!(alert["details"]["node"], replica.as_str());
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("replica {replica} of database stream-db")),
        "{text}"
    );
    println!(
        "cut → replica_not_streaming received: {waited:?} (bound 3 s, wal_receiver_timeout 2 s)"
    );

    // Healed: it streams again and says so, once.
    fleet.heal(Some(&replica_host)).unwrap();
    let cleared = eventually(Duration::from_secs(60), "a replica_streaming alert", || {
        let received = received.clone();
        async move { signed_alert(&received, SECRET, "replica_streaming") }
    })
    .await;
    assert_eq!(cleared["details"]["node"], replica.as_str());
    let raised = alerts(&received)
        .iter()
        .filter(|a| a["event"] == "replica_not_streaming")
        .count();
    assert_eq!(raised, 1, "raised once: {:?}", alerts(&received));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_backup_location_raises_archive_failing_then_archive_recovered() {
    let fleet = Fleet::up(1);
    let (url, received) = receiver(Arc::new(AtomicUsize::new(0))).await;
    let file = secret_file(&fleet, SECRET);
    fleet.cli_ok(&[
        "alert-target",
        "create",
        "backups",
        "--webhook",
        &url,
        "--secret-file",
        &file,
        "--events",
        "archive_failing,archive_recovered",
    ]);
    fleet.cli_ok(&[
        "db",
        "create",
        "vault",
        "--backup-location",
        "local",
        "--archive-timeout",
        "2",
    ]);
    fleet.cli_ok(&["db", "backup", "vault"]);
    let client = kit::connect(&fleet, "vault").await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let archive = fleet
        .dir()
        .join("backups/local")
        .join(kit::stanza(&fleet, "vault"))
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
    kit::insert(&client, 1..=1).await;
    let failing = eventually(Duration::from_secs(60), "an archive_failing alert", || {
        let received = received.clone();
        async move { signed_alert(&received, SECRET, "archive_failing") }
    })
    .await;
    assert_eq!(failing["db"], "vault");
    let text = failing["text"].as_str().unwrap();
    assert!(
        text.contains("archiving of database vault fails") && text.contains("Permission denied"),
        "{text}"
    );
    assert!(
        failing["details"]["failed_count"].as_i64().unwrap() > 0,
        "{failing}"
    );

    chmod("u+w");
    let recovered = eventually(
        Duration::from_secs(60),
        "an archive_recovered alert",
        || {
            let received = received.clone();
            async move { signed_alert(&received, SECRET, "archive_recovered") }
        },
    )
    .await;
    assert_eq!(recovered["db"], "vault");
    assert!(
        recovered["details"]["last_archived_wal"].is_string(),
        "{recovered}"
    );
    let raised = alerts(&received)
        .iter()
        .filter(|a| a["event"] == "archive_failing")
        .count();
    assert_eq!(raised, 1, "raised once: {:?}", alerts(&received));
}
