//! Shared pieces of the benchmarks: a fleet with an HA database, a writer
//! that records every acknowledged id, and small statistics helpers.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfleet::localfleet::{eventually, resolve, Fleet};
use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::{HaStatus, NodeStatus};

pub const DB: &str = "bench-db";

/// Runs the CLI without stalling the writer (the call blocks its thread).
pub fn cli(fleet: &Fleet, args: &[&str]) -> String {
    tokio::task::block_in_place(|| fleet.cli_ok(args))
}
pub const PRIMARY_NAME: &str = "primary.bench-db.pgfleet.internal";

/// A fleet of 4 hosts with `bench-db` and two replicas, HA complete.
pub async fn ha_fleet() -> Fleet {
    let fleet = Fleet::up(4);
    cli(&fleet, &["db", "create", DB]);
    cli(&fleet, &["replica", "create", DB, "--name", "replica-1"]);
    cli(&fleet, &["replica", "create", DB, "--name", "replica-2"]);
    wait_complete(&fleet).await;
    fleet
}

pub async fn wait_complete(fleet: &Fleet) {
    let client = fleet.client();
    eventually(Duration::from_secs(120), "HA complete", || async {
        let view = client.database(DB, false).await.ok()?;
        let active = view
            .nodes
            .iter()
            .filter(|n| matches!(n.replication_status, Some(ReplicationStatus::Active)))
            .count();
        let online = view.nodes.iter().all(|n| n.status == NodeStatus::Online);
        (view.ha_status == HaStatus::Complete
            && active == 2
            && online
            && view.health.sync_mode == "sync")
            .then_some(())
    })
    .await;
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
    pub async fn start(fleet: &Fleet) -> Writer {
        let uri = cli(fleet, &["db", "uri", DB]).trim().to_string();
        let first = resolve(fleet.dns, PRIMARY_NAME).await[0];
        let (setup, conn) = tokio_postgres::connect(
            &uri.replace(PRIMARY_NAME, &first.to_string()),
            tokio_postgres::NoTls,
        )
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
        let dns = fleet.dns;
        let task = {
            let (acks, stop) = (acks.clone(), stop.clone());
            tokio::spawn(async move {
                let mut next = start;
                while !stop.load(Ordering::SeqCst) {
                    let Some(server) = resolve(dns, PRIMARY_NAME).await.first().copied() else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let target =
                        uri.replace(PRIMARY_NAME, &server.to_string()) + "?connect_timeout=1";
                    let connected = tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio_postgres::connect(&target, tokio_postgres::NoTls),
                    )
                    .await;
                    let Ok(Ok((db, conn))) = connected else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    tokio::spawn(conn);
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

/// Acknowledged ids missing from the current primary.
pub async fn lost_writes(fleet: &Fleet, acks: &[Ack]) -> Vec<i64> {
    let uri = cli(fleet, &["db", "uri", DB, "--resolved"])
        .trim()
        .to_string();
    let (db, conn) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
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

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}
