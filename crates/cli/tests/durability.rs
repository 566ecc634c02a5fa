//! Tasks are durable: a control plane killed in the middle of a task comes
//! back, resumes the task at its stored step, and nothing is left half-made.

mod common;

use std::time::Duration;

use common::{eventually, Fleet};
use pgfleet_core::{DbStatus, HaStatus, TaskState};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_control_plane_resumes_its_tasks() {
    let mut fleet = Fleet::up(3);
    fleet.cli_ok(&["db", "create", "dur-db"]);
    // A replica creation is under way when the control plane dies.
    let task_id: i64 = fleet
        .cli_ok(&["replica", "create", "dur-db", "--name", "r1", "--no-wait"])
        .trim()
        .parse()
        .unwrap();
    fleet.crash();
    fleet.start();
    let client = fleet.client();
    let task = eventually(
        Duration::from_secs(60),
        "the interrupted task to finish",
        || async {
            let task = client.task(task_id).await.ok()?;
            task.state.is_finished().then_some(task)
        },
    )
    .await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let view = client.database("dur-db", false).await.unwrap();
    assert_eq!(view.status, DbStatus::Online);
    assert_eq!(view.ha_status, HaStatus::Incomplete);
    // A database creation interrupted at any point finishes too.
    let task_id: i64 = fleet
        .cli_ok(&["db", "create", "dur-db-2", "--no-wait"])
        .trim()
        .parse()
        .unwrap();
    fleet.crash();
    fleet.start();
    let client = fleet.client();
    let task = eventually(
        Duration::from_secs(60),
        "the second interrupted task",
        || async {
            let task = client.task(task_id).await.ok()?;
            task.state.is_finished().then_some(task)
        },
    )
    .await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let db = fleet
        .connect(
            fleet
                .cli_ok(&["db", "uri", "dur-db-2", "--resolved"])
                .trim(),
        )
        .await;
    db.query_one("SELECT 1", &[]).await.unwrap();
}

/// A failover the monitor makes while the control plane is down is
/// recorded, once the control plane is back, with the monitor's own times
/// (its push was lost; the heartbeat carries the change and its record).
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_while_the_control_plane_is_down_is_recorded_with_its_times() {
    let mut fleet = Fleet::up(4);
    fleet.cli_ok(&["db", "create", "away-db"]);
    fleet.cli_ok(&["replica", "create", "away-db", "--name", "r1"]);
    fleet.cli_ok(&["replica", "create", "away-db", "--name", "r2"]);
    let primary = common::wait_ha_settled(&fleet, "away-db", Duration::from_secs(60)).await;
    let view = fleet.client().database("away-db", false).await.unwrap();
    let node = |name: &str| view.nodes.iter().find(|n| n.name == name).unwrap().clone();
    let primary_host = node(&primary).host;
    let monitor_host = view
        .nodes
        .iter()
        .find(|n| n.role == pgfleet_core::NodeRole::Monitor)
        .unwrap()
        .host
        .clone();
    fleet.crash();
    assert!(fleet.kill_host(&primary_host) > 0);
    // The monitor fails over on its own, and gives up telling the control
    // plane directly.
    let log = fleet
        .dir()
        .join("hosts")
        .join(&monitor_host)
        .join("agent.log");
    eventually(
        Duration::from_secs(60),
        "the monitor's push to give up",
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move {
                text.contains("the control plane did not take the primary change")
                    .then_some(())
            }
        },
    )
    .await;
    fleet.start();
    let client = fleet.client();
    let event = eventually(Duration::from_secs(60), "the failover recorded", || {
        let client = &client;
        async move {
            let events = client.events("away-db").await.ok()?;
            events
                .into_iter()
                .find(|e| e["reason"] == "failover" || e["kind"] == "failover")
        }
    })
    .await;
    assert!(event["detected_at_ms"].as_i64().is_some(), "{event}");
    assert!(event["promoted_at_ms"].as_i64().is_some(), "{event}");
    assert!(
        event["promoted_at_ms"].as_i64() >= event["detected_at_ms"].as_i64(),
        "{event}"
    );
}
