//! The zone snapshot the control plane hands every agent in its heartbeat
//! answer, so each agent's DNS server answers for the zone while the control
//! plane is down, and what an agent needs to apply a monitor's primary change
//! itself (`POST /dns/primary-changed` on the agent endpoint).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The zone as the control plane serves it, plus the fencing data per
/// database. Sent only when its `digest` differs from the one the agent
/// reports (`HeartbeatRequest::zone_digest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct ZoneSnapshot {
    /// The zone, e.g. `pgfleet.internal`.
    pub zone: String,
    /// TTL of every answer, seconds.
    pub ttl_secs: u32,
    /// SHA-256 (hex) of the snapshot with an empty digest: the agent
    /// reports it back; the control plane resends only on a change.
    #[serde(default)]
    pub digest: String,
    /// A records: fully-qualified name (lowercase, no trailing dot) → IPv4
    /// addresses.
    pub records: BTreeMap<String, Vec<String>>,
    pub databases: Vec<ZoneDatabase>,
    /// Every host's agent: where a monitor pushes its primary changes.
    pub agents: Vec<DnsAgent>,
}

/// What an agent needs to apply a primary change of one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZoneDatabase {
    pub db: String,
    /// The last monitor generation whose primary change the control plane
    /// applied (`Database::ha_generation`); older changes are refused.
    pub ha_generation: u64,
    /// When the database was created (`Database::created_at_ms`): a
    /// database deleted and created again under its name is another one,
    /// whose generations start over.
    #[serde(default)]
    pub created_at_ms: i64,
    /// Data nodes: name → address.
    pub nodes: Vec<ZoneNode>,
    /// SHA-256 fingerprints of the host certificates (current and renewed)
    /// of the host that runs the database's monitor: the only client whose
    /// primary changes an agent accepts for this database.
    pub monitor_fingerprints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZoneNode {
    pub name: String,
    pub address: String,
}

/// A host's agent endpoint and DNS port (0: its DNS server is off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DnsAgent {
    pub host: String,
    pub address: String,
    pub agent_port: u16,
    pub dns_port: u16,
}

impl ZoneSnapshot {
    pub fn database(&self, db: &str) -> Option<&ZoneDatabase> {
        self.databases.iter().find(|d| d.db == db)
    }
}

impl ZoneDatabase {
    pub fn address_of(&self, node: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.address.as_str())
    }
}
