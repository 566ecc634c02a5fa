//! The metadata store: hosts, databases, tasks, events and settings.
//!
//! `Store` is the trait the control plane uses; `SqliteStore` is the embedded
//! default, `PostgresStore` the option for metadata in a PostgreSQL server.
//! Records are kept as JSON documents keyed by name or id in the same five
//! tables in both (`sql_impl`). `sealed` keeps databases' secrets sealed
//! in either, with a key outside the store; `files` keeps SQLite's files
//! private.

mod files;
mod postgres;
pub mod sealed;
mod sql_impl;
mod sqlite;

pub use postgres::PostgresStore;
pub use sealed::{open_sealed, SealedStore};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use pgfleet_core::{Database, Host, Task};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store failed")]
    Backend(#[source] sqlx::Error),
    #[error("stored record is corrupt")]
    Corrupt(#[source] serde_json::Error),
    #[error("{kind} {name:?} already exists")]
    Duplicate { kind: &'static str, name: String },
    #[error("cannot make store file {path} private")]
    Files {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or write the secrets key {path}")]
    SecretsKey {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secrets key {0} is not a key pgfleet made (32 bytes, base64)")]
    BadSecretsKey(std::path::PathBuf),
    #[error("the secrets key {0} is missing but the store holds secrets sealed with it: restore it from your backup")]
    MissingSecretsKey(std::path::PathBuf),
    #[error(
        "secret {record} does not open with the secrets key (another fleet's key, or tampered)"
    )]
    Unsealable { record: String },
    #[error("unsupported store url {0:?}: use sqlite:PATH or postgres://USER:PASSWORD@HOST/DB")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Backend(error)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Corrupt(error)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What [`Store::submit_task_if_idle`] did.
#[derive(Debug)]
pub enum Submission {
    /// The task was stored; here with its id.
    Queued(Task),
    /// Nothing was stored: this task of the database is still unfinished.
    Busy(Task),
    /// Nothing was stored: the database does not exist.
    NoDatabase,
}

/// A failover or switchover, kept for the history (`db events`).
pub type EventDoc = serde_json::Value;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn put_host(&self, host: &Host) -> Result<()>;
    async fn list_hosts(&self) -> Result<Vec<Host>>;
    async fn delete_host(&self, name: &str) -> Result<()>;

    /// Inserts a new database; `Duplicate` if the name is taken.
    async fn insert_database(&self, db: &Database) -> Result<()>;
    /// Inserts a new database and the task that makes it, in one
    /// transaction: both are stored or neither. `Duplicate` if the name is
    /// taken. Returns the task with its id.
    async fn insert_database_with_task(&self, db: &Database, task: &Task) -> Result<Task>;
    async fn put_database(&self, db: &Database) -> Result<()>;
    async fn get_database(&self, name: &str) -> Result<Option<Database>>;
    async fn list_databases(&self) -> Result<Vec<Database>>;
    async fn delete_database(&self, name: &str) -> Result<()>;

    /// Stores a new task and returns it with its id.
    async fn insert_task(&self, task: &Task) -> Result<Task>;
    /// Stores `task` for the database `task.target` unless one of its tasks
    /// is still queued or running: the check and the insert are one
    /// transaction, so two submitters cannot both pass the check.
    async fn submit_task_if_idle(&self, task: &Task) -> Result<Submission>;
    async fn put_task(&self, task: &Task) -> Result<()>;
    async fn get_task(&self, id: i64) -> Result<Option<Task>>;
    /// Newest first, at most `limit`.
    async fn list_tasks(&self, limit: i64) -> Result<Vec<Task>>;
    async fn unfinished_tasks(&self) -> Result<Vec<Task>>;

    async fn insert_event(&self, db: &str, event: &EventDoc) -> Result<i64>;
    async fn list_events(&self, db: &str) -> Result<Vec<EventDoc>>;

    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    async fn put_meta(&self, key: &str, value: &str) -> Result<()>;
}

/// Opens a store from a URL such as `sqlite:/var/lib/pgfleet/pgfleet.db` or
/// `postgres://pgfleet:secret@db.example/pgfleet`.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let store = SqliteStore::open(std::path::Path::new(path)).await?;
        return Ok(std::sync::Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(PostgresStore::open(url).await?));
    }
    Err(StoreError::UnsupportedUrl(url.to_string()))
}

/// `url` without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_store_urls() {
        assert_eq!(
            super::redacted("postgres://pgfleet:s3cret@db.example:5432/meta?host=/tmp/x"),
            "postgres://pgfleet:***@db.example:5432/meta?host=/tmp/x"
        );
        assert_eq!(
            super::redacted("sqlite:/var/lib/pgfleet.db"),
            "sqlite:/var/lib/pgfleet.db"
        );
        assert_eq!(
            super::redacted("postgres://db.example/meta"),
            "postgres://db.example/meta"
        );
    }
}
