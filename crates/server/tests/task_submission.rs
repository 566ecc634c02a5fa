//! Tasks are stored together with what they act on, against a real control
//! plane and its SQLite store: a create whose task cannot be stored leaves
//! no database behind, and concurrent requests on one database queue one
//! task (the busy check and the insert are one transaction).

use pgfleet_core::{Database, Node, NodeRole};
use pgfleet_server::{RunningServer, ServerConfig};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

struct ControlPlane {
    running: RunningServer,
    base: String,
    token: String,
    client: reqwest::Client,
    cancel: CancellationToken,
    dir: tempfile::TempDir,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start() -> ControlPlane {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::local(dir.path().to_path_buf());
    config.api_addr = "127.0.0.1:0".parse().expect("address");
    config.dns_addr = "127.0.0.1:0".parse().expect("address");
    let cancel = CancellationToken::new();
    let running = pgfleet_server::start(config, cancel.clone())
        .await
        .expect("control plane starts");
    let token = std::fs::read_to_string(dir.path().join("admin.token"))
        .expect("admin token written")
        .trim()
        .to_string();
    ControlPlane {
        base: format!("http://{}", running.api_addr),
        running,
        token,
        client: reqwest::Client::new(),
        cancel,
        dir,
    }
}

/// A database with a primary on a host that never reports: its tasks wait.
fn database_on_a_silent_host(name: &str) -> Database {
    Database {
        nodes: vec![Node::fixture(
            &format!("{name}-1"),
            NodeRole::Primary,
            "silent-host",
            "127.3.0.1",
        )],
        ..Database::fixture(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_whose_task_cannot_be_stored_leaves_no_database() {
    let plane = start().await;
    // Every task insert now fails, as a crash or a lost store would between
    // the two writes a create used to make.
    let url = format!("sqlite:{}", plane.dir.path().join("pgfleet.db").display());
    let mut sqlite = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("second connection to the store");
    sqlx::raw_sql(
        "CREATE TRIGGER no_tasks BEFORE INSERT ON tasks BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .execute(&mut sqlite)
    .await
    .expect("trigger");

    let created = plane
        .client
        .post(format!("{}/api/v1/databases", plane.base))
        .bearer_auth(&plane.token)
        .json(&serde_json::json!({"name": "half-made"}))
        .send()
        .await
        .expect("create request");
    assert_eq!(created.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let shown = plane
        .client
        .get(format!("{}/api/v1/databases/half-made", plane.base))
        .bearer_auth(&plane.token)
        .send()
        .await
        .expect("show request");
    assert_eq!(
        shown.status(),
        StatusCode::NOT_FOUND,
        "a database without the task that creates it would stay creating forever"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_on_one_database_queue_one_task() {
    let plane = start().await;
    let store = &plane.running.state.store;
    for round in 0..5 {
        let name = format!("busy-{round}");
        store
            .insert_database(&database_on_a_silent_host(&name))
            .await
            .expect("database stored");
        let mut requests = Vec::new();
        for _ in 0..8 {
            let request = plane
                .client
                .delete(format!("{}/api/v1/databases/{name}", plane.base))
                .bearer_auth(&plane.token)
                .send();
            requests.push(tokio::spawn(request));
        }
        let mut accepted = 0;
        for request in requests {
            let status = request.await.expect("join").expect("response").status();
            match status {
                StatusCode::ACCEPTED => accepted += 1,
                StatusCode::CONFLICT => {}
                other => panic!("unexpected answer {other}"),
            }
        }
        assert_eq!(
            accepted, 1,
            "round {round}: one delete queued, the others refused"
        );
        let open: Vec<_> = store
            .unfinished_tasks()
            .await
            .expect("tasks")
            .into_iter()
            .filter(|task| task.target == name)
            .collect();
        assert_eq!(open.len(), 1, "round {round}: {open:?}");
    }
}
