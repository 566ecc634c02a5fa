//! Derives a host's intent (the heartbeat answer) from the stored databases.
//! Pure: the same records always give the same specs.

use pgfleet_core::protocol::{InstanceSpec, MonitorEndpoint, MonitorSpec, PeerSpec, Upstream};
use pgfleet_core::{Database, Desired, Host, NodeRole};

fn agent_port(hosts: &[Host], host: &str) -> u16 {
    hosts
        .iter()
        .find(|h| h.name == host)
        .map(|h| h.agent_port)
        .unwrap_or(7071)
}

/// Data nodes (primary and replicas) of a database as peers.
pub fn data_peers(db: &Database, hosts: &[Host]) -> Vec<PeerSpec> {
    let mut peers = Vec::new();
    for node in &db.nodes {
        if node.role == NodeRole::Monitor || node.desired == Desired::Deleted || node.removing {
            continue;
        }
        peers.push(PeerSpec {
            node: node.name.clone(),
            address: node.address.clone(),
            port: node.port,
            agent_port: agent_port(hosts, &node.host),
            priority: node.priority,
            maintenance: node.maintenance,
        });
    }
    peers
}

/// Instances and monitors that `host` must run.
pub fn host_intent(
    databases: &[Database],
    hosts: &[Host],
    host: &str,
) -> (Vec<InstanceSpec>, Vec<MonitorSpec>) {
    let mut instances = Vec::new();
    let mut monitors = Vec::new();
    for db in databases {
        let primary = db.primary();
        let monitor = db.monitor().map(|m| MonitorEndpoint {
            address: m.address.clone(),
            port: agent_port(hosts, &m.host),
        });
        for node in db.nodes.iter().filter(|n| n.host == host) {
            if node.role == NodeRole::Monitor {
                monitors.push(MonitorSpec {
                    db: db.name.clone(),
                    node: node.name.clone(),
                    desired: node.desired,
                    nodes: data_peers(db, hosts),
                    initial_primary: primary.map(|p| p.name.clone()).unwrap_or_default(),
                    superuser_password: db.superuser_password.clone(),
                    monitor_token: db.monitor_token.clone(),
                    clients: Vec::new(),
                    pg_tls: None,
                    generation: db.generation,
                });
                continue;
            }
            let upstream = match (node.role, primary) {
                (NodeRole::Replica, Some(p)) => Some(Upstream {
                    node: p.name.clone(),
                    address: p.address.clone(),
                    port: p.port,
                }),
                _ => None,
            };
            instances.push(InstanceSpec {
                db: db.name.clone(),
                node: node.name.clone(),
                role: node.role,
                address: node.address.clone(),
                port: node.port,
                version: db.version,
                desired: node.desired,
                admin_user: db.admin_user.clone(),
                admin_password: db.admin_password.clone(),
                replication_password: db.replication_password.clone(),
                superuser_password: db.superuser_password.clone(),
                monitor_token: db.monitor_token.clone(),
                database_name: db.database_name.clone(),
                upstream,
                monitor: monitor.clone(),
                peers: data_peers(db, hosts),
                tls: None,
                generation: db.generation,
                backup: crate::backup::instance_backup_spec(db, node),
                restore: crate::backup::instance_restore_spec(db, node),
            });
        }
    }
    (instances, monitors)
}
