//! Making a restored database's first node: `pgbackrest restore` of the
//! source's stanza into an empty data directory, then PostgreSQL recovers
//! to the target and promotes. The repository is private to the source
//! database's OS user, so the restore and the recovery (whose
//! `restore_command` reads the archive) run as that user; once promoted
//! the server stops and the node's files go to the new database's own OS
//! user, which runs it from then on. The restored files hold the source's roles
//! and passwords, so until the new ones are set the agent's superuser may
//! log in without a password on the node's socket only (the socket folder
//! is private to the database's OS user, which can read the files anyway);
//! then the new database's passwords replace the source's (superuser,
//! replication, admin), the recovery settings pgBackRest wrote are removed
//! from `postgresql.auto.conf` (a later replica must not inherit them),
//! and the normal `pg_hba.conf` comes back.

use std::time::Duration;

use pgfleet_core::backup::RestoreSpec;
use pgfleet_core::protocol::InstanceSpec;

use super::Actor;
use crate::pg::user::PgUser;
use crate::pg::{backrest, conf, roles, sql};

/// How long recovery to the target may take.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);

/// Settings a pgBackRest restore puts in `postgresql.auto.conf`.
const RECOVERY_SETTINGS: &[&str] = &[
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_name",
    "recovery_target_lsn",
    "recovery_target_xid",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_timeline",
];

impl Actor {
    pub(super) async fn create_by_restore(
        &mut self,
        spec: &InstanceSpec,
        restore: &RestoreSpec,
    ) -> anyhow::Result<()> {
        if self.paths.data.exists() {
            std::fs::remove_dir_all(&self.paths.data)?;
        }
        let own_user = self.user;
        // A POSIX repository is readable by the source's OS user only; an
        // S3 one by whoever has the location's key (in the restore config).
        if restore.s3.is_none() {
            self.user = repository_owner(&restore.repo_path, own_user)?;
        }
        let restored = self.restore_as_repository_owner(spec, restore).await;
        self.stop_server().await;
        self.user = own_user;
        restored?;
        self.user.own_tree(&self.paths.root)?;
        pgfleet_tls::write_durable(&self.paths.root.join("role"), b"primary")?;
        tracing::info!(db = %spec.db, node = %spec.node, source = %restore.source_db, "restored and promoted");
        Ok(())
    }

    async fn restore_as_repository_owner(
        &mut self,
        spec: &InstanceSpec,
        restore: &RestoreSpec,
    ) -> anyhow::Result<()> {
        crate::pg::process::prepare_dirs(&self.paths, &self.user)?;
        tracing::info!(db = %spec.db, node = %spec.node, source = %restore.source_db, stanza = %restore.stanza, target = ?restore.target, "restoring");
        backrest::restore(&self.user, &self.paths, restore).await?;
        let mode = Self::spec_mode(spec);
        let settings = self.settings(spec, &mode);
        conf::write_all(&self.paths.data, &settings, &self.user)?;
        let hba = self.paths.data.join("pg_hba.conf");
        let normal = std::fs::read_to_string(&hba)?;
        conf::write_owned(
            &hba,
            &format!("# Restore in progress: the agent sets the passwords.\nlocal all pgfleet trust\n{normal}"),
            &self.user,
        )?;
        let client = self.start(spec).await?;
        let deadline = tokio::time::Instant::now() + RECOVERY_TIMEOUT;
        loop {
            let in_recovery: bool = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .map_err(|e| {
                    let tail = super::log_tail(&self.paths.log);
                    anyhow::anyhow!("recovery stopped: {e}; log: {tail}")
                })?
                .get(0);
            if !in_recovery {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("recovery did not reach its target within {RECOVERY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sql::ensure_role(&client, "pgfleet", &spec.superuser_password, "SUPERUSER").await?;
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
        for setting in RECOVERY_SETTINGS {
            client
                .batch_execute(&format!("ALTER SYSTEM RESET {setting}"))
                .await?;
        }
        conf::write_settings(&self.paths.data, &settings, &self.user)?;
        client.batch_execute("SELECT pg_reload_conf()").await?;
        self.secure_roles(spec, &client).await?;
        self.roles_secured = true;
        client.batch_execute("CHECKPOINT").await?;
        Ok(())
    }
}

/// The OS user owning the repository (the source database's), or `fallback`
/// when the agent is not root (then every server runs as the agent's user).
fn repository_owner(repo_path: &str, fallback: PgUser) -> anyhow::Result<PgUser> {
    use std::os::unix::fs::MetadataExt;
    if fallback.uid.is_none() {
        return Ok(fallback);
    }
    let meta = std::fs::metadata(repo_path).map_err(|e| {
        anyhow::anyhow!("the backup repository {repo_path} is not reachable from this host: {e}")
    })?;
    if meta.uid() == 0 {
        anyhow::bail!(
            "the backup repository {repo_path} belongs to root, not to a database's OS user"
        );
    }
    Ok(PgUser {
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
    })
}
