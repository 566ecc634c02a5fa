//! Writers in the clients' namespace: each inserts increasing ids (its own
//! residue class, so writers never collide) through `primary.<db>.<zone>`,
//! resolved from pgfleet's DNS on every reconnect, with a 1 s deadline on
//! every connect and statement, and logs every acknowledged insert with the
//! address that acknowledged it and monotonic send/ack times.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfleet::localfleet::{resolve_any, Fleet};
use serde::{Deserialize, Serialize};

/// The client-side deadline of every connect and statement.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// While a writer has no connection, a new attempt (a fresh DNS answer, its
/// own [`DEADLINE`]) starts this often even if earlier ones still hang, as
/// the requests that keep arriving at an application's pool would start
/// them; the first to connect is used. Without it every writer's attempts
/// stay in step with the fault (all of them hang at once and time out
/// together), which measures the client's deadline more than the failover.
pub const HEDGE: Duration = Duration::from_millis(250);

/// A pause after an attempt failed at once (refused, no answer from DNS).
const RETRY: Duration = Duration::from_millis(50);

/// One acknowledged insert. Times are ms since the run's origin (monotonic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub id: i64,
    pub writer: u32,
    pub server: Ipv4Addr,
    pub sent_ms: f64,
    pub acked_ms: f64,
}

/// What a writer needs to reach the database (all owned: it runs on a
/// thread of its own in the clients' namespace).
#[derive(Clone)]
pub struct Target {
    /// The database's DNS servers (control plane and every agent), asked at once.
    pub dns: Vec<SocketAddr>,
    pub primary_name: String,
    /// `db uri` (the DNS name in it is replaced by the resolved address).
    pub uri: String,
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
}

pub struct Writers {
    pub acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    done: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>,
}

impl Writers {
    /// Starts `count` writers in `fleet`'s clients' namespace; the table
    /// `acked` must exist.
    pub fn start(fleet: &Fleet, target: Target, count: u32, origin: Instant) -> Writers {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let work = {
            let (acks, stop) = (acks.clone(), stop.clone());
            move || async move {
                let mut tasks = Vec::new();
                for writer in 0..count {
                    let (acks, stop, target) = (acks.clone(), stop.clone(), target.clone());
                    tasks.push(tokio::spawn(async move {
                        write_loop(writer, count, target, acks, stop, origin).await
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            }
        };
        let done = pgfleet::netns::spawn_in(fleet.clients_netns(), work);
        Writers {
            acks,
            stop,
            done: Box::pin(done),
        }
    }

    pub fn count(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    /// When the first write sent at or after `sent_ms` was acknowledged.
    pub fn first_ack_sent_after(&self, sent_ms: f64) -> Option<f64> {
        self.acks
            .lock()
            .expect("acks")
            .iter()
            .filter(|a| a.sent_ms >= sent_ms)
            .map(|a| a.acked_ms)
            .reduce(f64::min)
    }

    /// Stops the writers and returns every acknowledged insert, in ack order.
    pub async fn stop(self) -> anyhow::Result<Vec<Ack>> {
        self.stop.store(true, Ordering::SeqCst);
        self.done.await?;
        let mut acks = self.acks.lock().expect("acks").clone();
        acks.sort_by(|a, b| a.acked_ms.total_cmp(&b.acked_ms));
        Ok(acks)
    }
}

/// Connects to whatever `primary.<db>.<zone>` names, with hedged attempts
/// (see [`HEDGE`]); `None` once the writers are stopped.
async fn connect_hedged(
    target: &Target,
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
                let target = target.clone();
                attempts.spawn(async move { attempt(&target).await });
                next_start = tokio::time::Instant::now() + HEDGE;
            }
            Some(done) = attempts.join_next() => match done {
                Ok(Some(connected)) => return Some(connected),
                _ => next_start = next_start.min(tokio::time::Instant::now() + RETRY),
            },
        }
    }
}

/// One connection attempt: resolve, then connect within [`DEADLINE`].
async fn attempt(target: &Target) -> Option<(tokio_postgres::Client, Ipv4Addr)> {
    let server = resolve_any(&target.dns, &target.primary_name, DEADLINE)
        .await
        .first()
        .copied()?;
    let address = target
        .uri
        .replace(&target.primary_name, &server.to_string());
    let (client, connection) = tokio::time::timeout(
        DEADLINE,
        tokio_postgres::connect(&address, target.tls.clone()),
    )
    .await
    .ok()?
    .ok()?;
    tokio::spawn(connection);
    Some((client, server))
}

pub fn ms_since(origin: Instant) -> f64 {
    origin.elapsed().as_secs_f64() * 1000.0
}

async fn write_loop(
    writer: u32,
    writers: u32,
    target: Target,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    origin: Instant,
) {
    let mut next = i64::from(writer) + 1;
    while !stop.load(Ordering::SeqCst) {
        let Some((client, server)) = connect_hedged(&target, &stop).await else {
            return;
        };
        while !stop.load(Ordering::SeqCst) {
            let id = next;
            next += i64::from(writers);
            let sent_ms = ms_since(origin);
            let insert = tokio::time::timeout(
                DEADLINE,
                client.execute("INSERT INTO acked (id) VALUES ($1)", &[&id]),
            )
            .await;
            if !matches!(insert, Ok(Ok(1))) {
                // A timed-out insert may still commit: unacknowledged, so
                // allowed either way. Reconnect through DNS.
                break;
            }
            acks.lock().expect("acks").push(Ack {
                id,
                writer,
                server,
                sent_ms,
                acked_ms: ms_since(origin),
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
