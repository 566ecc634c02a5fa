//! SQLite implementation of `Store` (WAL journal, one small pool; files
//! 0600, see `files`).

use std::path::Path;
use std::str::FromStr;

#[cfg(test)]
use pgfleet_core::{Database, Task, TaskState};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::Result;
#[cfg(test)]
use crate::{Store, StoreError};

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`; its files are 0600.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        crate::files::private_sqlite_files(path).map_err(|source| crate::StoreError::Files {
            path: path.to_path_buf(),
            source,
        })?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(include_str!("../migrations/0001_init.sql"))
            .execute(&pool)
            .await?;
        Ok(SqliteStore { pool })
    }

    /// Rewrites the database file without its free pages and empties the
    /// WAL, so values overwritten before (clear secrets an older version
    /// kept) are gone from the files too.
    pub async fn purge_freed_pages(&self) -> Result<()> {
        sqlx::raw_sql("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

crate::sql_impl::impl_store!(SqliteStore, sqlx::SqliteConnection);

#[cfg(test)]
mod tests {
    use super::*;
    use pgfleet_core::{DbStatus, TaskKind};

    fn database(name: &str) -> Database {
        Database {
            status: DbStatus::Creating,
            version: 15,
            nodes: vec![],
            ..Database::fixture(name)
        }
    }

    #[tokio::test]
    async fn databases_survive_reopen_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store
                .insert_database(&database("pg-dev-db-1"))
                .await
                .unwrap();
            let duplicate = store.insert_database(&database("pg-dev-db-1")).await;
            assert!(matches!(duplicate, Err(StoreError::Duplicate { .. })));
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let db = store.get_database("pg-dev-db-1").await.unwrap().unwrap();
        assert_eq!(db.admin_user, "pgadmin");
        store.delete_database("pg-dev-db-1").await.unwrap();
        assert!(store.get_database("pg-dev-db-1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn tasks_get_ids_and_unfinished_ones_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let task = Task::fixture(TaskKind::CreateDatabase, "db");
        let first = store.insert_task(&task).await.unwrap();
        let mut second = store.insert_task(&task).await.unwrap();
        assert!(second.id > first.id);
        second.state = TaskState::Succeeded;
        store.put_task(&second).await.unwrap();
        let open: Vec<i64> = store
            .unfinished_tasks()
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(open, vec![first.id]);
        assert_eq!(
            store.get_task(first.id).await.unwrap().unwrap().id,
            first.id
        );
    }
}
