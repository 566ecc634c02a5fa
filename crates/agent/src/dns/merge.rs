//! Pure decisions of the agent's DNS: which primary changes it accepts
//! ([`accept`]) and what it serves from the control plane's snapshot plus
//! the changes it applied itself ([`merge`]).
//!
//! Fencing is the control plane's (`Database::ha_generation`): a change is
//! applied only if its monitor generation is above both the snapshot's
//! `ha_generation` of the database and the last change applied locally. A
//! local change is kept, over the snapshot, until a snapshot's
//! `ha_generation` reaches it (the control plane caught up).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use pgfleet_core::protocol::PrimaryChanged;
use pgfleet_core::zone::ZoneSnapshot;
use serde::{Deserialize, Serialize};

/// A primary change applied by this agent that the control plane's snapshot
/// does not show yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPrimary {
    pub generation: u64,
    pub primary: String,
}

/// Local changes by database name.
pub type LocalChanges = BTreeMap<String, LocalPrimary>;

/// Why a pushed primary change is not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No snapshot yet, or the database is not in it.
    UnknownDatabase,
    /// The client is not the host the snapshot names as the database's
    /// monitor host.
    Stranger,
    /// The change's generation is not above what is applied (`current`).
    Stale { current: u64 },
    /// The new primary is not a data node of the database.
    UnknownNode,
}

/// The generation a change of `db` must exceed.
pub fn current_generation(snapshot: &ZoneSnapshot, local: &LocalChanges, db: &str) -> u64 {
    let known = snapshot.database(db).map_or(0, |d| d.ha_generation);
    local.get(db).map_or(known, |l| l.generation.max(known))
}

/// Whether `change`, sent by the client whose certificate has
/// `fingerprint`, may be applied.
pub fn accept(
    snapshot: Option<&ZoneSnapshot>,
    local: &LocalChanges,
    change: &PrimaryChanged,
    fingerprint: &str,
) -> Result<(), Refusal> {
    let snapshot = snapshot.ok_or(Refusal::UnknownDatabase)?;
    let db = snapshot
        .database(&change.db)
        .ok_or(Refusal::UnknownDatabase)?;
    if fingerprint.is_empty() || !db.monitor_fingerprints.iter().any(|f| f == fingerprint) {
        return Err(Refusal::Stranger);
    }
    let current = current_generation(snapshot, local, &change.db);
    if change.generation <= current {
        return Err(Refusal::Stale { current });
    }
    if db.address_of(&change.new_primary).is_none() {
        return Err(Refusal::UnknownNode);
    }
    Ok(())
}

/// A snapshot older than the one held for some database (a late answer, a
/// control plane whose view lags): the primary the held snapshot serves for
/// that database becomes a local change at the held generation, so the name
/// never moves back to an older primary; it is dropped again once a
/// snapshot reaches that generation ([`merge`]). Only for the same database
/// (same creation time); local changes already ahead are kept.
pub fn keep_newer_primaries(
    held: &ZoneSnapshot,
    incoming: &ZoneSnapshot,
    local: &mut LocalChanges,
) {
    for old in &held.databases {
        let Some(new) = incoming.database(&old.db) else {
            continue;
        };
        if new.created_at_ms != old.created_at_ms || new.ha_generation >= old.ha_generation {
            continue;
        }
        if local
            .get(&old.db)
            .is_some_and(|l| l.generation >= old.ha_generation)
        {
            continue;
        }
        let name = format!("primary.{}.{}", old.db, held.zone);
        let Some(address) = held.records.get(&name).and_then(|a| a.first()) else {
            continue;
        };
        let Some(node) = old.nodes.iter().find(|n| &n.address == address) else {
            continue;
        };
        local.insert(
            old.db.clone(),
            LocalPrimary {
                generation: old.ha_generation,
                primary: node.name.clone(),
            },
        );
    }
}

/// The records to serve and the local changes still ahead of `snapshot`.
/// A local change the snapshot reached (its `ha_generation` is at least the
/// change's), or whose database or node the snapshot no longer has, is
/// dropped; the others override `<db>.<zone>` and `primary.<db>.<zone>`.
pub fn merge(
    snapshot: &ZoneSnapshot,
    local: &LocalChanges,
) -> (BTreeMap<String, Vec<Ipv4Addr>>, LocalChanges) {
    let mut records: BTreeMap<String, Vec<Ipv4Addr>> = snapshot
        .records
        .iter()
        .map(|(name, addresses)| {
            let parsed = addresses.iter().filter_map(|a| a.parse().ok()).collect();
            (name.clone(), parsed)
        })
        .collect();
    let mut ahead = LocalChanges::new();
    for (name, change) in local {
        let Some(db) = snapshot.database(name) else {
            continue;
        };
        if db.ha_generation >= change.generation {
            continue;
        }
        let Some(address) = db
            .address_of(&change.primary)
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        records.insert(format!("{name}.{}", snapshot.zone), vec![address]);
        records.insert(format!("primary.{name}.{}", snapshot.zone), vec![address]);
        ahead.insert(name.clone(), change.clone());
    }
    (records, ahead)
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
