//! A lost monitor is replaced (`ReplaceMonitor`): a new monitor on a host
//! without a node of the database rebuilds its state from the keepers and
//! fails over afterwards; with the primary lost at the same time it fails
//! over at once; the old monitor, when its host returns, is retired (its
//! file removed, its node reaped) and assigns nothing; with no eligible
//! host the task fails and the database's view says why.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, resolve, wait_ha_settled, Fleet};
use pgfleet_core::api::NodeView;
use pgfleet_core::{NodeRole, NodeStatus, TaskKind, TaskState};

const DB: &str = "rdb";
const PRIMARY_NAME: &str = "primary.rdb.pgfleet.internal";

fn fleet(hosts: u32) -> Fleet {
    Fleet::up_with(hosts, &["--monitor-replace-after-secs", "3"])
}

/// A database with a primary, two replicas and the monitor, settled.
async fn ha_database(fleet: &Fleet) -> Vec<NodeView> {
    fleet.cli_ok(&["db", "create", DB]);
    fleet.cli_ok(&["replica", "create", DB, "--name", "r1"]);
    fleet.cli_ok(&["replica", "create", DB, "--name", "r2"]);
    wait_ha_settled(fleet, DB, Duration::from_secs(60)).await;
    fleet.client().database(DB, false).await.unwrap().nodes
}

fn role(nodes: &[NodeView], role: NodeRole) -> NodeView {
    nodes.iter().find(|n| n.role == role).unwrap().clone()
}

