//! SQLite implementation of `Store` (WAL journal, one small pool).

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use pgfleet_core::{Database, Host, Task, TaskState};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::{EventDoc, Result, Store, StoreError};

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore> {
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
}

fn task_state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "queued",
        TaskState::Running => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_host(&self, host: &Host) -> Result<()> {
        let doc = serde_json::to_string(host)?;
        sqlx::query("INSERT INTO hosts (name, doc) VALUES ($1, $2) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc")
            .bind(&host.name)
            .bind(doc)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_hosts(&self) -> Result<Vec<Host>> {
        let rows = sqlx::query("SELECT doc FROM hosts ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut hosts = Vec::with_capacity(rows.len());
        for row in rows {
            hosts.push(serde_json::from_str(row.get::<&str, _>(0))?);
        }
        Ok(hosts)
    }

    async fn delete_host(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM hosts WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_database(&self, db: &Database) -> Result<()> {
        let doc = serde_json::to_string(db)?;
        let result = sqlx::query(
            "INSERT INTO databases (name, doc) VALUES ($1, $2) ON CONFLICT(name) DO NOTHING",
        )
        .bind(&db.name)
        .bind(doc)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Duplicate {
                kind: "database",
                name: db.name.clone(),
            });
        }
        Ok(())
    }

    async fn put_database(&self, db: &Database) -> Result<()> {
        let doc = serde_json::to_string(db)?;
        sqlx::query("INSERT INTO databases (name, doc) VALUES ($1, $2) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc")
            .bind(&db.name)
            .bind(doc)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_database(&self, name: &str) -> Result<Option<Database>> {
        let row = sqlx::query("SELECT doc FROM databases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(serde_json::from_str(row.get::<&str, _>(0))?)),
            None => Ok(None),
        }
    }

    async fn list_databases(&self) -> Result<Vec<Database>> {
        let rows = sqlx::query("SELECT doc FROM databases ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut dbs = Vec::with_capacity(rows.len());
        for row in rows {
            dbs.push(serde_json::from_str(row.get::<&str, _>(0))?);
        }
        Ok(dbs)
    }

    async fn delete_database(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM databases WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_task(&self, task: &Task) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO tasks (target, state, doc) VALUES ($1, $2, '{}') RETURNING id",
        )
        .bind(&task.target)
        .bind(task_state_name(task.state))
        .fetch_one(&mut *tx)
        .await?;
        let mut stored = task.clone();
        stored.id = row.get::<i64, _>(0);
        sqlx::query("UPDATE tasks SET doc = $1 WHERE id = $2")
            .bind(serde_json::to_string(&stored)?)
            .bind(stored.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn put_task(&self, task: &Task) -> Result<()> {
        sqlx::query("UPDATE tasks SET state = $1, doc = $2 WHERE id = $3")
            .bind(task_state_name(task.state))
            .bind(serde_json::to_string(task)?)
            .bind(task.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_task(&self, id: i64) -> Result<Option<Task>> {
        let row = sqlx::query("SELECT doc FROM tasks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(serde_json::from_str(row.get::<&str, _>(0))?)),
            None => Ok(None),
        }
    }

    async fn list_tasks(&self, limit: i64) -> Result<Vec<Task>> {
        let rows = sqlx::query("SELECT doc FROM tasks ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut tasks = Vec::with_capacity(rows.len());
        for row in rows {
            tasks.push(serde_json::from_str(row.get::<&str, _>(0))?);
        }
        Ok(tasks)
    }

    async fn unfinished_tasks(&self) -> Result<Vec<Task>> {
        let rows =
            sqlx::query("SELECT doc FROM tasks WHERE state IN ('queued', 'running') ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        let mut tasks = Vec::with_capacity(rows.len());
        for row in rows {
            tasks.push(serde_json::from_str(row.get::<&str, _>(0))?);
        }
        Ok(tasks)
    }

    async fn insert_event(&self, db: &str, event: &EventDoc) -> Result<i64> {
        let row = sqlx::query("INSERT INTO events (db, doc) VALUES ($1, $2) RETURNING id")
            .bind(db)
            .bind(serde_json::to_string(event)?)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get::<i64, _>(0))
    }

    async fn list_events(&self, db: &str) -> Result<Vec<EventDoc>> {
        let rows = sqlx::query("SELECT doc FROM events WHERE db = $1 ORDER BY id")
            .bind(db)
            .fetch_all(&self.pool)
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            events.push(serde_json::from_str(row.get::<&str, _>(0))?);
        }
        Ok(events)
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgfleet_core::{DbStatus, TaskKind};

    fn database(name: &str) -> Database {
        Database {
            name: name.into(),
            status: DbStatus::Creating,
            version: 15,
            port: 5432,
            admin_user: "pgadmin".into(),
            admin_password: "secret".into(),
            replication_password: "repl".into(),
            superuser_password: "su".into(),
            monitor_token: "mt".into(),
            database_name: "postgres".into(),
            created_at_ms: 1,
            generation: 1,
            nodes: vec![],
            error: None,
            ha_generation: 0,
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
        let task = Task {
            id: 0,
            kind: TaskKind::CreateDatabase,
            target: "db".into(),
            state: TaskState::Queued,
            steps: vec![],
            current_step: 0,
            progress: 0,
            params: serde_json::json!({}),
            created_at_ms: 0,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            message: None,
        };
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
