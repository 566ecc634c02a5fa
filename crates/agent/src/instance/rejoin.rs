//! Bringing a node onto a new primary's timeline: pg_rewind (after a
//! checkpoint on the source), a fresh pg_basebackup when rewinding fails,
//! and the timeline history files a rewound standby needs.

use std::time::{Duration, Instant};

use pgfleet_core::protocol::InstanceSpec;

use super::Actor;
use crate::keeper::PrimaryRef;
use crate::pg::conf::slot_name;
use crate::pg::{process, sql, tls};

impl Actor {
    /// Brings a stopped former primary onto `upstream`'s timeline: pg_rewind,
    /// or a fresh clone when rewind fails.
    pub(super) async fn rejoin(
        &mut self,
        spec: &InstanceSpec,
        upstream: &PrimaryRef,
    ) -> anyhow::Result<()> {
        let rt = self.runtime.clone();
        let source = format!(
            "host={} port={} user=pgfleet dbname=postgres connect_timeout=5{}",
            upstream.address,
            upstream.port,
            self.ssl_params(spec, tls::Role::Superuser)
        );
        let started = Instant::now();
        // pg_rewind reads the source's control file: right after a promotion
        // it still names the old timeline until a checkpoint, and pg_rewind
        // would then wrongly find nothing to rewind.
        let source_client = sql::connect_tcp(
            &upstream.address,
            upstream.port,
            &spec.superuser_password,
            client_tls(spec),
            Duration::from_secs(3),
        )
        .await?;
        // The promotion's own background checkpoint usually did it already.
        let control_behind: bool = source_client
            .query_one(
                "SELECT (SELECT timeline_id FROM pg_control_checkpoint()) \
                     < ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
                &[],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(true);
        if control_behind {
            source_client.batch_execute("CHECKPOINT").await?;
        }
        drop(source_client);
        let checkpointed = started.elapsed();
        match process::rewind(
            &rt.bin,
            &self.user,
            &self.paths,
            &source,
            &spec.superuser_password,
        )
        .await
        {
            Ok(()) => {
                tracing::info!(db = %spec.db, node = %spec.node, ms = started.elapsed().as_millis() as u64, checkpoint_ms = checkpointed.as_millis() as u64, source_checkpointed = control_behind, "rewound onto new primary")
            }
            Err(error) => {
                tracing::warn!(db = %spec.db, node = %spec.node, error = %format_args!("{error:#}"), "pg_rewind failed; cloning again");
                self.reclone(spec, upstream).await?;
            }
        }
        self.copy_timeline_history(spec, upstream).await?;
        pgfleet_tls::write_durable(&self.paths.root.join("role"), b"standby")?;
        Ok(())
    }

    /// Replaces the data directory with a fresh clone of `upstream`.
    pub(super) async fn reclone(
        &mut self,
        spec: &InstanceSpec,
        upstream: &PrimaryRef,
    ) -> anyhow::Result<()> {
        self.clone_from(spec, upstream).await?;
        pgfleet_tls::write_durable(&self.paths.root.join("role"), b"standby")?;
        tracing::info!(db = %spec.db, node = %spec.node, upstream = %upstream.node, "cloned again from the primary");
        Ok(())
    }

    /// pg_basebackup from `upstream` (fast checkpoint, into the node's slot).
    pub(super) async fn clone_from(
        &mut self,
        spec: &InstanceSpec,
        upstream: &PrimaryRef,
    ) -> anyhow::Result<()> {
        let rt = self.runtime.clone();
        let conninfo = format!(
            "host={} port={} user=pgfleet_replication application_name={} connect_timeout=5{}",
            upstream.address,
            upstream.port,
            spec.node,
            self.ssl_params(spec, tls::Role::Replication)
        );
        process::basebackup(
            &rt.bin,
            &self.user,
            &self.paths,
            &conninfo,
            &slot_name(&spec.node),
            &spec.replication_password,
        )
        .await
    }

    /// Copies the upstream's timeline history files into pg_wal, so that with
    /// `recovery_target_timeline = latest` the standby follows the new
    /// timeline even when pg_rewind found nothing to rewind.
    async fn copy_timeline_history(
        &self,
        spec: &InstanceSpec,
        upstream: &PrimaryRef,
    ) -> anyhow::Result<()> {
        let client = sql::connect_tcp(
            &upstream.address,
            upstream.port,
            &spec.superuser_password,
            client_tls(spec),
            Duration::from_secs(3),
        )
        .await?;
        let rows = client
            .query("SELECT name, pg_read_binary_file('pg_wal/' || name) FROM pg_ls_waldir() WHERE name LIKE '%.history'", &[])
            .await?;
        for row in rows {
            let name: String = row.get(0);
            let bytes: Vec<u8> = row.get(1);
            let path = self.paths.data.join("pg_wal").join(&name);
            if !path.exists() {
                crate::pg::conf::write_owned_bytes(&path, &bytes, &self.user)?;
            }
        }
        Ok(())
    }
}

/// How long a standby may fail to stream before it is rewound.
pub(super) const STALL_REJOIN: Duration = Duration::from_secs(3);

pub(super) async fn upstream_reachable(upstream: &PrimaryRef) -> bool {
    let address = format!("{}:{}", upstream.address, upstream.port);
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(address)
        )
        .await,
        Ok(Ok(_))
    )
}

/// The host's PostgreSQL client certificates, when the control plane sent them.
pub(super) fn client_tls(spec: &InstanceSpec) -> Option<&pgfleet_core::protocol::PgClientTls> {
    spec.tls.as_ref().and_then(|t| t.client.as_ref())
}
