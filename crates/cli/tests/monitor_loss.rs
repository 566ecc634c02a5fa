//! Losing the monitor's host never stops the database: writes go on, the
//! status says failover is paused until the monitor is replaced, and after
//! `--monitor-replace-after-secs` (default 10 s) a new monitor on a spare
//! host takes over and fails over again when needed.

mod common;

use std::time::Duration;

use common::{eventually, resolve, Fleet};
use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::{HaStatus, NodeRole, NodeStatus};

#[tokio::test(flavor = "multi_thread")]
async fn monitor_host_loss_pauses_failover_until_the_monitor_is_replaced() {
    let fleet = Fleet::up(5);
    let client = fleet.client();
    fleet.cli_ok(&["db", "create", "mdb"]);
    fleet.cli_ok(&["replica", "create", "mdb", "--name", "r1"]);
    fleet.cli_ok(&["replica", "create", "mdb", "--name", "r2"]);
    let settled = || async {
        let view = client.database("mdb", false).await.ok()?;
        let active = view
            .nodes
            .iter()
            .filter(|n| matches!(n.replication_status, Some(ReplicationStatus::Active)))
            .count();
        (view.ha_status == HaStatus::Complete
            && active == 2
            && view.health.sync_mode == "sync"
            && !view.health.degraded)
            .then_some(view)
    };
    let view = eventually(Duration::from_secs(30), "HA complete", settled).await;
    let monitor = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Monitor)
        .unwrap()
        .clone();

    fleet.cli_ok(&["host", "kill", &monitor.host]);
    let paused = eventually(
        Duration::from_secs(20),
        "failover paused in the status",
        || async {
            let view = client.database("mdb", false).await.ok()?;
            view.health.failover_paused.then_some(view)
        },
    )
    .await;
    assert!(
        paused.health.reasons.iter().any(|r| r.contains("monitor")),
        "{:?}",
        paused.health.reasons
    );
    // The database keeps taking writes, synchronously, well past the failure timeout.
    let uri = fleet
        .cli_ok(&["db", "uri", "mdb", "--resolved"])
        .trim()
        .to_string();
    let db = fleet.connect(&uri).await;
    db.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    for id in 0..30 {
        tokio::time::timeout(
            Duration::from_secs(5),
            db.execute("INSERT INTO t VALUES ($1)", &[&id]),
        )
        .await
        .expect("write not blocked")
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(db);
    // Still within the threshold: paused, nothing replaced yet.
    let view = client.database("mdb", false).await.unwrap();
    assert!(view.health.failover_paused, "{:?}", view.health.reasons);

    // Past the threshold a new monitor on the spare host takes over.
    let replaced = eventually(
        Duration::from_secs(60),
        "HA complete again with a new monitor, failover no longer paused",
        || async {
            let view = settled().await?;
            let current = view.nodes.iter().find(|n| n.role == NodeRole::Monitor)?;
            (current.host != monitor.host && !view.health.failover_paused).then_some(view)
        },
    )
    .await;
    let tasks = client.tasks().await.unwrap();
    assert!(tasks
        .iter()
        .any(|t| t.kind == pgfleet_core::TaskKind::ReplaceMonitor
            && t.state == pgfleet_core::TaskState::Succeeded));
    assert!(replaced.nodes.iter().all(|n| n.name != monitor.name));
    // And the new monitor fails over.
    let old = client
        .database("mdb", false)
        .await
        .unwrap()
        .nodes
        .into_iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap();
    fleet.cli_ok(&["host", "kill", &old.host]);
    let new_primary = eventually(
        Duration::from_secs(30),
        "a failover by the new monitor",
        || async {
            let view = client.database("mdb", false).await.ok()?;
            view.nodes.into_iter().find(|n| {
                n.role == NodeRole::Primary && n.name != old.name && n.status == NodeStatus::Online
            })
        },
    )
    .await;
    // DNS follows the stored primary (published right after it is stored).
    let expected = vec![new_primary.address.parse::<std::net::Ipv4Addr>().unwrap()];
    eventually(Duration::from_secs(5), "DNS names the new primary", || {
        let expected = expected.clone();
        async move {
            let answer = resolve(fleet.dns, "primary.mdb.pgfleet.internal").await;
            (answer == expected).then_some(())
        }
    })
    .await;
    let db = fleet
        .connect(fleet.cli_ok(&["db", "uri", "mdb", "--resolved"]).trim())
        .await;
    let count: i64 = db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 30);
}
