//! The snapshot's content, digest and size.

use pgfleet_core::{Database, Host, Node, NodeRole};

use super::{build, digest};

fn node(name: &str, role: NodeRole, host: usize) -> Node {
    Node::fixture(
        name,
        role,
        &format!("host-{host}"),
        &format!("10.0.0.{host}"),
    )
}

/// A database of three data nodes and a monitor on hosts 1..=4.
fn database(name: &str) -> Database {
    Database {
        nodes: vec![
            node(&format!("{name}-1"), NodeRole::Primary, 1),
            node(&format!("{name}-2"), NodeRole::Replica, 2),
            node(&format!("{name}-3"), NodeRole::Replica, 3),
            node(&format!("{name}-monitor"), NodeRole::Monitor, 4),
        ],
        ha_generation: 7,
        ..Database::fixture(name)
    }
}

fn hosts(count: usize) -> Vec<Host> {
    (1..=count)
        .map(|i| Host {
            name: format!("host-{i}"),
            address: format!("10.0.0.{i}"),
            failure_domain: "fd".into(),
            agent_port: 7071,
            registered_at_ms: 1,
        })
        .collect()
}

fn fingerprints(host: &str) -> Vec<String> {
    vec![format!("{:0>64}", host.len())]
}

#[test]
fn the_snapshot_names_records_fencing_and_agents() {
    let snapshot = build(
        "pgfleet.internal",
        1,
        &[database("app")],
        &hosts(4),
        |_| 8053,
        fingerprints,
    );
    assert_eq!(
        snapshot.records.get("primary.app.pgfleet.internal"),
        Some(&vec!["10.0.0.1".to_string()])
    );
    let app = snapshot.database("app").expect("app");
    assert_eq!(app.ha_generation, 7);
    assert_eq!(app.nodes.len(), 3, "data nodes only");
    assert_eq!(app.address_of("app-3"), Some("10.0.0.3"));
    assert_eq!(app.monitor_fingerprints, fingerprints("host-4"));
    assert_eq!(snapshot.agents.len(), 4);
    assert_eq!(snapshot.digest, digest(&snapshot));
}

/// The digest moves with any content (a primary change's generation) and
/// not otherwise, so an agent gets the zone again exactly when it changed.
#[test]
fn the_digest_follows_the_content() {
    let mut db = database("app");
    let build_with = |db: &Database| {
        build(
            "pgfleet.internal",
            1,
            std::slice::from_ref(db),
            &hosts(4),
            |_| 8053,
            fingerprints,
        )
    };
    let first = build_with(&db);
    assert_eq!(first.digest, build_with(&db).digest);
    db.ha_generation += 1;
    assert_ne!(first.digest, build_with(&db).digest);
}

/// Measured: the snapshot for 50 databases of 3 data nodes and a monitor on
/// 10 hosts, as JSON in the heartbeat answer. It is sent only when it changed.
#[test]
fn a_snapshot_of_50_databases_is_small() {
    let databases: Vec<Database> = (0..50).map(|i| database(&format!("db{i:02}"))).collect();
    let snapshot = build(
        "pgfleet.internal",
        1,
        &databases,
        &hosts(10),
        |_| 8053,
        fingerprints,
    );
    let bytes = serde_json::to_vec(&snapshot).expect("serialises").len();
    eprintln!("zone snapshot for 50 databases: {bytes} bytes");
    assert!(bytes < 64 * 1024, "{bytes} bytes");
}
