//! The PostgreSQL metadata store: the same behaviour as the embedded SQLite
//! store on every operation, and a whole fleet (control plane, agents,
//! PostgreSQL nodes) that keeps its metadata in a real PostgreSQL server
//! and finds it again after the control plane restarts.

mod common;

use std::sync::Arc;

use common::Fleet;
use pgfleet::metadata_pg::MetadataPostgres;
use pgfleet_core::{Database, DbStatus, Host, Task, TaskKind, TaskState};
use pgfleet_store::{Store, StoreError, Submission};

fn database(name: &str) -> Database {
    Database {
        status: DbStatus::Creating,
        version: 15,
        nodes: vec![],
        ..Database::fixture(name)
    }
}

fn task(target: &str) -> Task {
    Task {
        id: 0,
        kind: TaskKind::CreateDatabase,
        target: target.into(),
        state: TaskState::Queued,
        steps: vec![],
        current_step: 0,
        progress: 0,
        params: serde_json::json!({"version": 15}),
        created_at_ms: 0,
        started_at_ms: None,
        finished_at_ms: None,
        error: None,
        message: None,
    }
}

/// Every operation of the trait, with what a caller sees recorded.
async fn exercise(store: &dyn Store) -> Vec<String> {
    let mut seen = Vec::new();
    for name in ["host-2", "host-1"] {
        let host = Host {
            name: name.into(),
            address: "127.0.0.2".into(),
            failure_domain: "fd".into(),
            agent_port: 7071,
            registered_at_ms: 5,
        };
        store.put_host(&host).await.unwrap();
        store.put_host(&host).await.unwrap();
    }
    store.delete_host("host-2").await.unwrap();
    seen.push(format!("{:?}", store.list_hosts().await.unwrap()));

    store.insert_database(&database("b-db")).await.unwrap();
    store.insert_database(&database("a-db")).await.unwrap();
    let duplicate = store.insert_database(&database("a-db")).await;
    assert!(matches!(duplicate, Err(StoreError::Duplicate { .. })));
    let mut changed = database("b-db");
    changed.status = DbStatus::Online;
    store.put_database(&changed).await.unwrap();
    seen.push(format!("{:?}", store.get_database("b-db").await.unwrap()));
    seen.push(format!("{:?}", store.get_database("nope").await.unwrap()));
    let names: Vec<String> = store
        .list_databases()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    seen.push(format!("{names:?}"));
    store.delete_database("a-db").await.unwrap();
    seen.push(format!("{}", store.list_databases().await.unwrap().len()));

    let first = store.insert_task(&task("a")).await.unwrap();
    let mut second = store.insert_task(&task("b")).await.unwrap();
    assert!(second.id > first.id);
    second.state = TaskState::Succeeded;
    store.put_task(&second).await.unwrap();
    let unfinished: Vec<String> = store
        .unfinished_tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.target)
        .collect();
    seen.push(format!("{unfinished:?}"));
    let newest: Vec<String> = store
        .list_tasks(1)
        .await
        .unwrap()
        .into_iter()
        .map(|t| format!("{}:{:?}", t.target, t.state))
        .collect();
    seen.push(format!("{newest:?}"));
    let got = store.get_task(first.id).await.unwrap().unwrap();
    assert_eq!(got.id, first.id);
    assert!(store.get_task(first.id + 100).await.unwrap().is_none());

    for n in 0..3 {
        store
            .insert_event("b-db", &serde_json::json!({"n": n}))
            .await
            .unwrap();
    }
    store
        .insert_event("other", &serde_json::json!({"n": 9}))
        .await
        .unwrap();
    seen.push(format!("{:?}", store.list_events("b-db").await.unwrap()));

    assert!(store.get_meta("k").await.unwrap().is_none());
    store.put_meta("k", "one").await.unwrap();
    store.put_meta("k", "two").await.unwrap();
    seen.push(format!("{:?}", store.get_meta("k").await.unwrap()));
    seen
}

