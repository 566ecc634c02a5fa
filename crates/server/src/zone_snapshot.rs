//! The zone snapshot every agent receives in its heartbeat answer (so its
//! own DNS server answers for the zone while the control plane is down), and
//! the list of DNS servers a client's resolver should use.
//!
//! [`build`] is pure: the same records the control plane publishes
//! ([`crate::dns_sync::zone_records`]), each database's `ha_generation`, its
//! data nodes' addresses and the fingerprints of its monitor host's
//! certificate (the only client an agent takes that database's primary
//! changes from), and every host's agent endpoint. [`digest`] names a
//! snapshot: an agent that reports the current one gets no zone in the answer.

use pgfleet_core::zone::{DnsAgent, ZoneDatabase, ZoneNode, ZoneSnapshot};
use pgfleet_core::{Database, Desired, Host, HostStatus, NodeRole};
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// The snapshot for `databases` and `hosts`, with its digest filled in.
/// `dns_port` gives a host's reported DNS port, `fingerprints` its
/// certificates' fingerprints.
pub fn build(
    zone: &str,
    ttl_secs: u32,
    databases: &[Database],
    hosts: &[Host],
    dns_port: impl Fn(&str) -> u16,
    fingerprints: impl Fn(&str) -> Vec<String>,
) -> ZoneSnapshot {
    let records = crate::dns_sync::zone_records(databases, zone)
        .into_iter()
        .map(|(name, addresses)| (name, addresses.iter().map(|a| a.to_string()).collect()))
        .collect();
    let databases = databases
        .iter()
        .map(|db| ZoneDatabase {
            db: db.name.clone(),
            ha_generation: db.ha_generation,
            created_at_ms: db.created_at_ms,
            nodes: db
                .nodes
                .iter()
                .filter(|n| n.role != NodeRole::Monitor && n.desired != Desired::Deleted)
                .map(|n| ZoneNode {
                    name: n.name.clone(),
                    address: n.address.clone(),
                })
                .collect(),
            monitor_fingerprints: db
                .monitor()
                .map(|m| fingerprints(&m.host))
                .unwrap_or_default(),
        })
        .collect();
    let agents = hosts
        .iter()
        .map(|h| DnsAgent {
            host: h.name.clone(),
            address: h.address.clone(),
            agent_port: h.agent_port,
            dns_port: dns_port(&h.name),
        })
        .collect();
    let mut snapshot = ZoneSnapshot {
        zone: zone.to_string(),
        ttl_secs,
        digest: String::new(),
        records,
        databases,
        agents,
    };
    snapshot.digest = digest(&snapshot);
    snapshot
}

/// SHA-256 (hex) of the snapshot's JSON with an empty digest.
pub fn digest(snapshot: &ZoneSnapshot) -> String {
    let mut unnamed = snapshot.clone();
    unnamed.digest.clear();
    let bytes = serde_json::to_vec(&unnamed).expect("a zone snapshot serialises");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The snapshot of the control plane's store now, for a heartbeat answer.
pub fn current(state: &AppState, databases: &[Database], hosts: &[Host]) -> ZoneSnapshot {
    let observed = state.observed.lock().expect("observed lock");
    build(
        &state.zone.zone(),
        state.zone.ttl(),
        databases,
        hosts,
        |host| observed.hosts.get(host).map(|o| o.dns_port).unwrap_or(0),
        |host| state.identities.fingerprints(host),
    )
}

/// The DNS servers a client's resolver should use, `ip:port`: the control
/// plane first, then the DNS server of every connected host's agent.
pub fn dns_servers(state: &AppState, hosts: &[Host]) -> Vec<String> {
    let mut servers = vec![state.config.dns_addr.to_string()];
    let observed = state.observed.lock().expect("observed lock");
    for host in hosts {
        if observed.host_status(&host.name, state.host_timeout()) != HostStatus::Connected {
            continue;
        }
        let port = observed.hosts.get(&host.name).map(|o| o.dns_port);
        if let Some(port) = port.filter(|p| *p != 0) {
            let server = format!("{}:{}", host.address, port);
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
    }
    servers
}

#[cfg(test)]
mod tests;
