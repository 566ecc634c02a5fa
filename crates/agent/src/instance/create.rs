//! Making a node: a primary from the host's initdb template (`pg::template`;
//! initdb when that fails) with its roles, the privilege model of
//! `pg::roles` and the user's database; a replica with a clone of its
//! upstream; a restored database's primary by `pgbackrest restore`
//! (`restore.rs`); then started. The `ready` marker says it is whole.

use pgfleet_core::protocol::InstanceSpec;
use pgfleet_core::NodeRole;
use tokio_postgres::Client;

use super::Actor;
use crate::keeper::PrimaryRef;
use crate::pg::conf;
use crate::pg::process;
use crate::pg::{roles, sql, template};

impl Actor {
    pub(super) async fn create(&mut self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let rt = self.runtime.clone();
        if let (NodeRole::Primary, Some(restore)) = (spec.role, spec.restore.clone()) {
            self.create_by_restore(spec, &restore).await?;
            pgfleet_tls::write_durable(&self.paths.ready_marker(), spec.node.as_bytes())?;
            tracing::info!(db = %spec.db, node = %spec.node, "instance created by restore");
            return Ok(());
        }
        if spec.role == NodeRole::Replica {
            let upstream = spec
                .upstream
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("replica has no upstream"))?;
            let upstream = PrimaryRef {
                node: upstream.node.clone(),
                address: upstream.address.clone(),
                port: upstream.port,
            };
            self.clone_from(spec, &upstream).await?;
            let mode = Self::spec_mode(spec);
            conf::write_all(&self.paths.data, &self.settings(spec, &mode), &self.user)?;
            self.start(spec).await?;
        } else {
            let began = std::time::Instant::now();
            let mut phases: Vec<(&str, u128)> = Vec::new();
            let lap = |name: &'static str, phases: &mut Vec<(&str, u128)>| {
                phases.push((name, began.elapsed().as_millis()));
            };
            if self.paths.data.exists() {
                std::fs::remove_dir_all(&self.paths.data)?;
            }
            let from_template = template::instantiate(
                &rt.bin,
                &rt.host_dir,
                &rt.user,
                &self.user,
                &self.paths,
                &spec.superuser_password,
            )
            .await;
            if let Err(error) = from_template {
                tracing::warn!(db = %spec.db, node = %spec.node, error = %format!("{error:#}"), "cannot copy the initdb template; running initdb");
                if self.paths.data.exists() {
                    std::fs::remove_dir_all(&self.paths.data)?;
                }
                process::initdb(&rt.bin, &self.user, &self.paths, &spec.superuser_password).await?;
            }
            lap("copied", &mut phases);
            let mode = Self::spec_mode(spec);
            conf::write_all(&self.paths.data, &self.settings(spec, &mode), &self.user)?;
            let client = self.start(spec).await?;
            lap("started", &mut phases);
            let version = roles::server_version_num(&client).await?;
            sql::ensure_role(
                &client,
                &spec.admin_user,
                &spec.admin_password,
                roles::admin_attributes(version),
            )
            .await?;
            sql::ensure_role(
                &client,
                "pgfleet_replication",
                &spec.replication_password,
                "REPLICATION",
            )
            .await?;
            client
                .batch_execute(&format!(
                    "GRANT ALL ON SCHEMA public TO \"{}\"",
                    spec.admin_user
                ))
                .await?;
            lap("roles", &mut phases);
            // Before the user's database is made: it is a copy of template1.
            self.secure_roles(spec, &client).await?;
            lap("secured", &mut phases);
            if spec.database_name != "postgres" {
                sql::ensure_database(&client, &spec.database_name, &spec.admin_user).await?;
            }
            lap("database", &mut phases);
            self.roles_secured = true;
            client.batch_execute("CHECKPOINT").await?;
            lap("checkpoint", &mut phases);
            tracing::info!(db = %spec.db, node = %spec.node, ?phases, "primary made (ms since the start, per phase)");
        }
        pgfleet_tls::write_durable(&self.paths.ready_marker(), spec.node.as_bytes())?;
        tracing::info!(db = %spec.db, node = %spec.node, role = ?spec.role, "instance created");
        Ok(())
    }

    /// The privilege model of the database's roles (`pg::roles`): repairs
    /// and role functions in template1, postgres and the user's database.
    pub(super) async fn secure_roles(
        &self,
        spec: &InstanceSpec,
        client: &Client,
    ) -> anyhow::Result<()> {
        roles::harden(client, &spec.admin_user).await?;
        let mut databases = vec!["template1", "postgres"];
        if spec.database_name != "postgres" {
            databases.push(&spec.database_name);
        }
        let mut present = Vec::new();
        for dbname in databases {
            let exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
                .await?
                .is_some();
            if exists {
                present.push(dbname);
            }
        }
        // One connection per database, all at once (each is an
        // authenticated session of its own).
        let mut installs = tokio::task::JoinSet::new();
        for dbname in present {
            let (socket_dir, port) = (self.paths.socket_dir.clone(), spec.port);
            let password = spec.superuser_password.clone();
            let (dbname, admin) = (dbname.to_string(), spec.admin_user.clone());
            installs.spawn(async move {
                let connection = sql::connect_to(&socket_dir, port, &password, &dbname).await?;
                roles::install_functions(&connection, &admin).await
            });
        }
        while let Some(result) = installs.join_next().await {
            result??;
        }
        Ok(())
    }
}
