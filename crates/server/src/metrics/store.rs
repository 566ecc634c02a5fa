//! `TimedStore`: the metadata store with every operation timed into
//! `pgfleet_store_operation_duration_seconds{operation, outcome}`.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use pgfleet_core::{Database, Host, Task};
use pgfleet_store::{EventDoc, Result, Store, Submission};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub operation: &'static str,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

pub type StoreHistograms = Family<StoreLabels, Histogram, fn() -> Histogram>;

fn store_histogram() -> Histogram {
    // 0.1 ms .. ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The process's store timings (one store per process; tests that start
/// several control planes in one process share them).
pub fn histograms() -> &'static StoreHistograms {
    static HISTOGRAMS: OnceLock<StoreHistograms> = OnceLock::new();
    HISTOGRAMS.get_or_init(|| Family::new_with_constructor(store_histogram))
}

pub struct TimedStore {
    inner: Arc<dyn Store>,
}

impl TimedStore {
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(TimedStore { inner })
    }
}

async fn timed<T>(operation: &'static str, work: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let result = work.await;
    let labels = StoreLabels {
        operation,
        outcome: if result.is_ok() { "ok" } else { "error" },
    };
    histograms()
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    result
}

#[async_trait]
impl Store for TimedStore {
    async fn put_host(&self, host: &Host) -> Result<()> {
        timed("put_host", self.inner.put_host(host)).await
    }
    async fn list_hosts(&self) -> Result<Vec<Host>> {
        timed("list_hosts", self.inner.list_hosts()).await
    }
    async fn delete_host(&self, name: &str) -> Result<()> {
        timed("delete_host", self.inner.delete_host(name)).await
    }
    async fn insert_database(&self, db: &Database) -> Result<()> {
        timed("insert_database", self.inner.insert_database(db)).await
    }
    async fn insert_database_with_task(&self, db: &Database, task: &Task) -> Result<Task> {
        timed(
            "insert_database_with_task",
            self.inner.insert_database_with_task(db, task),
        )
        .await
    }
    async fn put_database(&self, db: &Database) -> Result<()> {
        timed("put_database", self.inner.put_database(db)).await
    }
    async fn get_database(&self, name: &str) -> Result<Option<Database>> {
        timed("get_database", self.inner.get_database(name)).await
    }
    async fn list_databases(&self) -> Result<Vec<Database>> {
        timed("list_databases", self.inner.list_databases()).await
    }
    async fn delete_database(&self, name: &str) -> Result<()> {
        timed("delete_database", self.inner.delete_database(name)).await
    }
    async fn insert_task(&self, task: &Task) -> Result<Task> {
        timed("insert_task", self.inner.insert_task(task)).await
    }
    async fn submit_task_if_idle(&self, task: &Task) -> Result<Submission> {
        timed("submit_task_if_idle", self.inner.submit_task_if_idle(task)).await
    }
    async fn put_task(&self, task: &Task) -> Result<()> {
        timed("put_task", self.inner.put_task(task)).await
    }
    async fn get_task(&self, id: i64) -> Result<Option<Task>> {
        timed("get_task", self.inner.get_task(id)).await
    }
    async fn list_tasks(&self, limit: i64) -> Result<Vec<Task>> {
        timed("list_tasks", self.inner.list_tasks(limit)).await
    }
    async fn unfinished_tasks(&self) -> Result<Vec<Task>> {
        timed("unfinished_tasks", self.inner.unfinished_tasks()).await
    }
    async fn insert_event(&self, db: &str, event: &EventDoc) -> Result<i64> {
        timed("insert_event", self.inner.insert_event(db, event)).await
    }
    async fn list_events(&self, db: &str) -> Result<Vec<EventDoc>> {
        timed("list_events", self.inner.list_events(db)).await
    }
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        timed("get_meta", self.inner.get_meta(key)).await
    }
    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        timed("put_meta", self.inner.put_meta(key, value)).await
    }
}
