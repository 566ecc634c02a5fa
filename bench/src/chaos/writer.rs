//! Writers in the clients' namespace: each inserts increasing ids (its own
//! residue class, so writers never collide) through `primary.<db>.<zone>`,
//! resolved from pgfleet's DNS on every reconnect, with a 1 s deadline on
//! every connect and statement and hedged reconnects (`pgfleet::workload::connect_hedged`), and logs every acknowledged insert with the
//! address that acknowledged it and monotonic send/ack times.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfleet::localfleet::Fleet;
use serde::{Deserialize, Serialize};

/// The client-side deadline of every connect and statement.
pub use pgfleet::workload::DEADLINE;

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
        let Some((client, server)) = pgfleet::workload::connect_hedged(
            &target.dns,
            &target.primary_name,
            &target.uri,
            &target.tls,
            &stop,
        )
        .await
        else {
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
