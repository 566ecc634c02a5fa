//! The agent's zone across restarts: saved, served again, serial forward.

use std::collections::BTreeMap;

use pgfleet_core::protocol::PrimaryChanged;
use pgfleet_core::zone::{ZoneDatabase, ZoneNode, ZoneSnapshot};
use tokio_util::sync::CancellationToken;

use super::AgentDns;
use crate::config::AgentConfig;

fn config(dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        name: "host-1".into(),
        address: "127.0.0.1".into(),
        failure_domain: "fd".into(),
        data_dir: dir.to_path_buf(),
        server_url: "https://127.0.0.1:1".into(),
        ca_pem: None,
        join_token: None,
        credential: String::new(),
        pg_bin: None,
        agent_port: 0,
        dns_port: 0,
        keeper_interval_ms: 100,
        failure_timeout_ms: 2000,
        http: Default::default(),
    }
}

fn snapshot(ha_generation: u64) -> ZoneSnapshot {
    let mut records = BTreeMap::new();
    records.insert(
        "primary.app.pgfleet.internal".to_string(),
        vec!["10.0.0.1".to_string()],
    );
    ZoneSnapshot {
        zone: "pgfleet.internal".into(),
        ttl_secs: 1,
        digest: format!("d{ha_generation}"),
        records,
        databases: vec![ZoneDatabase {
            db: "app".into(),
            ha_generation,
            created_at_ms: 1,
            nodes: vec![
                ZoneNode {
                    name: "app-1".into(),
                    address: "10.0.0.1".into(),
                },
                ZoneNode {
                    name: "app-2".into(),
                    address: "10.0.0.2".into(),
                },
            ],
            monitor_fingerprints: vec!["mon".into()],
        }],
        agents: vec![],
    }
}

fn primary(dns: &AgentDns) -> Vec<std::net::Ipv4Addr> {
    dns.served().expect("served").a["primary.app.pgfleet.internal"].clone()
}

/// A primary change applied while the control plane is down survives a
/// restart of the agent (the saved zone is served again, under a higher
/// serial), and the older snapshot a restarted control plane may send first
/// does not undo it.
#[tokio::test]
async fn the_zone_survives_a_restart_and_its_serial_only_increases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dns = AgentDns::load(&config(dir.path()), CancellationToken::new());
    dns.apply_snapshot(snapshot(5));
    let first = dns.served().expect("served").generation;
    let change = PrimaryChanged {
        db: "app".into(),
        old_primary: Some("app-1".into()),
        new_primary: "app-2".into(),
        generation: 6,
        reason: "failover".into(),
        old_lsn: None,
        new_lsn: None,
        detected_at_ms: None,
        promoted_at_ms: None,
    };
    dns.apply_change(&change, "mon").expect("accepted");
    let second = dns.served().expect("served").generation;
    assert!(second > first);
    assert_eq!(primary(&dns), vec![std::net::Ipv4Addr::new(10, 0, 0, 2)]);
    drop(dns);

    let restarted = AgentDns::load(&config(dir.path()), CancellationToken::new());
    assert!(restarted.served().is_none());
    restarted.start();
    assert_eq!(
        primary(&restarted),
        vec![std::net::Ipv4Addr::new(10, 0, 0, 2)]
    );
    let third = restarted.served().expect("served").generation;
    assert!(third > second, "{third} > {second}");
    assert_eq!(restarted.digest(), "d5");

    // The control plane, not caught up, sends its older view: kept local.
    restarted.apply_snapshot(snapshot(5));
    assert_eq!(
        primary(&restarted),
        vec![std::net::Ipv4Addr::new(10, 0, 0, 2)]
    );
    // Caught up, with the same answer: the local change is gone.
    let mut caught_up = snapshot(6);
    caught_up.records.insert(
        "primary.app.pgfleet.internal".to_string(),
        vec!["10.0.0.2".to_string()],
    );
    restarted.apply_snapshot(caught_up);
    assert_eq!(
        primary(&restarted),
        vec![std::net::Ipv4Addr::new(10, 0, 0, 2)]
    );
    assert!(restarted.local_changes().is_empty());
}