/// Inserts increasing ids through `primary.<db>.<zone>` (re-resolved on
/// every reconnect) and keeps the acknowledged ones.
struct Writer {
    acked: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    async fn start(fleet: &Fleet) -> Writer {
        let uri = fleet.cli_ok(&["db", "uri", DB]).trim().to_string();
        let primary = resolve(fleet.dns, PRIMARY_NAME).await[0].to_string();
        let setup = fleet.connect(&uri.replace(PRIMARY_NAME, &primary)).await;
        setup
            .batch_execute("CREATE TABLE acked (id bigint primary key)")
            .await
            .unwrap();
        drop(setup);
        let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (acked_w, stop_w, dns, tls) = (acked.clone(), stop.clone(), fleet.dns, fleet.pg_tls());
        let task = tokio::spawn(async move {
            let mut next = 1i64;
            while !stop_w.load(Ordering::SeqCst) {
                let Some(address) = resolve(dns, PRIMARY_NAME).await.first().copied() else {
                    continue;
                };
                let target = uri.replace(PRIMARY_NAME, &address.to_string()) + "?connect_timeout=1";
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
                while !stop_w.load(Ordering::SeqCst) {
                    let insert = tokio::time::timeout(
                        Duration::from_secs(2),
                        db.execute("INSERT INTO acked VALUES ($1)", &[&next]),
                    )
                    .await;
                    next += 1;
                    match insert {
                        Ok(Ok(_)) => acked_w.lock().unwrap().push(next - 1),
                        _ => break,
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        let writer = Writer { acked, stop, task };
        writer.wait_for_more(20).await;
        writer
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_for_more(&self, more: usize) {
        let before = self.count();
        eventually(Duration::from_secs(60), "acknowledged writes", || async {
            (self.count() >= before + more).then_some(())
        })
        .await;
    }

    /// Stops, then checks every acknowledged id is on the current primary.
    async fn check_nothing_lost(self, fleet: &Fleet) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let uri = fleet.cli_ok(&["db", "uri", DB, "--resolved"]);
        let db = fleet.connect(uri.trim()).await;
        let rows = db.query("SELECT id FROM acked", &[]).await.unwrap();
        let stored: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        let acked = self.acked.lock().unwrap().clone();
        let lost: Vec<&i64> = acked.iter().filter(|id| !stored.contains(id)).collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    }
}

/// Waits for a `ReplaceMonitor` of the database in `state`; returns it.
async fn replace_task(fleet: &Fleet, state: TaskState) -> pgfleet_core::Task {
    let client = fleet.client();
    eventually(Duration::from_secs(90), "a ReplaceMonitor task", || async {
        let tasks = client.tasks().await.ok()?;
        tasks
            .into_iter()
            .find(|t| t.kind == TaskKind::ReplaceMonitor && t.target == DB && t.state == state)
    })
    .await
}

/// The new primary once a failover from `old` is done, and DNS names it.
async fn failed_over(fleet: &Fleet, old: &NodeView) -> NodeView {
    let client = fleet.client();
    let new = eventually(Duration::from_secs(60), "a standby promoted", || async {
        let view = client.database(DB, false).await.ok()?;
        view.nodes.into_iter().find(|n| {
            n.role == NodeRole::Primary && n.name != old.name && n.status == NodeStatus::Online
        })
    })
    .await;
    let expected = vec![new.address.parse::<std::net::Ipv4Addr>().unwrap()];
    eventually(Duration::from_secs(10), "DNS names the new primary", || {
        let expected = expected.clone();
        async move { (resolve(fleet.dns, PRIMARY_NAME).await == expected).then_some(()) }
    })
    .await;
    new
}

fn monitor_file(fleet: &Fleet, host: &str) -> PathBuf {
    fleet
        .dir()
        .join("hosts")
        .join(host)
        .join("monitors")
        .join(format!("{DB}.json"))
}

/// The generation of the assignment a keeper persisted.
fn keeper_generation(fleet: &Fleet, node: &NodeView) -> u64 {
    let path = fleet
        .dir()
        .join("hosts")
        .join(&node.host)
        .join("pg")
        .join(format!("{DB}.{}", node.name))
        .join("assignment.json");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    value["generation"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_monitor_is_replaced_retired_when_its_host_returns_and_fails_over_later() {
    let fleet = fleet(5);
    let client = fleet.client();
    let nodes = ha_database(&fleet).await;
    let (primary, old_monitor) = (
        role(&nodes, NodeRole::Primary),
        role(&nodes, NodeRole::Monitor),
    );
    let writer = Writer::start(&fleet).await;

    fleet.cli_ok(&["host", "kill", &old_monitor.host]);
    let task = replace_task(&fleet, TaskState::Succeeded).await;
    assert_eq!(task.params["old_host"], serde_json::json!(old_monitor.host));
    let settled = wait_ha_settled(&fleet, DB, Duration::from_secs(60)).await;
    assert_eq!(settled, primary.name, "the primary is unchanged");
    let view = client.database(DB, false).await.unwrap();
    let new_monitor = role(&view.nodes, NodeRole::Monitor);
    assert_ne!(new_monitor.host, old_monitor.host);
    assert_eq!(new_monitor.status, NodeStatus::Online);
    assert!(
        view.nodes.iter().all(|n| n.name != old_monitor.name),
        "the replaced monitor is no member any more"
    );
    assert!(!view.health.failover_paused, "{:?}", view.health.reasons);
    let events = client.events(DB).await.unwrap();
    let message = format!(
        "monitor replaced: {} → {}",
        old_monitor.host, new_monitor.host
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == serde_json::json!(message)),
        "{events:?}"
    );
    let listed = fleet.cli_ok(&["task", "list"]);
    assert!(listed.contains("ReplaceMonitor"), "{listed}");
    writer.wait_for_more(20).await;

    // The old monitor's host returns: its monitor is retired, its file
    // removed, its node reaped; keepers stay in the new epoch's range and
    // the primary does not change.
    assert!(monitor_file(&fleet, &old_monitor.host).exists());
    fleet.cli_ok(&["host", "start", &old_monitor.host]);
    let file = monitor_file(&fleet, &old_monitor.host);
    eventually(
        Duration::from_secs(30),
        "the old monitor's file removed",
        || async { (!file.exists()).then_some(()) },
    )
    .await;
    let view = client.database(DB, false).await.unwrap();
    assert_eq!(view.primary.as_deref(), Some(primary.name.as_str()));
    for node in view.nodes.iter().filter(|n| n.role != NodeRole::Monitor) {
        let generation = keeper_generation(&fleet, node);
        assert!(
            generation >= 1 << 32,
            "{} holds generation {generation}",
            node.name
        );
    }
    writer.wait_for_more(20).await;

    // The new monitor fails over when the primary's host is lost.
    fleet.cli_ok(&["host", "kill", &primary.host]);
    failed_over(&fleet, &primary).await;
    writer.wait_for_more(20).await;
    writer.check_nothing_lost(&fleet).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_and_primary_lost_together_a_new_monitor_on_the_spare_fails_over() {
    let fleet = fleet(5);
    let client = fleet.client();
    let nodes = ha_database(&fleet).await;
    let (primary, old_monitor) = (
        role(&nodes, NodeRole::Primary),
        role(&nodes, NodeRole::Monitor),
    );
    let used: Vec<&str> = nodes.iter().map(|n| n.host.as_str()).collect();
    let hosts = fleet.cli_ok(&["host", "list"]);
    let spare = (1..=5)
        .map(|i| format!("host-{i}"))
        .find(|h| !used.contains(&h.as_str()))
        .unwrap();
    assert!(hosts.contains(&spare), "{hosts}");
    let writer = Writer::start(&fleet).await;

    fleet.cli_ok(&["host", "kill", &old_monitor.host]);
    fleet.cli_ok(&["host", "kill", &primary.host]);
    replace_task(&fleet, TaskState::Succeeded).await;
    let new = failed_over(&fleet, &primary).await;
    let view = client.database(DB, false).await.unwrap();
    assert_eq!(role(&view.nodes, NodeRole::Monitor).host, spare);
    assert!(new.name == "r1" || new.name == "r2");
    writer.wait_for_more(20).await;
    writer.check_nothing_lost(&fleet).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_eligible_host_the_replacement_fails_and_the_view_says_why() {
    let fleet = fleet(3);
    let client = fleet.client();
    fleet.cli_ok(&["db", "create", DB]);
    fleet.cli_ok(&["replica", "create", DB, "--name", "r1"]);
    let view = client.database(DB, false).await.unwrap();
    let monitor = role(&view.nodes, NodeRole::Monitor);

    fleet.cli_ok(&["host", "kill", &monitor.host]);
    let task = replace_task(&fleet, TaskState::Failed).await;
    let error = task.error.unwrap_or_default();
    assert!(
        error.contains("no eligible host for the new monitor of rdb"),
        "{error}"
    );
    let view = client.database(DB, false).await.unwrap();
    assert!(
        view.health
            .reasons
            .iter()
            .any(|r| r.contains("monitor replacement failed: no eligible host")),
        "{:?}",
        view.health.reasons
    );
    assert_eq!(
        role(&view.nodes, NodeRole::Monitor).name,
        monitor.name,
        "nothing changed"
    );
    let events = client.events(DB).await.unwrap();
    let failures = events
        .iter()
        .filter(|e| e["kind"] == serde_json::json!("monitor_replacement_failed"))
        .count();
    assert_eq!(failures, 1, "{events:?}");
}

/// Removing the host that carries the monitor moves the monitor first: the
/// removal is refused with the task that moves it, and accepted once that
/// finished; the database stays highly available on the other hosts.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_monitors_host_moves_the_monitor_first() {
    let fleet = fleet(5);
    let nodes = ha_database(&fleet).await;
    let monitor = role(&nodes, NodeRole::Monitor);
    let refused = fleet.cli(&["host", "remove", &monitor.host]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("moving it to another host (task"), "{said}");
    let task = replace_task(&fleet, TaskState::Succeeded).await;
    assert!(task.error.is_none(), "{task:?}");
    let settled = wait_ha_settled(&fleet, DB, Duration::from_secs(60)).await;
    let view = fleet.client().database(DB, false).await.unwrap();
    let moved = role(&view.nodes, NodeRole::Monitor);
    assert_ne!(moved.host, monitor.host, "the monitor moved");
    assert!(!settled.is_empty());
    fleet.cli_ok(&["host", "remove", &monitor.host]);
    let hosts = fleet.client().hosts().await.unwrap();
    assert!(hosts.iter().all(|h| h.name != monitor.host), "{hosts:?}");
}
