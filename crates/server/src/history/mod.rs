//! Server-side history, in memory: per database one point per 10 s for the
//! last hour (`series.rs`: the primary's write commit rate, each replica's
//! lag), and the first write on each new primary (`first_write.rs`) for the
//! failover timelines. Fed by `run`, a loop that reads the observations the
//! agents' heartbeats already bring (`AppState::observed`) every 250 ms and
//! the databases from the store every second; nothing is stored, so a
//! restarted control plane starts an empty history. Read by
//! `GET /api/v1/databases/{db}/history` (`api.rs`) and the database page's
//! charts and timeline (`ui::charts`).

pub mod api;
mod first_write;
pub mod series;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgfleet_core::{Database, DbStatus, HostStatus, NodeRole};
use tokio_util::sync::CancellationToken;

use crate::observed::Observed;
use crate::state::AppState;
use first_write::FirstWrites;
use series::{ReplicaLagPoint, Sample, Series};

const SAMPLE_EVERY: Duration = Duration::from_millis(250);
const DATABASES_EVERY: Duration = Duration::from_secs(1);

/// The history of every database (in `AppState`).
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    series: HashMap<String, Series>,
    first_writes: FirstWrites,
    /// The last `next_xid` each data node reported while in recovery, by
    /// (database, node): a promoted node's baseline for its first write
    /// (taken before the control plane learns of the promotion).
    standby_xids: HashMap<(String, String), u64>,
}

impl History {
    /// The last hour of `db`'s points, oldest first.
    pub fn points(&self, db: &str, now_ms: i64) -> Vec<series::HistoryPoint> {
        let inner = self.inner.lock().expect("history lock");
        inner
            .series
            .get(db)
            .map(|s| s.points(now_ms))
            .unwrap_or_default()
    }

    /// When the new primary of `db`'s change to `generation` completed its
    /// first write, if seen.
    pub fn first_write(&self, db: &str, generation: u64) -> Option<i64> {
        let inner = self.inner.lock().expect("history lock");
        inner.first_writes.at(db, generation)
    }

    /// Adds a sample of `db` as the sampling loop would (page tests).
    #[cfg(test)]
    pub(crate) fn record(&self, db: &str, sample: Sample) {
        let mut inner = self.inner.lock().expect("history lock");
        inner
            .series
            .entry(db.to_string())
            .or_default()
            .record(sample);
    }
}

/// What `db` looks like in the observations now.
fn sample(db: &Database, observed: &Observed, timeout: Duration, now_ms: i64) -> Sample {
    let connected = |host: &str| observed.host_status(host, timeout) == HostStatus::Connected;
    let primary = db.primary().and_then(|p| {
        if !connected(&p.host) {
            return None;
        }
        let xid = observed.instance(&p.host, &db.name, &p.name)?.next_xid?;
        Some((p.name.clone(), xid))
    });
    let mut replicas = Vec::new();
    for node in db.replicas() {
        let instance = connected(&node.host)
            .then(|| observed.instance(&node.host, &db.name, &node.name))
            .flatten();
        replicas.push(ReplicaLagPoint {
            node: node.name.clone(),
            lag_bytes: instance.and_then(|i| i.lag_bytes),
            lag_seconds: instance.and_then(|i| i.lag_seconds),
            streaming: instance.and_then(|i| i.wal_receiver_streaming) == Some(true),
        });
    }
    Sample {
        at_ms: now_ms,
        primary,
        replicas,
    }
}

fn pass(state: &AppState, databases: &[Database]) {
    let now_ms = pgfleet_core::time::now_ms();
    let timeout = state.host_timeout();
    let observed = state.observed.lock().expect("observed lock");
    let mut inner = state.history.inner.lock().expect("history lock");
    let mut present = HashSet::new();
    for db in databases
        .iter()
        .filter(|db| db.status != DbStatus::Deleting)
    {
        present.insert(db.name.clone());
        for node in db.replicas() {
            let standby = observed
                .instance(&node.host, &db.name, &node.name)
                .filter(|i| i.is_primary == Some(false));
            if let Some(xid) = standby.and_then(|i| i.next_xid) {
                inner
                    .standby_xids
                    .insert((db.name.clone(), node.name.clone()), xid);
            }
        }
        let Some(primary) = db.primary() else {
            continue;
        };
        let standby_xid = inner
            .standby_xids
            .get(&(db.name.clone(), primary.name.clone()))
            .copied();
        let primary_xid = standby_xid.or_else(|| {
            observed
                .instance(&primary.host, &db.name, &primary.name)
                .and_then(|i| i.next_xid)
        });
        inner
            .first_writes
            .primary_is(&db.name, &primary.name, db.ha_generation, primary_xid);
        if inner.first_writes.waits_on(&db.name, &primary.name) {
            let report = observed.hosts.get(&primary.host).and_then(|host| {
                let key = pgfleet_core::protocol::instance_key(&db.name, &primary.name);
                let xid = host.instances.get(&key)?.next_xid?;
                let is_primary = host.instances.get(&key)?.is_primary == Some(true);
                is_primary.then_some((xid, host.last_seen_ms))
            });
            if let Some((xid, seen_ms)) = report {
                if let Some(at) = inner
                    .first_writes
                    .report(&db.name, &primary.name, xid, seen_ms)
                {
                    tracing::info!(db = %db.name, node = %primary.name, generation = db.ha_generation, at_ms = at, "first write on the new primary");
                }
            }
        }
        let sample = sample(db, &observed, timeout, now_ms);
        inner
            .series
            .entry(db.name.clone())
            .or_default()
            .record(sample);
    }
    let gone: Vec<String> = inner
        .series
        .keys()
        .filter(|name| !present.contains(*name))
        .cloned()
        .collect();
    inner.standby_xids.retain(|(db, _), _| present.contains(db));
    for name in gone {
        inner.series.remove(&name);
        inner.first_writes.forget(&name);
    }
    debug_assert!(databases.iter().all(|db| db
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Primary)
        .count()
        <= 1));
}

/// Samples every 250 ms until `cancel` fires.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let mut databases = Vec::new();
    let mut read_at: Option<Instant> = None;
    loop {
        if read_at.is_none_or(|at| at.elapsed() >= DATABASES_EVERY) {
            match state.store.list_databases().await {
                Ok(list) => {
                    databases = list;
                    read_at = Some(Instant::now());
                }
                Err(error) => {
                    tracing::warn!(error = %crate::error::error_chain(&error), "history cannot read databases")
                }
            }
        }
        pass(&state, &databases);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}
