//! The health picture from views made by `views::database_view` itself.

use pgfleet_core::api::{DatabaseView, HostView};
use pgfleet_core::{Database, HostStatus, Node, NodeRole};

use super::*;
use crate::observed::Observed;
use crate::views::{database_view, ViewContext};

const NOW_MS: i64 = 1_000 * 86_400_000;

/// `name` with a primary, a replica and a monitor on hosts nobody has
/// heard from (every node offline, so degraded).
fn ha_view(name: &str) -> DatabaseView {
    let mut db = Database::fixture(name);
    db.nodes.push(Node::fixture(
        "r1",
        NodeRole::Replica,
        "host-2",
        "127.0.0.3",
    ));
    db.nodes.push(Node::fixture(
        "r2",
        NodeRole::Replica,
        "host-3",
        "127.0.0.4",
    ));
    db.nodes.push(Node::fixture(
        "mon",
        NodeRole::Monitor,
        "host-4",
        "127.0.0.5",
    ));
    let observed = Observed::default();
    let ctx = ViewContext {
        observed: &observed,
        hosts: &[],
        host_timeout: std::time::Duration::from_secs(2),
        zone: "pgfleet.internal",
        unfinished: &[],
    };
    database_view(&db, &ctx, false)
}

fn host(name: &str, status: HostStatus, expires_in_ms: i64) -> HostView {
    HostView {
        name: name.into(),
        address: "127.0.0.9".into(),
        failure_domain: "default".into(),
        status,
        last_heartbeat_ms: None,
        pg_version: None,
        instances: vec!["db/node".into()],
        certificate_expires_at_ms: Some(NOW_MS + expires_in_ms),
    }
}

#[test]
fn a_degraded_database_shows_why_it_would_not_survive_and_which_replicas_stopped() {
    let view = ha_view("shop");
    assert!(view.health.degraded, "{:?}", view.health);
    let items = health_items(&[view], &[], &[], NOW_MS);
    let survive = items
        .iter()
        .find(|i| i.kind == "Would not survive a node loss")
        .expect("the database is listed");
    assert_eq!(survive.severity, Severity::Critical);
    assert_eq!(survive.link, "/databases/shop/cluster");
    assert!(survive.detail.contains("is offline"), "{}", survive.detail);
    let stopped: Vec<_> = items
        .iter()
        .filter(|i| i.kind == "Replica not streaming")
        .map(|i| i.subject.as_str())
        .collect();
    assert_eq!(stopped, ["shop/r1", "shop/r2"]);
    assert!(items.iter().all(|i| i.kind != "Replica lagging"));
}

#[test]
fn lagging_replicas_and_failing_archives_link_to_where_they_are_fixed() {
    let mut view = ha_view("ledger");
    for node in view.nodes.iter_mut() {
        node.status = pgfleet_core::NodeStatus::Online;
        node.replication_status = (node.role == NodeRole::Replica)
            .then_some(pgfleet_core::api::ReplicationStatus::Active);
    }
    view.nodes[1].lag_seconds = Some(42.0);
    view.health.reasons = vec![
        "WAL archiving fails (3 segments waiting, last failed 0001): Permission denied".into(),
    ];
    view.health.degraded = true;
    let items = health_items(&[view], &[], &[], NOW_MS);
    let lagging = items.iter().find(|i| i.kind == "Replica lagging").unwrap();
    assert_eq!(lagging.subject, "ledger/r1");
    assert!(lagging.detail.contains("42.0 s"), "{}", lagging.detail);
    let archive = items.iter().find(|i| i.kind == "Archive failing").unwrap();
    assert_eq!(archive.link, "/databases/ledger/backups");
    assert!(archive.detail.contains("Permission denied"));
}

#[test]
fn lines_come_worst_first() {
    let hosts = [
        host("host-a", HostStatus::Connected, 3 * 86_400_000),
        host("host-b", HostStatus::Lost, 90 * 86_400_000),
        host("host-c", HostStatus::Connected, 60 * 86_400_000),
    ];
    let targets = [FailingTarget {
        name: "pager".into(),
        error: "HTTP 500".into(),
        pending: 2,
    }];
    let items = health_items(&[], &hosts, &targets, NOW_MS);
    let kinds: Vec<_> = items.iter().map(|i| (i.kind, i.subject.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("Host lost", "host-b"),
            ("Alert target failing", "pager"),
            ("Certificate expiring", "host-a"),
        ]
    );
    assert!(items[1].detail.contains("HTTP 500 (2 alerts waiting)"));
    assert!(items[2].detail.contains("3.0 days"));
}
