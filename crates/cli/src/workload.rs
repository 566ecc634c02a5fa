//! A write workload for demos and benchmarks: a writer that inserts an
//! increasing id every ~20 ms through the primary's DNS name (re-resolving
//! on every reconnect, with hedged connection attempts) and records every
//! acknowledged id.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::localfleet::{resolve, Fleet};

/// Runs the CLI without stalling other tasks (the call blocks its thread).
pub fn cli(fleet: &Fleet, args: &[&str]) -> String {
    tokio::task::block_in_place(|| fleet.cli_ok(args))
}

/// One acknowledged insert: id, when, and which server acknowledged it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: i64,
    pub at: Instant,
    pub server: Ipv4Addr,
}

pub struct Writer {
    pub acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Inserts an increasing id every ~20 ms through the primary's DNS name,
    /// re-resolving on every reconnect.
    pub async fn start(fleet: &Fleet, db: &str) -> Writer {
        Self::start_with(fleet, db, false, vec![fleet.dns]).await
    }

    /// Like [`start`](Self::start), resolving through `servers` (asked at
    /// once, the first answer taken: e.g. the agents' DNS servers while the
    /// control plane is down).
    pub async fn start_resolving_through(
        fleet: &Fleet,
        db: &str,
        servers: Vec<std::net::SocketAddr>,
    ) -> Writer {
        Self::start_with(fleet, db, false, servers).await
    }

    /// A writer that turns `default_transaction_read_only` off on every
    /// connection (as a careless or hostile client might), so a draining
    /// primary's read-only default does not stop it.
    pub async fn start_overriding_read_only(fleet: &Fleet, db: &str) -> Writer {
        Self::start_with(fleet, db, true, vec![fleet.dns]).await
    }

    async fn start_with(
        fleet: &Fleet,
        db: &str,
        override_read_only: bool,
        servers: Vec<std::net::SocketAddr>,
    ) -> Writer {
        let primary_name = format!("primary.{db}.pgfleet.internal");
        let uri = cli(fleet, &["db", "uri", db]).trim().to_string();
        let first = first_answer(&servers, &primary_name).await[0];
        let tls = fleet.pg_tls();
        let (setup, conn) =
            tokio_postgres::connect(&uri.replace(&primary_name, &first.to_string()), tls.clone())
                .await
                .expect("connect");
        tokio::spawn(conn);
        setup.batch_execute("CREATE TABLE IF NOT EXISTS acked (id bigint primary key, at timestamptz default now())").await.expect("table");
        let start: i64 = setup
            .query_one("SELECT COALESCE(max(id), 0) + 1 FROM acked", &[])
            .await
            .expect("max")
            .get(0);
        drop(setup);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (acks, stop, primary_name) = (acks.clone(), stop.clone(), primary_name.clone());
            tokio::spawn(async move {
                let mut next = start;
                while !stop.load(Ordering::SeqCst) {
                    let Some((db, server)) =
                        connect_hedged(&servers, &primary_name, &uri, &tls, &stop).await
                    else {
                        return;
                    };
                    if override_read_only
                        && db
                            .batch_execute("SET default_transaction_read_only = off")
                            .await
                            .is_err()
                    {
                        continue;
                    }
                    while !stop.load(Ordering::SeqCst) {
                        let insert = tokio::time::timeout(
                            Duration::from_secs(1),
                            db.execute("INSERT INTO acked (id) VALUES ($1)", &[&next]),
                        )
                        .await;
                        let id = next;
                        next += 1;
                        match insert {
                            Ok(Ok(_)) => acks.lock().expect("acks").push(Ack {
                                id,
                                at: Instant::now(),
                                server,
                            }),
                            _ => break,
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        };
        Writer { acks, stop, task }
    }

    pub fn count(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    /// First ack after `after` from `server`.
    pub fn first_ack_from(&self, server: Ipv4Addr, after: Instant) -> Option<Instant> {
        self.acks
            .lock()
            .expect("acks")
            .iter()
            .find(|a| a.server == server && a.at > after)
            .map(|a| a.at)
    }

    pub async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let acks = self.acks.lock().expect("acks").clone();
        acks
    }
}

/// While a writer has no connection, a new attempt (a fresh DNS answer,
/// its own 1 s deadline) starts this often even if earlier ones still hang,
/// as the requests arriving at an application's pool would start them; the
/// first to connect is used. Without it a writer's attempts stay in step
/// with the fault (one hangs on a frozen primary for the whole deadline
/// while DNS already names the new one): the figure would measure the
/// client's deadline, not the failover.
pub const HEDGE: Duration = Duration::from_millis(250);

/// The client-side deadline of a connection attempt (DNS, then connect).
pub const DEADLINE: Duration = Duration::from_secs(1);

/// Connects to whatever `name` resolves to through `servers` (asked at
/// once, first answer taken), `name` in `uri` replaced by the address, with
/// hedged attempts ([`HEDGE`]); `None` once `stop` is set. Used by this
/// writer and by bench/chaos's.
pub async fn connect_hedged(
    servers: &[std::net::SocketAddr],
    name: &str,
    uri: &str,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
    stop: &AtomicBool,
) -> Option<(tokio_postgres::Client, Ipv4Addr)> {
    let mut attempts = tokio::task::JoinSet::new();
    let mut next_start = tokio::time::Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_start) => {
                let (servers, name, uri, tls) =
                    (servers.to_vec(), name.to_string(), uri.to_string(), tls.clone());
                attempts.spawn(async move {
                    let server = crate::localfleet::resolve_any(&servers, &name, DEADLINE)
                        .await
                        .first()
                        .copied()?;
                    let (db, conn) = tokio::time::timeout(
                        DEADLINE,
                        tokio_postgres::connect(&uri.replace(&name, &server.to_string()), tls),
                    )
                    .await
                    .ok()?
                    .ok()?;
                    tokio::spawn(conn);
                    Some((db, server))
                });
                next_start = tokio::time::Instant::now() + HEDGE;
            }
            // An attempt that failed at once (refused, no DNS answer) is
            // followed by the next one shortly.
            Some(done) = attempts.join_next() => match done {
                Ok(Some(connected)) => return Some(connected),
                _ => next_start = next_start.min(tokio::time::Instant::now() + Duration::from_millis(50)),
            },
        }
    }
}

/// The first non-empty answer for `name` from `servers`, in order (one
/// server: waited for up to 2 s; several: 300 ms each, so a dead one costs
/// little).
async fn first_answer(servers: &[std::net::SocketAddr], name: &str) -> Vec<Ipv4Addr> {
    if let [server] = servers {
        return resolve(*server, name).await;
    }
    crate::localfleet::resolve_any(servers, name, Duration::from_millis(300)).await
}

/// Acknowledged ids missing from the current primary.
pub async fn lost_writes(fleet: &Fleet, db: &str, acks: &[Ack]) -> Vec<i64> {
    let uri = cli(fleet, &["db", "uri", db, "--resolved"])
        .trim()
        .to_string();
    let (db, conn) = tokio_postgres::connect(&uri, fleet.pg_tls())
        .await
        .expect("connect");
    tokio::spawn(conn);
    let rows = db.query("SELECT id FROM acked", &[]).await.expect("select");
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    acks.iter()
        .map(|a| a.id)
        .filter(|id| !present.contains(id))
        .collect()
}
