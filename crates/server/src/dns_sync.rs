//! Builds the zone's records from the stored databases and hands them to the
//! DNS server. Called after every metadata change, so the next answer is new,
//! and every [`REPUBLISH_INTERVAL`] by [`run`] as a safety net.
//!
//! Publishing is serialised ([`DnsPublisher`]): the store is read and the
//! generation taken under one lock, so a newer generation always carries a
//! view read no earlier than the one before it, and an older view can never
//! replace a newer one. Each installed view is also offered to the RFC 2136
//! publisher when `--dns-update` is set ([`rfc2136`]); publishing there never
//! blocks or fails this publish.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use pgfleet_core::{Database, Desired, NodeRole};
use pgfleet_dns::ZoneRecords;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often [`run`] republishes the zone from the store.
pub const REPUBLISH_INTERVAL: Duration = Duration::from_secs(5);

pub mod rfc2136;

/// Serialises publishes; holds the last generation handed to the zone.
#[derive(Default)]
pub struct DnsPublisher {
    last_generation: tokio::sync::Mutex<u64>,
    /// The external server's publisher, when `--dns-update` is set.
    external: std::sync::OnceLock<std::sync::Arc<rfc2136::Link>>,
}

impl DnsPublisher {
    /// Connects the RFC 2136 publisher: later publishes offer it their views.
    pub fn connect(&self, link: std::sync::Arc<rfc2136::Link>) {
        let _ = self.external.set(link);
    }

    /// The RFC 2136 publisher's status, when one is connected.
    pub fn external_status(&self) -> Option<rfc2136::DnsUpdateStatus> {
        self.external.get().map(|link| link.status())
    }
}

/// Records for one database: `<db>`, `primary.<db>` and `<node>.<db>`.
pub fn database_records(db: &Database, zone: &str, records: &mut BTreeMap<String, Vec<Ipv4Addr>>) {
    for node in &db.nodes {
        if node.desired == Desired::Deleted {
            continue;
        }
        let Ok(address) = node.address.parse::<Ipv4Addr>() else {
            continue;
        };
        records.insert(format!("{}.{}.{}", node.name, db.name, zone), vec![address]);
        if node.role == NodeRole::Primary {
            records.insert(format!("{}.{}", db.name, zone), vec![address]);
            records.insert(format!("primary.{}.{}", db.name, zone), vec![address]);
        }
    }
}

/// The zone's records for `databases`.
pub fn zone_records(databases: &[Database], zone: &str) -> BTreeMap<String, Vec<Ipv4Addr>> {
    let mut a = BTreeMap::new();
    for db in databases {
        database_records(db, zone, &mut a);
    }
    a
}

/// Reads the store and installs its view in the zone under a new generation.
/// Returns once a view at least as new as the store at the call is served.
pub async fn publish(state: &AppState) -> Result<(), pgfleet_store::StoreError> {
    let mut last_generation = state.dns_publisher.last_generation.lock().await;
    let databases = state.store.list_databases().await?;
    // The serial moves forward also across restarts of the control plane.
    let generation = pgfleet_dns::zone::next_serial(
        (*last_generation).max(state.zone.generation()),
        pgfleet_dns::zone::unix_secs(),
    );
    let a = zone_records(&databases, &state.zone.zone());
    let records = ZoneRecords { generation, a };
    if let Some(external) = state.dns_publisher.external.get() {
        external.offer(records.clone());
    }
    state.zone.replace(records);
    *last_generation = generation;
    Ok(())
}

/// Republishes every [`REPUBLISH_INTERVAL`] until `cancel` fires, so a
/// publish that failed (store unreachable) is repaired without a new change.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(REPUBLISH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(error) = publish(&state).await {
            tracing::warn!(error = %crate::error::error_chain(&error), "periodic dns publish failed");
        }
    }
}

#[cfg(test)]
mod tests;
