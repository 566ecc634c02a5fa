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
