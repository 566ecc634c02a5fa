//! Publishing against a real control plane and its SQLite store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pgfleet_core::{Database, Host, Task};
use pgfleet_store::{EventDoc, SqliteStore, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ServerConfig;

fn database(name: &str, primary_address: &str) -> Database {
    let mut db = Database::fixture(name);
    db.nodes[0].address = primary_address.into();
    db
}

/// Concurrent publishes, each after its own store change, always leave the
/// zone serving the store's latest view (before, a publish that read the
/// store early could install its older view under a newer generation).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_end_with_the_stores_latest_view() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::local(dir.path().to_path_buf());
    config.api_addr = "127.0.0.1:0".parse().expect("address");
    config.dns_addr = "127.0.0.1:0".parse().expect("address");
    let cancel = CancellationToken::new();
    let running = crate::start(config, cancel.clone())
        .await
        .expect("control plane starts");
    let state = running.state.clone();
    let names = ["dns-a", "dns-b", "dns-c", "dns-d"];
    for round in 0..40u8 {
        let mut writers = Vec::new();
        for (index, name) in names.iter().enumerate() {
            for step in 0..4u8 {
                let state = state.clone();
                let db = database(
                    name,
                    &format!("127.1.{round}.{}", index as u8 * 4 + step + 1),
                );
                writers.push(tokio::spawn(async move {
                    state.store.put_database(&db).await.expect("store write");
                    super::publish(&state).await.expect("publish");
                }));
            }
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        let stored = state.store.list_databases().await.expect("store read");
        let expected = super::zone_records(&stored, &state.zone.zone());
        assert_eq!(
            state.zone.snapshot().a,
            expected,
            "round {round}: the zone serves an older view than the store's"
        );
    }
    cancel.cancel();
    running.join().await;
}

/// The real SQLite store, except that the first `list_databases` holds its
/// answer until released, and a later one releases it once it has read.
struct HeldFirstRead {
    inner: SqliteStore,
    reads: AtomicUsize,
    first_read_done: Notify,
    release_first: Notify,
}

#[async_trait]
impl Store for HeldFirstRead {
    async fn list_databases(&self) -> pgfleet_store::Result<Vec<Database>> {
        let read = self.reads.fetch_add(1, Ordering::SeqCst);
        let databases = self.inner.list_databases().await?;
        if read == 0 {
            self.first_read_done.notify_one();
            self.release_first.notified().await;
        } else {
            self.release_first.notify_one();
        }
        Ok(databases)
    }
    async fn put_host(&self, host: &Host) -> pgfleet_store::Result<()> {
        self.inner.put_host(host).await
    }
    async fn list_hosts(&self) -> pgfleet_store::Result<Vec<Host>> {
        self.inner.list_hosts().await
    }
    async fn delete_host(&self, name: &str) -> pgfleet_store::Result<()> {
        self.inner.delete_host(name).await
    }
    async fn insert_database(&self, db: &Database) -> pgfleet_store::Result<()> {
        self.inner.insert_database(db).await
    }
    async fn insert_database_with_task(
        &self,
        db: &Database,
        task: &Task,
    ) -> pgfleet_store::Result<Task> {
        self.inner.insert_database_with_task(db, task).await
    }
    async fn put_database(&self, db: &Database) -> pgfleet_store::Result<()> {
        self.inner.put_database(db).await
    }
    async fn get_database(&self, name: &str) -> pgfleet_store::Result<Option<Database>> {
        self.inner.get_database(name).await
    }
    async fn delete_database(&self, name: &str) -> pgfleet_store::Result<()> {
        self.inner.delete_database(name).await
    }
    async fn insert_task(&self, task: &Task) -> pgfleet_store::Result<Task> {
        self.inner.insert_task(task).await
    }
    async fn submit_task_if_idle(
        &self,
        task: &Task,
    ) -> pgfleet_store::Result<pgfleet_store::Submission> {
        self.inner.submit_task_if_idle(task).await
    }
    async fn put_task(&self, task: &Task) -> pgfleet_store::Result<()> {
        self.inner.put_task(task).await
    }
    async fn get_task(&self, id: i64) -> pgfleet_store::Result<Option<Task>> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, limit: i64) -> pgfleet_store::Result<Vec<Task>> {
        self.inner.list_tasks(limit).await
    }
    async fn unfinished_tasks(&self) -> pgfleet_store::Result<Vec<Task>> {
        self.inner.unfinished_tasks().await
    }
    async fn insert_event(&self, db: &str, event: &EventDoc) -> pgfleet_store::Result<i64> {
        self.inner.insert_event(db, event).await
    }
    async fn list_events(&self, db: &str) -> pgfleet_store::Result<Vec<EventDoc>> {
        self.inner.list_events(db).await
    }
    async fn get_meta(&self, key: &str) -> pgfleet_store::Result<Option<String>> {
        self.inner.get_meta(key).await
    }
    async fn put_meta(&self, key: &str, value: &str) -> pgfleet_store::Result<()> {
        self.inner.put_meta(key, value).await
    }
}

/// The interleaving of the race, made deterministic: publish A reads the
/// store, the database moves, publish B starts. Before, B read the new view
/// and installed it, then A installed its older view under a newer
/// generation, and DNS kept answering with the old address.
#[tokio::test(flavor = "current_thread")]
async fn a_publish_that_read_earlier_never_overwrites_a_later_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServerConfig::local(dir.path().to_path_buf());
    let store = Arc::new(HeldFirstRead {
        inner: SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .expect("store opens"),
        reads: AtomicUsize::new(0),
        first_read_done: Notify::new(),
        release_first: Notify::new(),
    });
    store
        .put_database(&database("moving", "127.2.0.1"))
        .await
        .expect("store write");
    let tokens = crate::auth::Tokens::load_or_create(store.as_ref(), &config.data_dir)
        .await
        .expect("tokens");
    let ca = crate::tls::FleetCa::load_or_create(store.as_ref(), &config.data_dir, &config.ca)
        .await
        .expect("ca");
    let host_ca = crate::tls::FleetCa::load_or_create_host_ca(store.as_ref(), &config.data_dir)
        .await
        .expect("host ca");
    let identities = crate::host_identity::HostIdentities::load(store.as_ref())
        .await
        .expect("identities");
    let zone = pgfleet_dns::ZoneHandle::new(&config.zone, 1);
    let state = crate::AppState::new(config, store.clone(), zone, tokens, ca, host_ca, identities)
        .expect("state");

    let first = tokio::spawn({
        let state = state.clone();
        async move { super::publish(&state).await.expect("first publish") }
    });
    store.first_read_done.notified().await;
    store
        .put_database(&database("moving", "127.2.0.2"))
        .await
        .expect("store write");
    let second = tokio::spawn({
        let state = state.clone();
        async move { super::publish(&state).await.expect("second publish") }
    });
    // Let the second publish run until it waits: on the store (it reads
    // beside the first and releases it when done) or behind the first.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    if store.reads.load(Ordering::SeqCst) == 1 {
        store.release_first.notify_one();
    }
    first.await.expect("first publish");
    second.await.expect("second publish");
    let served = state.zone.snapshot().a;
    assert_eq!(
        served.get("primary.moving.pgfleet.internal"),
        Some(&vec!["127.2.0.2".parse().expect("address")]),
        "DNS serves the address the store holds"
    );
}
