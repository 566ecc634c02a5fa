//! `pgfleet db top` and `db show --watch` against a live fleet: frames
//! every second with nodes, roles and lag, and a commit rate that follows a
//! workload (admin token), or says it needs one (viewer token).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::Fleet;

#[tokio::test(flavor = "multi_thread")]
async fn db_top_shows_nodes_and_the_commit_rate_of_a_workload() {
    let fleet = Arc::new(Fleet::up(1));
    fleet.cli_ok(&["db", "create", "top-db"]);
    let uri = fleet.client().uri("top-db", true).await.unwrap().uri;
    let pg = fleet.connect(&uri).await;
    pg.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = stop.clone();
    let writer = tokio::spawn(async move {
        let mut commits = 0u64;
        while !writing.load(Ordering::SeqCst) {
            pg.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
            commits += 1;
        }
        commits
    });
    let running = fleet.clone();
    let top = tokio::task::spawn_blocking(move || {
        running.cli_ok(&["db", "top", "top-db", "--iterations", "4"])
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let commits = writer.await.unwrap();
    assert_eq!(top.matches("pgfleet db top top-db").count(), 4, "{top}");
    assert!(top.contains("primary"), "{top}");
    let rates: Vec<f64> = top
        .lines()
        .filter_map(|line| line.strip_prefix("commits/s: "))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        rates.iter().any(|rate| *rate > 0.0),
        "{commits} commits made, rates shown {rates:?}: {top}"
    );

    let viewer = fleet
        .client()
        .create_token("looker", "viewer")
        .await
        .unwrap();
    let viewer = viewer["token"].as_str().unwrap().to_string();
    let as_viewer = fleet.cli_ok(&[
        "--token",
        &viewer,
        "db",
        "top",
        "top-db",
        "--iterations",
        "1",
    ]);
    assert!(as_viewer.contains("needs an admin token"), "{as_viewer}");

    let watched = fleet.cli_ok(&["db", "show", "top-db", "--watch", "--iterations", "2"]);
    assert_eq!(
        watched.matches("name:          top-db").count(),
        2,
        "{watched}"
    );
}
