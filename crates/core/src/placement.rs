//! The placement planner: a pure function that picks the host for a new node.
//!
//! Rules, in order: only connected hosts; for a data node, only hosts that
//! run the database's PostgreSQL major version; never a host that already carries a
//! node of the same database (anti-affinity); prefer a failure domain the
//! database does not use yet; then the fewest instances; then the name, so the
//! answer is deterministic.

/// What the planner knows of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCandidate {
    pub name: String,
    pub failure_domain: String,
    pub connected: bool,
    /// Instances (PostgreSQL servers and monitors) the host carries now.
    pub instances: usize,
    /// PostgreSQL major version the host's agent runs (when it said).
    pub pg_version: Option<u32>,
}

/// What the new node must avoid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementRequest {
    pub database: String,
    /// Hosts that already carry a node of this database.
    pub hosts_in_use: Vec<String>,
    /// Failure domains that already carry a node of this database.
    pub domains_in_use: Vec<String>,
    /// For a data node: the major version its host must run (a monitor
    /// runs no PostgreSQL server of its own).
    pub version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no eligible host: no connected host in the fleet")]
    NoConnectedHost,
    #[error("no eligible host: no connected host runs PostgreSQL {version}")]
    NoHostWithVersion { version: u32 },
    #[error("anti-affinity: no host without a node of {database}")]
    AntiAffinity { database: String },
}

/// Picks a host, or says why none fits.
pub fn place(
    hosts: &[HostCandidate],
    request: &PlacementRequest,
) -> Result<String, PlacementError> {
    let mut best: Option<(&HostCandidate, (bool, usize, &str))> = None;
    let mut any_connected = false;
    let mut any_with_version = false;
    for host in hosts {
        if !host.connected {
            continue;
        }
        any_connected = true;
        if request.version.is_some() && host.pg_version != request.version {
            continue;
        }
        any_with_version = true;
        if request.hosts_in_use.contains(&host.name) {
            continue;
        }
        let shares_domain = request.domains_in_use.contains(&host.failure_domain);
        let key = (shares_domain, host.instances, host.name.as_str());
        let better = match &best {
            None => true,
            Some((_, best_key)) => key < *best_key,
        };
        if better {
            best = Some((host, key));
        }
    }
    match best {
        Some((host, _)) => Ok(host.name.clone()),
        None if !any_connected => Err(PlacementError::NoConnectedHost),
        None if !any_with_version => Err(PlacementError::NoHostWithVersion {
            version: request.version.unwrap_or_default(),
        }),
        None => Err(PlacementError::AntiAffinity {
            database: request.database.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(name: &str, domain: &str, connected: bool, instances: usize) -> HostCandidate {
        HostCandidate {
            name: name.into(),
            failure_domain: domain.into(),
            connected,
            instances,
            pg_version: Some(15),
        }
    }

    fn request(hosts: &[&str], domains: &[&str]) -> PlacementRequest {
        PlacementRequest {
            database: "pg-dev-db-1".into(),
            hosts_in_use: hosts.iter().map(|s| s.to_string()).collect(),
            domains_in_use: domains.iter().map(|s| s.to_string()).collect(),
            version: Some(15),
        }
    }

    #[test]
    fn picks_the_connected_host_with_fewest_instances() {
        let hosts = [
            host("host-1", "fd-1", true, 2),
            host("host-2", "fd-2", false, 0),
            host("host-3", "fd-3", true, 1),
        ];
        assert_eq!(place(&hosts, &request(&[], &[])).unwrap(), "host-3");
    }

    #[test]
    fn ties_break_by_name() {
        let hosts = [
            host("host-2", "fd-2", true, 0),
            host("host-1", "fd-1", true, 0),
        ];
        assert_eq!(place(&hosts, &request(&[], &[])).unwrap(), "host-1");
    }

    #[test]
    fn never_reuses_a_host_of_the_database() {
        let hosts = [
            host("host-1", "fd-1", true, 0),
            host("host-2", "fd-2", true, 5),
        ];
        assert_eq!(
            place(&hosts, &request(&["host-1"], &["fd-1"])).unwrap(),
            "host-2"
        );
    }

    #[test]
    fn prefers_a_new_failure_domain_over_fewer_instances() {
        let hosts = [
            host("host-1", "fd-1", true, 0),
            host("host-2", "fd-2", true, 3),
        ];
        assert_eq!(
            place(&hosts, &request(&["host-9"], &["fd-1"])).unwrap(),
            "host-2"
        );
    }

    #[test]
    fn data_nodes_go_only_to_hosts_of_their_version() {
        let mut old = host("host-1", "fd-1", true, 0);
        old.pg_version = Some(14);
        let hosts = [old.clone(), host("host-2", "fd-2", true, 9)];
        assert_eq!(place(&hosts, &request(&[], &[])).unwrap(), "host-2");
        let mut monitor = request(&[], &[]);
        monitor.version = None;
        assert_eq!(
            place(&hosts, &monitor).unwrap(),
            "host-1",
            "a monitor runs anywhere"
        );
        let mut sixteen = request(&[], &[]);
        sixteen.version = Some(16);
        assert_eq!(
            place(&hosts, &sixteen).unwrap_err().to_string(),
            "no eligible host: no connected host runs PostgreSQL 16"
        );
    }

    #[test]
    fn explains_why_nothing_fits() {
        let hosts = [host("host-1", "fd-1", true, 0)];
        assert_eq!(
            place(&hosts, &request(&["host-1"], &[]))
                .unwrap_err()
                .to_string(),
            "anti-affinity: no host without a node of pg-dev-db-1"
        );
        let lost = [host("host-1", "fd-1", false, 0)];
        assert_eq!(
            place(&lost, &request(&[], &[])).unwrap_err(),
            PlacementError::NoConnectedHost
        );
        assert!(place(&[], &request(&[], &[]))
            .unwrap_err()
            .to_string()
            .contains("no eligible host"));
    }

    proptest! {
        #[test]
        fn chosen_host_is_connected_and_unused(
            specs in proptest::collection::vec((0usize..4, any::<bool>(), 0usize..5), 0..8),
            used in proptest::collection::vec(0usize..8, 0..4),
        ) {
            let hosts: Vec<HostCandidate> = specs.iter().enumerate()
                .map(|(i, (d, c, n))| host(&format!("host-{i}"), &format!("fd-{d}"), *c, *n))
                .collect();
            let used_names: Vec<String> = used.iter().map(|i| format!("host-{i}")).collect();
            let req = PlacementRequest { database: "db".into(), hosts_in_use: used_names.clone(), domains_in_use: vec![], version: None };
            match place(&hosts, &req) {
                Ok(name) => {
                    let chosen = hosts.iter().find(|h| h.name == name).unwrap();
                    prop_assert!(chosen.connected);
                    prop_assert!(!used_names.contains(&name));
                    for other in &hosts {
                        if other.connected && !used_names.contains(&other.name) {
                            prop_assert!(chosen.instances <= other.instances);
                        }
                    }
                }
                Err(_) => {
                    prop_assert!(hosts.iter().all(|h| !h.connected || used_names.contains(&h.name)));
                }
            }
        }
    }
}
