//! The size and time of a `/metrics` scrape for a fleet of 50 databases
//! (primary, two replicas and a monitor each, on 4 hosts), with simulated
//! agents: their heartbeats are recorded straight into the control plane's
//! observations, and each database has one recorded failover. Prints the
//! figures (`--no-capture`) and checks every database and node is there.

use std::time::{Duration, Instant};

use pgfleet_core::protocol::HeartbeatRequest;
use pgfleet_core::{Database, Host, Node, NodeRole};
use pgfleet_server::ServerConfig;
use tokio_util::sync::CancellationToken;

const DATABASES: usize = 50;
const HOSTS: usize = 4;

fn node(name: &str, role: NodeRole, host: usize) -> Node {
    Node::fixture(
        name,
        role,
        &format!("host-{host}"),
        &format!("127.0.0.{}", host + 10),
    )
}

fn database(index: usize) -> Database {
    let first = index % HOSTS;
    let host = |offset: usize| (first + offset) % HOSTS + 1;
    Database {
        version: 15,
        replication_password: "secret".into(),
        monitor_token: "secret".into(),
        superuser_password: "secret".into(),
        nodes: vec![
            node("p", NodeRole::Primary, host(0)),
            node("r1", NodeRole::Replica, host(1)),
            node("r2", NodeRole::Replica, host(2)),
            node("monitor", NodeRole::Monitor, host(3)),
        ],
        ha_generation: 1,
        ..Database::fixture(&format!("db-{index}"))
    }
}

/// The heartbeat an agent on `host` would send for `databases`.
fn heartbeat(host: usize, databases: &[Database]) -> HeartbeatRequest {
    let name = format!("host-{host}");
    let mut instances = Vec::new();
    let mut monitors = Vec::new();
    for db in databases {
        for node in db.nodes.iter().filter(|n| n.host == name) {
            if node.role == NodeRole::Monitor {
                monitors.push(serde_json::json!({
                    "db": db.name, "node": node.name, "running": true,
                    "primary": "p", "primary_generation": 1, "state": {},
                }));
                continue;
            }
            let primary = node.role == NodeRole::Primary;
            let standbys: Vec<_> = ["r1", "r2"]
                .iter()
                .filter(|_| primary)
                .map(|r| {
                    serde_json::json!({
                        "application_name": r, "state": "streaming", "sync_state": "quorum",
                        "flush_lsn": 100, "replay_lsn": 100, "replay_lag_ms": 0,
                    })
                })
                .collect();
            instances.push(serde_json::json!({
                "db": db.name, "node": node.name, "phase": "running", "error": null,
                "is_primary": primary, "lsn": 100, "timeline": 1,
                "wal_receiver_streaming": (!primary).then_some(true),
                "lag_bytes": (!primary).then_some(0), "lag_seconds": (!primary).then_some(0.0),
                "standbys": standbys, "sync_standby_names": primary.then_some("ANY 1 (r1, r2)"),
                "ha_state": if primary { "primary" } else { "secondary" }, "generation": 1,
            }));
        }
    }
    serde_json::from_value(serde_json::json!({
        "host": {"name": name, "address": format!("127.0.0.{}", host + 10),
                 "failure_domain": format!("fd-{host}"), "agent_port": 7071},
        "pg_version": 15, "instances": instances, "monitors": monitors,
    }))
    .expect("a heartbeat")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_of_50_databases_is_small_and_fast() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::local(dir.path().to_path_buf());
    config.api_addr = "127.0.0.1:0".parse().unwrap();
    config.dns_addr = "127.0.0.1:0".parse().unwrap();
    let cancel = CancellationToken::new();
    let running = pgfleet_server::start(config, cancel.clone()).await.unwrap();
    let state = running.state.clone();
    let databases: Vec<Database> = (0..DATABASES).map(database).collect();
    for host in 1..=HOSTS {
        state
            .store
            .put_host(&Host {
                name: format!("host-{host}"),
                address: format!("127.0.0.{}", host + 10),
                failure_domain: format!("fd-{host}"),
                agent_port: 7071,
                registered_at_ms: 1,
            })
            .await
            .unwrap();
    }
    for db in &databases {
        state.store.insert_database(db).await.unwrap();
        let event = serde_json::json!({
            "at_ms": 1000, "kind": "failover", "old_primary": "r2", "new_primary": "p",
            "reason": "failover", "generation": 1, "detected_at_ms": 1000,
            "promoted_at_ms": 2500, "dns_switched_at_ms": 2600,
        });
        state.store.insert_event(&db.name, &event).await.unwrap();
    }
    let beats: Vec<HeartbeatRequest> = (1..=HOSTS).map(|h| heartbeat(h, &databases)).collect();
    let record = || {
        let mut observed = state.observed.lock().unwrap();
        for beat in &beats {
            observed.record(beat, pgfleet_core::time::now_ms());
        }
    };
    record();
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/metrics", running.api_addr);
    let mut times = Vec::new();
    let mut body = String::new();
    for _ in 0..20 {
        record();
        let started = Instant::now();
        let response = http
            .get(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        body = response.text().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    println!(
        "/metrics with {DATABASES} databases on {HOSTS} hosts: {} bytes, {series} series, median {:.1} ms, max {:.1} ms (20 scrapes, debug build)",
        body.len(),
        median.as_secs_f64() * 1000.0,
        times.last().unwrap().as_secs_f64() * 1000.0
    );
    let roles = body
        .lines()
        .filter(|l| l.starts_with("pgfleet_node_role{"))
        .count();
    assert_eq!(roles, DATABASES * 4, "every node has its role");
    let is_one =
        |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0);
    let failovers = body
        .lines()
        .filter(|l| l.starts_with("pgfleet_database_failovers_total{") && is_one(l))
        .count();
    assert_eq!(failovers, DATABASES);
    let synchronous = body
        .lines()
        .filter(|l| l.starts_with("pgfleet_node_synchronous{") && is_one(l))
        .count();
    assert_eq!(synchronous, DATABASES * 2, "both replicas in the quorum");
    assert!(median < Duration::from_secs(1), "a scrape takes {median:?}");
    // What the heartbeat path pays for metrics: the request-timing
    // middleware's labels and one histogram observation per request (the
    // fleet figures are computed at scrape time, not per heartbeat).
    let rounds = 100_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        let labels = pgfleet_server::metrics::RequestLabels {
            route: "/api/v1/agents/heartbeat".to_string(),
            method: "POST".to_string(),
            status: 200,
        };
        state
            .metrics
            .api_requests
            .get_or_create(&labels)
            .observe(0.001);
    }
    println!(
        "request timing per heartbeat: {:.0} ns (debug build)",
        started.elapsed().as_nanos() as f64 / f64::from(rounds)
    );
    cancel.cancel();
    running.join().await;
}