/// The writes that go together: a database and its create task are stored
/// both or neither; of concurrent submissions on one database, one task is
/// queued and the others see it.
async fn transactions(store: Arc<dyn Store>) {
    let created = store
        .insert_database_with_task(&database("tx-db"), &task("tx-db"))
        .await
        .unwrap();
    assert!(store.get_database("tx-db").await.unwrap().is_some());
    let duplicate = store
        .insert_database_with_task(&database("tx-db"), &task("tx-db"))
        .await;
    assert!(matches!(duplicate, Err(StoreError::Duplicate { .. })));
    let open: Vec<i64> = store
        .unfinished_tasks()
        .await
        .unwrap()
        .iter()
        .filter(|t| t.target == "tx-db")
        .map(|t| t.id)
        .collect();
    assert_eq!(open, vec![created.id], "no task for the refused duplicate");

    let mut finished = created.clone();
    finished.state = TaskState::Succeeded;
    store.put_task(&finished).await.unwrap();
    let mut submissions = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        submissions.push(tokio::spawn(async move {
            store.submit_task_if_idle(&task("tx-db")).await.unwrap()
        }));
    }
    let mut queued = Vec::new();
    let mut busy_with = Vec::new();
    for submission in submissions {
        match submission.await.unwrap() {
            Submission::Queued(task) => queued.push(task.id),
            Submission::Busy(task) => busy_with.push(task.id),
            Submission::NoDatabase => panic!("the database exists"),
        }
    }
    assert_eq!(queued.len(), 1, "{queued:?} {busy_with:?}");
    assert!(busy_with.iter().all(|id| *id == queued[0]), "{busy_with:?}");
    assert!(matches!(
        store
            .submit_task_if_idle(&task("no-such-db"))
            .await
            .unwrap(),
        Submission::NoDatabase
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_are_stored_with_what_they_act_on_in_both_stores() {
    let server = MetadataPostgres::start().unwrap();
    transactions(pgfleet_store::open(&server.url).await.unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite:{}", dir.path().join("m.db").display());
    transactions(pgfleet_store::open(&sqlite_url).await.unwrap()).await;
}

#[tokio::test]
async fn the_postgres_store_behaves_like_the_sqlite_store() {
    let server = MetadataPostgres::start().unwrap();
    let postgres: Arc<dyn Store> = pgfleet_store::open(&server.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> =
        pgfleet_store::open(&format!("sqlite:{}", dir.path().join("m.db").display()))
            .await
            .unwrap();
    let expected = exercise(sqlite.as_ref()).await;
    assert_eq!(exercise(postgres.as_ref()).await, expected);
    assert_eq!(expected[0].matches("host-").count(), 1, "{expected:?}");

    // Opening again (tables exist) keeps the records.
    let again = pgfleet_store::open(&server.url).await.unwrap();
    assert!(again.get_database("b-db").await.unwrap().is_some());
    // A wrong password is an error, not a panic or an empty store.
    let wrong = server.url.replace("pgfleet:", "pgfleet:x");
    assert!(pgfleet_store::open(&wrong).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_keeps_its_metadata_in_postgres_across_a_restart() {
    let server = MetadataPostgres::start().unwrap();
    let mut fleet = Fleet::up_with_env(2, &[], &[("PGFLEET_STORE", &server.url)]);
    assert!(
        !fleet.dir().join("pgfleet.db").exists(),
        "no SQLite file when the store is PostgreSQL"
    );
    fleet.cli_ok(&["db", "create", "meta-db"]);
    fleet.stop();
    fleet.start();
    let view = fleet.client().database("meta-db", false).await.unwrap();
    assert_eq!(view.nodes.len(), 1);
    let store = pgfleet_store::open(&server.url).await.unwrap();
    let stored = store.get_database("meta-db").await.unwrap().unwrap();
    // Its secrets are sealed there too (the key stays in the data dir).
    for secret in [
        &stored.admin_password,
        &stored.replication_password,
        &stored.superuser_password,
        &stored.monitor_token,
    ] {
        assert!(pgfleet_store::sealed::is_sealed(secret));
    }
    let uri = fleet.cli_ok(&["db", "uri", "meta-db", "--resolved"]);
    let db = fleet.connect(uri.trim()).await;
    db.simple_query("SELECT 1").await.unwrap();
}
