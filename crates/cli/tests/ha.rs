//! High availability with real PostgreSQL: replicas and the monitor, HA
//! status, anti-affinity, failover under write load with no acknowledged
//! write lost, DNS following the primary, and rejoin of the old primary.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, resolve, Fleet};
use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::{HaStatus, NodeRole, NodeStatus};

#[tokio::test(flavor = "multi_thread")]
async fn anti_affinity_refuses_a_fourth_node_on_three_hosts() {
    let fleet = Fleet::up(3);
    fleet.cli_ok(&["db", "create", "aa-db"]);
    fleet.cli_ok(&["replica", "create", "aa-db", "--name", "r1"]);
    let view = fleet.client().database("aa-db", false).await.unwrap();
    assert_eq!(view.ha_status, HaStatus::Incomplete);
    assert!(view.anti_affinity.holds);
    let refused = fleet.cli(&["replica", "create", "aa-db", "--name", "r2"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("anti-affinity: no host without a node of aa-db"),
        "{stderr}"
    );
    let after = fleet.client().database("aa-db", false).await.unwrap();
    assert_eq!(after.nodes.len(), 3, "nothing changed");
    assert_eq!(after.ha_status, HaStatus::Incomplete);
    let mut hosts: Vec<&str> = after.nodes.iter().map(|n| n.host.as_str()).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 3, "every node on its own host");
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_keeps_every_acknowledged_write_and_moves_dns() {
    let fleet = Fleet::up(4);
    fleet.cli_ok(&["db", "create", "pg-dev-db-1"]);
    let client = fleet.client();
    assert_eq!(
        client
            .database("pg-dev-db-1", false)
            .await
            .unwrap()
            .ha_status,
        HaStatus::Unconfigured
    );
    fleet.cli_ok(&["replica", "create", "pg-dev-db-1", "--name", "pg-replica-1"]);
    assert_eq!(
        client
            .database("pg-dev-db-1", false)
            .await
            .unwrap()
            .ha_status,
        HaStatus::Incomplete
    );
    fleet.cli_ok(&["replica", "create", "pg-dev-db-1", "--name", "pg-replica-2"]);
    let view = eventually(
        Duration::from_secs(20),
        "two active replicas and sync replication",
        || async {
            let view = client.database("pg-dev-db-1", false).await.ok()?;
            let active = view
                .nodes
                .iter()
                .filter(|n| matches!(n.replication_status, Some(ReplicationStatus::Active)))
                .count();
            (view.ha_status == HaStatus::Complete && active == 2 && view.health.sync_mode == "sync")
                .then_some(view)
        },
    )
    .await;
    assert!(view.anti_affinity.holds);
    assert!(view
        .nodes
        .iter()
        .any(|n| n.role == NodeRole::Monitor && n.status == NodeStatus::Online));
    let old_primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap()
        .clone();

    // A writer inserts increasing ids through primary.<db>.<zone>, re-resolving on reconnect.
    let uri = fleet
        .cli_ok(&["db", "uri", "pg-dev-db-1"])
        .trim()
        .to_string();
    let setup = fleet
        .connect(&uri.replace("primary.pg-dev-db-1.pgfleet.internal", &old_primary.address))
        .await;
    setup
        .batch_execute("CREATE TABLE acked (id bigint primary key)")
        .await
        .unwrap();
    drop(setup);
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, uri, dns) = (acked.clone(), stop.clone(), uri.clone(), fleet.dns);
        let tls = fleet.pg_tls();
        tokio::spawn(async move {
            let mut next = 1i64;
            while !stop.load(Ordering::SeqCst) {
                let addresses = resolve(dns, "primary.pg-dev-db-1.pgfleet.internal").await;
                let Some(address) = addresses.first() else {
                    continue;
                };
                let target = uri
                    .replace("primary.pg-dev-db-1.pgfleet.internal", &address.to_string())
                    + "?connect_timeout=1";
                let Ok(Ok((db, conn))) = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio_postgres::connect(&target, tls.clone()),
                )
                .await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                while !stop.load(Ordering::SeqCst) {
                    let insert = tokio::time::timeout(
                        Duration::from_secs(2),
                        db.execute("INSERT INTO acked VALUES ($1)", &[&next]),
                    )
                    .await;
                    match insert {
                        Ok(Ok(_)) => {
                            acked.lock().unwrap().push(next);
                            next += 1;
                        }
                        _ => {
                            next += 1;
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    eventually(
        Duration::from_secs(10),
        "the writer to be writing",
        || async { (acked.lock().unwrap().len() > 20).then_some(()) },
    )
    .await;

    fleet.cli_ok(&["host", "kill", &old_primary.host]);
    let new_primary = eventually(
        Duration::from_secs(30),
        "a replica to be promoted",
        || async {
            let view = client.database("pg-dev-db-1", false).await.ok()?;
            let primary = view.nodes.iter().find(|n| n.role == NodeRole::Primary)?;
            (primary.name != old_primary.name && primary.status == NodeStatus::Online)
                .then(|| primary.clone())
        },
    )
    .await;
    let answer = resolve(fleet.dns, "primary.pg-dev-db-1.pgfleet.internal").await;
    assert_eq!(
        answer,
        vec![new_primary.address.parse::<std::net::Ipv4Addr>().unwrap()],
        "DNS follows the new primary"
    );
    let before = acked.lock().unwrap().len();
    eventually(
        Duration::from_secs(20),
        "writes to resume on the new primary",
        || async { (acked.lock().unwrap().len() > before + 10).then_some(()) },
    )
    .await;
    let tasks = client.tasks().await.unwrap();
    assert!(tasks
        .iter()
        .any(|t| t.kind == pgfleet_core::TaskKind::PromoteReplica && t.target == "pg-dev-db-1"));
    let events = client.events("pg-dev-db-1").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["new_primary"],
        serde_json::json!(new_primary.name)
    );

    // The old primary's host returns: it rejoins as a replica.
    fleet.cli_ok(&["host", "start", &old_primary.host]);
    eventually(
        Duration::from_secs(60),
        "the old primary to stream as a replica",
        || async {
            let view = client.database("pg-dev-db-1", false).await.ok()?;
            let old = view.nodes.iter().find(|n| n.name == old_primary.name)?;
            (old.role == NodeRole::Replica
                && matches!(old.replication_status, Some(ReplicationStatus::Active))
                && view.ha_status == HaStatus::Complete)
                .then_some(())
        },
    )
    .await;

    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let written = acked.lock().unwrap().clone();
    let check = fleet
        .connect(&uri.replace("primary.pg-dev-db-1.pgfleet.internal", &new_primary.address))
        .await;
    let rows = check.query("SELECT id FROM acked", &[]).await.unwrap();
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let lost: Vec<i64> = written
        .iter()
        .filter(|id| !present.contains(id))
        .copied()
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // The rejoined node has the same rows (it streams from the new primary).
    let rejoined = fleet
        .connect(&uri.replace("primary.pg-dev-db-1.pgfleet.internal", &old_primary.address))
        .await;
    let max_id: i64 = check
        .query_one("SELECT max(id) FROM acked", &[])
        .await
        .unwrap()
        .get(0);
    eventually(
        Duration::from_secs(10),
        "the rejoined replica to replay everything",
        || async {
            let row = rejoined
                .query_one("SELECT count(*) FROM acked WHERE id = $1", &[&max_id])
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await;
}

/// A database made highly available long after it was created, whose new
/// monitor is slow to start (its host stalls for 1.5 s, less than the
/// failure timeout): the primary keeps running and the first replica clones
/// from it. It once fenced itself at once, counting the time it had no
/// monitor at all as silence, and the clone failed with "connection refused".
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_added_long_after_creation_clones_without_restarting_the_primary() {
    let fleet = Fleet::up(3);
    fleet.cli_ok(&["db", "create", "late-ha"]);
    let created = std::time::Instant::now();
    let view = fleet.client().database("late-ha", false).await.unwrap();
    let primary = view.nodes[0].clone();
    let pid_file = fleet
        .dir()
        .join("hosts")
        .join(&primary.host)
        .join("pg")
        .join(format!("{}.{}", "late-ha", primary.name))
        .join("data/postmaster.pid");
    let postmaster = || std::fs::read_to_string(&pid_file).unwrap_or_default();
    let before = postmaster();
    assert!(!before.is_empty(), "the primary runs");
    // The scenario, not a synchronisation: the database is older than the
    // failure timeout (2 s) when it becomes highly available, and the
    // other hosts stall for 1.5 s just as the monitor is placed on one.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(created.elapsed())).await;
    let task = fleet.cli_ok(&["replica", "create", "late-ha", "--name", "r1", "--no-wait"]);
    let others: Vec<&str> = ["host-1", "host-2", "host-3"]
        .into_iter()
        .filter(|h| *h != primary.host)
        .collect();
    for host in &others {
        fleet.cli_ok(&["host", "freeze", host]);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for host in &others {
        fleet.cli_ok(&["host", "thaw", host]);
    }
    let task_id = task
        .split_whitespace()
        .find(|w| w.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("a task id in {task:?}"))
        .to_string();
    let api = fleet.client();
    eventually(Duration::from_secs(60), "the replica streams", || {
        let api = &api;
        async move {
            let view = api.database("late-ha", false).await.ok()?;
            view.nodes
                .iter()
                .any(|n| matches!(n.replication_status, Some(ReplicationStatus::Active)))
                .then_some(())
        }
    })
    .await;
    let shown = fleet.cli_ok(&["task", "show", &task_id]);
    assert!(!shown.contains("failed"), "{shown}");
    assert_eq!(
        postmaster().lines().next(),
        before.lines().next(),
        "the primary was not restarted"
    );
    let agent_log = std::fs::read_to_string(
        fleet
            .dir()
            .join("hosts")
            .join(&primary.host)
            .join("agent.log"),
    )
    .unwrap_or_default();
    assert!(
        !agent_log.contains("fencing itself"),
        "the primary never fenced itself"
    );
}
