use pgfleet_core::zone::{ZoneDatabase, ZoneNode};

use super::*;

const MONITOR: &str = "aa";

fn snapshot(ha_generation: u64, primary: &str) -> ZoneSnapshot {
    let address = |node: &str| match node {
        "app-1" => "10.0.0.1",
        "app-2" => "10.0.0.2",
        _ => "10.0.0.3",
    };
    let mut records = BTreeMap::new();
    for node in ["app-1", "app-2", "app-3"] {
        records.insert(
            format!("{node}.app.pgfleet.internal"),
            vec![address(node).to_string()],
        );
    }
    records.insert(
        "app.pgfleet.internal".into(),
        vec![address(primary).to_string()],
    );
    records.insert(
        "primary.app.pgfleet.internal".into(),
        vec![address(primary).to_string()],
    );
    ZoneSnapshot {
        zone: "pgfleet.internal".into(),
        ttl_secs: 1,
        digest: String::new(),
        records,
        databases: vec![ZoneDatabase {
            db: "app".into(),
            ha_generation,
            created_at_ms: 1,
            nodes: ["app-1", "app-2", "app-3"]
                .iter()
                .map(|n| ZoneNode {
                    name: n.to_string(),
                    address: address(n).into(),
                })
                .collect(),
            monitor_fingerprints: vec![MONITOR.into()],
        }],
        agents: vec![],
    }
}

fn change(generation: u64, new_primary: &str) -> PrimaryChanged {
    PrimaryChanged {
        db: "app".into(),
        old_primary: Some("app-1".into()),
        new_primary: new_primary.into(),
        generation,
        reason: "failover".into(),
        old_lsn: None,
        new_lsn: None,
        detected_at_ms: None,
        promoted_at_ms: None,
    }
}

fn local(generation: u64, primary: &str) -> LocalChanges {
    let mut local = LocalChanges::new();
    local.insert(
        "app".into(),
        LocalPrimary {
            generation,
            primary: primary.into(),
        },
    );
    local
}

fn primary_of(records: &BTreeMap<String, Vec<Ipv4Addr>>) -> (String, String) {
    let first = |name: &str| records[name][0].to_string();
    (
        first("app.pgfleet.internal"),
        first("primary.app.pgfleet.internal"),
    )
}

#[test]
fn only_the_monitor_host_with_a_newer_generation_is_accepted() {
    let snap = snapshot(5, "app-1");
    let none = LocalChanges::new();
    assert_eq!(
        accept(Some(&snap), &none, &change(6, "app-2"), MONITOR),
        Ok(())
    );
    assert_eq!(
        accept(Some(&snap), &none, &change(6, "app-2"), "bb"),
        Err(Refusal::Stranger)
    );
    assert_eq!(
        accept(Some(&snap), &none, &change(6, "app-2"), ""),
        Err(Refusal::Stranger)
    );
    assert_eq!(
        accept(Some(&snap), &none, &change(5, "app-2"), MONITOR),
        Err(Refusal::Stale { current: 5 })
    );
    // A change applied locally fences older ones too.
    assert_eq!(
        accept(
            Some(&snap),
            &local(8, "app-3"),
            &change(7, "app-2"),
            MONITOR
        ),
        Err(Refusal::Stale { current: 8 })
    );
    assert_eq!(
        accept(Some(&snap), &none, &change(6, "nobody"), MONITOR),
        Err(Refusal::UnknownNode)
    );
    assert_eq!(
        accept(None, &none, &change(6, "app-2"), MONITOR),
        Err(Refusal::UnknownDatabase)
    );
    let mut other = change(6, "app-2");
    other.db = "other".into();
    assert_eq!(
        accept(Some(&snap), &none, &other, MONITOR),
        Err(Refusal::UnknownDatabase)
    );
}

/// The control plane has not caught up (its snapshot is older for the
/// database): the local answer stays.
#[test]
fn a_local_change_ahead_of_the_snapshot_is_kept() {
    let (records, ahead) = merge(&snapshot(5, "app-1"), &local(6, "app-2"));
    assert_eq!(primary_of(&records), ("10.0.0.2".into(), "10.0.0.2".into()));
    assert_eq!(ahead, local(6, "app-2"));
    // Other records are the snapshot's.
    assert_eq!(
        records["app-1.app.pgfleet.internal"],
        vec![Ipv4Addr::new(10, 0, 0, 1)]
    );
}

/// Once the snapshot reaches the change's generation (or passes it with a
/// later change), the snapshot's answer wins and the local change is gone.
#[test]
fn a_snapshot_that_caught_up_replaces_the_local_change() {
    let (records, ahead) = merge(&snapshot(6, "app-2"), &local(6, "app-2"));
    assert_eq!(primary_of(&records), ("10.0.0.2".into(), "10.0.0.2".into()));
    assert!(ahead.is_empty());
    let (records, ahead) = merge(&snapshot(9, "app-3"), &local(6, "app-2"));
    assert_eq!(primary_of(&records), ("10.0.0.3".into(), "10.0.0.3".into()));
    assert!(ahead.is_empty());
}

#[test]
fn a_local_change_of_a_database_or_node_that_is_gone_is_dropped() {
    let mut snap = snapshot(5, "app-1");
    let (_, ahead) = merge(&snap, &local(6, "ghost"));
    assert!(ahead.is_empty());
    snap.databases.clear();
    let (records, ahead) = merge(&snap, &local(6, "app-2"));
    assert!(ahead.is_empty());
    assert_eq!(primary_of(&records), ("10.0.0.1".into(), "10.0.0.1".into()));
}

/// A late or lagging snapshot (generation 5, primary app-1) after the held
/// one (generation 7, primary app-3): app-3 stays the answer until a
/// snapshot reaches generation 7 (before, DNS moved back to app-1).
#[test]
fn an_older_snapshot_never_moves_the_primary_back() {
    let held = snapshot(7, "app-3");
    let late = snapshot(5, "app-1");
    let mut local = LocalChanges::new();
    keep_newer_primaries(&held, &late, &mut local);
    let (records, ahead) = merge(&late, &local);
    assert_eq!(primary_of(&records), ("10.0.0.3".into(), "10.0.0.3".into()));
    assert_eq!(ahead, self::local(7, "app-3"));
    // Caught up: the snapshot's answer again, nothing kept.
    let (records, ahead) = merge(&snapshot(7, "app-3"), &ahead);
    assert_eq!(primary_of(&records), ("10.0.0.3".into(), "10.0.0.3".into()));
    assert!(ahead.is_empty());
}

/// A database deleted and created again under its name starts its
/// generations over: its lower generation is not "older".
#[test]
fn a_recreated_database_is_not_an_older_snapshot() {
    let held = snapshot(7, "app-3");
    let mut recreated = snapshot(0, "app-1");
    recreated.databases[0].created_at_ms = 2;
    let mut local = LocalChanges::new();
    keep_newer_primaries(&held, &recreated, &mut local);
    assert!(local.is_empty());
    let (records, _) = merge(&recreated, &local);
    assert_eq!(primary_of(&records), ("10.0.0.1".into(), "10.0.0.1".into()));
}

/// A local change already ahead of the held snapshot is kept as it is.
#[test]
fn a_local_change_ahead_survives_an_older_snapshot() {
    let held = snapshot(7, "app-3");
    let mut local = self::local(8, "app-2");
    keep_newer_primaries(&held, &snapshot(5, "app-1"), &mut local);
    assert_eq!(local, self::local(8, "app-2"));
}
