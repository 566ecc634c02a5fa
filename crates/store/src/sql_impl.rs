//! The `Store` implementation shared by the SQLite and PostgreSQL stores:
//! the same five tables of JSON documents and the same SQL (`$n`
//! parameters, `ON CONFLICT`, `RETURNING` mean the same in both).
//!
//! Writes that must happen together run in one transaction. A check-then-act
//! on a database (`submit_task_if_idle`) first writes the database's row:
//! that takes its row lock in PostgreSQL and the write lock in SQLite, so a
//! second such transaction waits and then sees the first one's task.

pub(crate) fn task_state_name(state: pgfleet_core::TaskState) -> &'static str {
    use pgfleet_core::TaskState;
    match state {
        TaskState::Queued => "queued",
        TaskState::Running => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
    }
}

/// Implements `Store` for a type with a sqlx `pool` field; `$connection`
/// is the backend's connection type (what a transaction dereferences to).
macro_rules! impl_store {
    ($store:ty, $connection:ty) => {
        /// Stores `task` on `connection` and returns it with its id.
        async fn insert_task_on(
            connection: &mut $connection,
            task: &pgfleet_core::Task,
        ) -> $crate::Result<pgfleet_core::Task> {
            let row = sqlx::query(
                "INSERT INTO tasks (target, state, doc) VALUES ($1, $2, '{}') RETURNING id",
            )
            .bind(&task.target)
            .bind($crate::sql_impl::task_state_name(task.state))
            .fetch_one(&mut *connection)
            .await?;
            let mut stored = task.clone();
            stored.id = sqlx::Row::get::<i64, _>(&row, 0);
            sqlx::query("UPDATE tasks SET doc = $1 WHERE id = $2")
                .bind(serde_json::to_string(&stored)?)
                .bind(stored.id)
                .execute(&mut *connection)
                .await?;
            Ok(stored)
        }

        /// Inserts `db` on `connection`; `Duplicate` if the name is taken.
        async fn insert_database_on(
            connection: &mut $connection,
            db: &pgfleet_core::Database,
        ) -> $crate::Result<()> {
            let doc = serde_json::to_string(db)?;
            let result = sqlx::query(
                "INSERT INTO databases (name, doc) VALUES ($1, $2) ON CONFLICT(name) DO NOTHING",
            )
            .bind(&db.name)
            .bind(doc)
            .execute(&mut *connection)
            .await?;
            if result.rows_affected() == 0 {
                return Err($crate::StoreError::Duplicate {
                    kind: "database",
                    name: db.name.clone(),
                });
            }
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn put_host(&self, host: &pgfleet_core::Host) -> $crate::Result<()> {
                let doc = serde_json::to_string(host)?;
                sqlx::query("INSERT INTO hosts (name, doc) VALUES ($1, $2) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc")
                    .bind(&host.name)
                    .bind(doc)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_hosts(&self) -> $crate::Result<Vec<pgfleet_core::Host>> {
                let rows = sqlx::query("SELECT doc FROM hosts ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| Ok(serde_json::from_str(sqlx::Row::get::<&str, _>(row, 0))?))
                    .collect()
            }

            async fn delete_host(&self, name: &str) -> $crate::Result<()> {
                sqlx::query("DELETE FROM hosts WHERE name = $1")
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_database(&self, db: &pgfleet_core::Database) -> $crate::Result<()> {
                let mut connection = self.pool.acquire().await?;
                insert_database_on(&mut connection, db).await
            }

            async fn insert_database_with_task(
                &self,
                db: &pgfleet_core::Database,
                task: &pgfleet_core::Task,
            ) -> $crate::Result<pgfleet_core::Task> {
                let mut tx = self.pool.begin().await?;
                insert_database_on(&mut tx, db).await?;
                let stored = insert_task_on(&mut tx, task).await?;
                tx.commit().await?;
                Ok(stored)
            }

            async fn put_database(&self, db: &pgfleet_core::Database) -> $crate::Result<()> {
                let doc = serde_json::to_string(db)?;
                sqlx::query("INSERT INTO databases (name, doc) VALUES ($1, $2) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc")
                    .bind(&db.name)
                    .bind(doc)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_database(&self, name: &str) -> $crate::Result<Option<pgfleet_core::Database>> {
                let row = sqlx::query("SELECT doc FROM databases WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(row) => Ok(Some(serde_json::from_str(sqlx::Row::get::<&str, _>(&row, 0))?)),
                    None => Ok(None),
                }
            }

            async fn list_databases(&self) -> $crate::Result<Vec<pgfleet_core::Database>> {
                let rows = sqlx::query("SELECT doc FROM databases ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| Ok(serde_json::from_str(sqlx::Row::get::<&str, _>(row, 0))?))
                    .collect()
            }

            async fn delete_database(&self, name: &str) -> $crate::Result<()> {
                sqlx::query("DELETE FROM databases WHERE name = $1")
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_task(&self, task: &pgfleet_core::Task) -> $crate::Result<pgfleet_core::Task> {
                let mut tx = self.pool.begin().await?;
                let stored = insert_task_on(&mut tx, task).await?;
                tx.commit().await?;
                Ok(stored)
            }

            async fn submit_task_if_idle(
                &self,
                task: &pgfleet_core::Task,
            ) -> $crate::Result<$crate::Submission> {
                let mut tx = self.pool.begin().await?;
                // Writing the row first locks the database against a second
                // submitter until this transaction ends (see the module doc).
                let locked = sqlx::query("UPDATE databases SET doc = doc WHERE name = $1")
                    .bind(&task.target)
                    .execute(&mut *tx)
                    .await?;
                if locked.rows_affected() == 0 {
                    return Ok($crate::Submission::NoDatabase);
                }
                let open = sqlx::query(
                    "SELECT doc FROM tasks WHERE target = $1 AND state IN ('queued', 'running') ORDER BY id LIMIT 1",
                )
                .bind(&task.target)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = open {
                    let running = serde_json::from_str(sqlx::Row::get::<&str, _>(&row, 0))?;
                    return Ok($crate::Submission::Busy(running));
                }
                let stored = insert_task_on(&mut tx, task).await?;
                tx.commit().await?;
                Ok($crate::Submission::Queued(stored))
            }

            async fn put_task(&self, task: &pgfleet_core::Task) -> $crate::Result<()> {
                sqlx::query("UPDATE tasks SET state = $1, doc = $2 WHERE id = $3")
                    .bind($crate::sql_impl::task_state_name(task.state))
                    .bind(serde_json::to_string(task)?)
                    .bind(task.id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_task(&self, id: i64) -> $crate::Result<Option<pgfleet_core::Task>> {
                let row = sqlx::query("SELECT doc FROM tasks WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(row) => Ok(Some(serde_json::from_str(sqlx::Row::get::<&str, _>(&row, 0))?)),
                    None => Ok(None),
                }
            }

            async fn list_tasks(&self, limit: i64) -> $crate::Result<Vec<pgfleet_core::Task>> {
                let rows = sqlx::query("SELECT doc FROM tasks ORDER BY id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| Ok(serde_json::from_str(sqlx::Row::get::<&str, _>(row, 0))?))
                    .collect()
            }

            async fn unfinished_tasks(&self) -> $crate::Result<Vec<pgfleet_core::Task>> {
                let rows =
                    sqlx::query("SELECT doc FROM tasks WHERE state IN ('queued', 'running') ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter()
                    .map(|row| Ok(serde_json::from_str(sqlx::Row::get::<&str, _>(row, 0))?))
                    .collect()
            }

            async fn insert_event(&self, db: &str, event: &$crate::EventDoc) -> $crate::Result<i64> {
                let row = sqlx::query("INSERT INTO events (db, doc) VALUES ($1, $2) RETURNING id")
                    .bind(db)
                    .bind(serde_json::to_string(event)?)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(sqlx::Row::get::<i64, _>(&row, 0))
            }

            async fn list_events(&self, db: &str) -> $crate::Result<Vec<$crate::EventDoc>> {
                let rows = sqlx::query("SELECT doc FROM events WHERE db = $1 ORDER BY id")
                    .bind(db)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| Ok(serde_json::from_str(sqlx::Row::get::<&str, _>(row, 0))?))
                    .collect()
            }

            async fn get_meta(&self, key: &str) -> $crate::Result<Option<String>> {
                let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| sqlx::Row::get::<String, _>(&r, 0)))
            }

            async fn put_meta(&self, key: &str, value: &str) -> $crate::Result<()> {
                sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                    .bind(key)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_store;
