//! SQL the agent runs on its own servers, over the Unix socket, as the
//! `pgfleet` superuser: readiness, roles, slots, and observations.

use std::path::Path;
use std::time::Duration;

use pgfleet_core::protocol::StandbyObserved;
use tokio_postgres::{Client, NoTls};

pub async fn connect(socket_dir: &Path, port: u16, password: &str) -> anyhow::Result<Client> {
    connect_to(socket_dir, port, password, "postgres").await
}

/// `connect` to the database `dbname`.
pub async fn connect_to(
    socket_dir: &Path,
    port: u16,
    password: &str,
    dbname: &str,
) -> anyhow::Result<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user("pgfleet")
        .password(password)
        .dbname(dbname)
        .application_name("pgfleet-agent")
        .connect_timeout(Duration::from_secs(2));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Connects over TCP as `pgfleet` (the monitor's health check and rewind
/// sources): over TLS with the host's client certificate when the control
/// plane gave one (servers then refuse anything else).
pub async fn connect_tcp(
    address: &str,
    port: u16,
    password: &str,
    tls: Option<&pgfleet_core::protocol::PgClientTls>,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(address)
        .port(port)
        .user("pgfleet")
        .password(password)
        .dbname("postgres")
        .application_name("pgfleet-monitor")
        .connect_timeout(timeout);
    match tls {
        Some(tls) => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            open(&config, super::tls::superuser_connector(tls)?, timeout).await
        }
        None => open(&config, NoTls, timeout).await,
    }
}

async fn open<T>(
    config: &tokio_postgres::Config,
    tls: T,
    timeout: Duration,
) -> anyhow::Result<Client>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    let (client, connection) = tokio::time::timeout(timeout, config.connect(tls)).await??;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Waits until the server accepts connections.
pub async fn wait_ready(
    socket_dir: &Path,
    port: u16,
    password: &str,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match connect(socket_dir, port, password).await {
            Ok(client) => return Ok(client),
            Err(error) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(anyhow::anyhow!(
                        "server did not accept connections within {}s: {error}",
                        timeout.as_secs()
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Creates (or updates the password of) a login role.
pub async fn ensure_role(
    client: &Client,
    role: &str,
    password: &str,
    attributes: &str,
) -> anyhow::Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    let sql = format!(
        "{verb} ROLE {} WITH LOGIN {attributes} PASSWORD {}",
        quote_ident(role),
        quote_literal(password)
    );
    client.batch_execute(&sql).await?;
    Ok(())
}

pub async fn ensure_database(client: &Client, name: &str, owner: &str) -> anyhow::Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                quote_ident(name),
                quote_ident(owner)
            ))
            .await?;
    }
    Ok(())
}

/// Makes the physical slots exactly `wanted` (only `pgfleet`-managed names, i.e. those of nodes).
pub async fn sync_slots(
    client: &Client,
    wanted: &[String],
    managed: &[String],
) -> anyhow::Result<()> {
    let rows = client
        .query(
            "SELECT slot_name::text, active FROM pg_replication_slots WHERE slot_type = 'physical'",
            &[],
        )
        .await?;
    let existing: Vec<(String, bool)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
        .collect();
    for slot in wanted {
        if !existing.iter().any(|(name, _)| name == slot) {
            client
                .execute(
                    "SELECT pg_create_physical_replication_slot($1, true)",
                    &[slot],
                )
                .await?;
        }
    }
    for (name, active) in &existing {
        if managed.contains(name) && !wanted.contains(name) && !active {
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[name])
                .await?;
        }
    }
    Ok(())
}

/// What the agent reports about one running server.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub in_recovery: bool,
    pub lsn: u64,
    /// On a standby: the end of the last record replayed (WAL the server
    /// really has and can serve), and whether replay has stopped for want
    /// of WAL with no WAL receiver running: then it is final.
    pub replay_lsn: u64,
    pub replay_final: bool,
    pub timeline: u32,
    pub wal_receiver_streaming: bool,
    pub wal_receiver_upstream: Option<String>,
    /// How long ago the WAL receiver last heard from its upstream (WAL or
    /// keepalive), as the server's clock tells.
    pub wal_receiver_silent_ms: Option<u64>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub standbys: Vec<StandbyObserved>,
    pub sync_standby_names: String,
    /// The xmax of a fresh snapshot (`InstanceObserved::next_xid`).
    pub next_xid: u64,
}

