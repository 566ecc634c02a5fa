//! Shared pieces of the benchmarks: a fleet with an HA database, a writer
//! that records every acknowledged id, and small statistics helpers.

use std::time::Duration;

use pgfleet::localfleet::Fleet;

pub const DB: &str = "bench-db";

pub use pgfleet::workload::{cli, Ack, Writer};

/// Acknowledged ids of `bench-db` missing from its current primary.
pub async fn lost_writes(fleet: &Fleet, acks: &[Ack]) -> Vec<i64> {
    pgfleet::workload::lost_writes(fleet, DB, acks).await
}
pub const PRIMARY_NAME: &str = "primary.bench-db.pgfleet.internal";

/// A fleet of 4 hosts with `bench-db` and two replicas, HA complete.
pub async fn ha_fleet() -> Fleet {
    ha_fleet_with(4, &[]).await
}

/// `ha_fleet` on `hosts` hosts with extra `pgfleet up` arguments.
pub async fn ha_fleet_with(hosts: u32, extra: &[&str]) -> Fleet {
    let fleet = Fleet::up_with(hosts, extra);
    cli(&fleet, &["db", "create", DB]);
    cli(&fleet, &["replica", "create", DB, "--name", "replica-1"]);
    cli(&fleet, &["replica", "create", DB, "--name", "replica-2"]);
    wait_complete(&fleet).await;
    fleet
}

pub async fn wait_complete(fleet: &Fleet) {
    pgfleet::localfleet::wait_ha_settled(fleet, DB, Duration::from_secs(120)).await;
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

pub mod chaos;
pub mod lose_monitor;
