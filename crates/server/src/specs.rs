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
        // The current monitor supersedes a replaced one of the same database
        // on this host (an agent runs one monitor per database).
        let live_monitor_here = db.monitor().is_some_and(|m| m.host == host);
        for node in db.nodes.iter().filter(|n| n.host == host) {
            if node.role == NodeRole::Monitor {
                if node.desired == Desired::Deleted && live_monitor_here {
                    continue;
                }
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
                    epoch: db.monitor_epoch,
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgfleet_core::Node;

    fn node(name: &str, role: NodeRole, host: &str, desired: Desired) -> Node {
        Node {
            name: name.into(),
            role,
            host: host.into(),
            address: "127.0.0.1".into(),
            port: 5432,
            desired,
            priority: 50,
            maintenance: false,
            ready: true,
            removing: false,
            created_at_ms: 0,
        }
    }

    fn database(nodes: Vec<Node>) -> Database {
        Database {
            admin_user: "a".into(),
            admin_password: "p".into(),
            replication_password: "p".into(),
            monitor_token: "t".into(),
            superuser_password: "s".into(),
            created_at_ms: 0,
            generation: 4,
            nodes,
            monitor_epoch: 2,
            ..Database::fixture("d")
        }
    }

    /// A replaced monitor's host is told to delete it; when the current
    /// monitor was placed on that same host, only the current one is
    /// specified (with the database's epoch), never both.
    #[test]
    fn the_current_monitor_supersedes_a_replaced_one_on_the_same_host() {
        let data = || {
            vec![
                node("d", NodeRole::Primary, "h1", Desired::Running),
                node("r1", NodeRole::Replica, "h2", Desired::Running),
            ]
        };
        let mut apart = data();
        apart.push(node("d-monitor", NodeRole::Monitor, "h3", Desired::Deleted));
        apart.push(node(
            "d-monitor-3",
            NodeRole::Monitor,
            "h4",
            Desired::Running,
        ));
        let (_, retired) = host_intent(&[database(apart)], &[], "h3");
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].desired, Desired::Deleted);

        let mut same = data();
        same.push(node("d-monitor", NodeRole::Monitor, "h3", Desired::Deleted));
        same.push(node(
            "d-monitor-3",
            NodeRole::Monitor,
            "h3",
            Desired::Running,
        ));
        let (_, monitors) = host_intent(&[database(same)], &[], "h3");
        assert_eq!(monitors.len(), 1, "{monitors:?}");
        assert_eq!(monitors[0].node, "d-monitor-3");
        assert_eq!(monitors[0].desired, Desired::Running);
        assert_eq!(monitors[0].epoch, 2);
        let (instances, _) = host_intent(&[database(data())], &[], "h2");
        assert_eq!(instances[0].node, "r1");
    }
}
