//! PostgreSQL implementation of `Store`, for a control plane whose metadata
//! should live in a (highly available) PostgreSQL server: `--store
//! postgres://user:password@host/db`. Same tables and SQL as SQLite.

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::Result;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::raw_sql(include_str!("../migrations/postgres/0001_init.sql"))
            .execute(&pool)
            .await?;
        Ok(PostgresStore { pool })
    }
}

crate::sql_impl::impl_store!(PostgresStore, sqlx::PgConnection);