pub async fn observe(client: &Client) -> anyhow::Result<Observation> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'), \
             (SELECT timeline_id FROM pg_control_checkpoint())::int, \
             txid_snapshot_xmax(txid_current_snapshot())",
            &[],
        )
        .await?;
    let mut obs = Observation {
        in_recovery: row.get(0),
        sync_standby_names: row.get(1),
        timeline: row.get::<_, i32>(2) as u32,
        next_xid: row.get::<_, i64>(3).max(0) as u64,
        ..Default::default()
    };
    if obs.in_recovery {
        let row = client
            .query_one(
                "SELECT COALESCE((pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint, 0), \
                        COALESCE((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0), \
                        (SELECT status FROM pg_stat_wal_receiver LIMIT 1), \
                        (SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1), \
                        (SELECT sender_host FROM pg_stat_wal_receiver LIMIT 1), \
                        CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                             ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END, \
                        NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver) AND EXISTS ( \
                            SELECT 1 FROM pg_stat_activity WHERE backend_type = 'startup' \
                            AND wait_event IN ('RecoveryRetrieveRetryInterval', 'RecoveryWalStream')), \
                        (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir() \
                            WHERE name ~ '^[0-9A-F]{8}([0-9A-F]{16}|\\.history)$'), \
                        (SELECT (EXTRACT(EPOCH FROM clock_timestamp() - last_msg_receipt_time) * 1000)::bigint \
                            FROM pg_stat_wal_receiver LIMIT 1)",
                &[],
            )
            .await?;
        let received: i64 = row.get(0);
        let replayed: i64 = row.get(1);
        let status: Option<String> = row.get(2);
        let received_tli: Option<i32> = row.get(3);
        obs.lsn = received.max(replayed) as u64;
        obs.replay_lsn = replayed.max(0) as u64;
        obs.replay_final = row.get(6);
        if let Some(tli) = received_tli {
            obs.timeline = obs.timeline.max(tli as u32);
        }
        // With the receiver stopped (a failover's final report) the last
        // checkpoint's timeline can be older than the WAL replayed; the
        // newest timeline among the WAL files and histories it holds is not.
        if let Some(tli) = row.get::<_, Option<i32>>(7) {
            obs.timeline = obs.timeline.max(tli as u32);
        }
        obs.wal_receiver_streaming = status.as_deref() == Some("streaming");
        obs.wal_receiver_upstream = row.get(4);
        obs.wal_receiver_silent_ms = row.get::<_, Option<i64>>(8).map(|ms| ms.max(0) as u64);
        obs.lag_bytes = Some((received - replayed).max(0) as u64);
        obs.lag_seconds = row.get::<_, Option<f64>>(5).map(|s| s.max(0.0));
    } else {
        let row = client
            .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
            .await?;
        obs.lsn = row.get::<_, i64>(0) as u64;
        let rows = client
            .query(
                "SELECT application_name, state, sync_state, \
                        COALESCE((flush_lsn - '0/0'::pg_lsn)::bigint, 0), COALESCE((replay_lsn - '0/0'::pg_lsn)::bigint, 0), \
                        (EXTRACT(EPOCH FROM replay_lag) * 1000)::bigint \
                 FROM pg_stat_replication",
                &[],
            )
            .await?;
        for row in rows {
            obs.standbys.push(StandbyObserved {
                application_name: row.get(0),
                state: row.get::<_, Option<String>>(1).unwrap_or_default(),
                sync_state: row.get::<_, Option<String>>(2).unwrap_or_default(),
                flush_lsn: row.get::<_, i64>(3) as u64,
                replay_lsn: row.get::<_, i64>(4) as u64,
                replay_lag_ms: row.get::<_, Option<i64>>(5).map(|v| v.max(0) as u64),
            });
        }
    }
    Ok(obs)
}
