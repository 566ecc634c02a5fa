//! Builds the zone's records from the stored databases and hands them to the
//! DNS server. Called after every metadata change, so the next answer is new.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use pgfleet_core::{Database, Desired, NodeRole};
use pgfleet_dns::ZoneRecords;

use crate::state::AppState;

static DNS_GENERATION: AtomicU64 = AtomicU64::new(1);

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

pub async fn publish(state: &AppState) -> anyhow::Result<()> {
    let databases = state.store.list_databases().await?;
    let zone = state.zone.zone();
    let mut a = BTreeMap::new();
    for db in &databases {
        database_records(db, &zone, &mut a);
    }
    let generation = DNS_GENERATION.fetch_add(1, Ordering::SeqCst);
    state.zone.replace(ZoneRecords { generation, a });
    Ok(())
}
