//! Every host agent answers DNS for the zone, from the control plane's last
//! snapshot and the monitor's primary changes pushed to it directly: a
//! failover made while the control plane is down reaches clients that
//! resolve through any agent, and only the database's monitor host may move
//! an agent's answer, never backwards.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{eventually, resolve, wait_ha_settled, Fleet};
use pgfleet_core::api::{DatabaseView, ReplicationStatus};
use pgfleet_core::{HaStatus, NodeRole};

const ZONE: &str = "pgfleet.internal";

fn agent_dns(address: &str) -> SocketAddr {
    format!("{address}:8053").parse().unwrap()
}

fn host_address(view: &DatabaseView, host: &str) -> String {
    view.nodes
        .iter()
        .find(|n| n.host == host)
        .map(|n| n.address.clone())
        .unwrap()
}

/// The database's names: `<db>`, `primary.<db>`, `<node>.<db>` of its data nodes.
fn names(view: &DatabaseView) -> Vec<String> {
    let mut names = vec![
        format!("{}.{ZONE}", view.name),
        format!("primary.{}.{ZONE}", view.name),
    ];
    for node in view.nodes.iter().filter(|n| n.role != NodeRole::Monitor) {
        names.push(format!("{}.{}.{ZONE}", node.name, view.name));
    }
    names
}

async fn answers(server: SocketAddr, names: &[String]) -> Vec<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for name in names {
        out.push(resolve(server, name).await);
    }
    out
}

/// An HTTP client presenting `host`'s certificate, trusting the host CA.
fn client_as(fleet: &Fleet, host: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = fleet.dir().join("hosts").join(host);
    let cert = std::fs::read_to_string(dir.join("agent.crt")).unwrap();
    let key = std::fs::read_to_string(dir.join("agent.key")).unwrap();
    let host_ca = std::fs::read_to_string(fleet.dir().join("host-ca.crt")).unwrap();
    let identity = pgfleet_tls::client_identity_pem(&cert, &key);
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .add_root_certificate(reqwest::Certificate::from_pem(host_ca.as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap()
}

/// The `ha_generation` of `db` in the zone `host`'s agent saved.
fn saved_ha_generation(fleet: &Fleet, host: &str, db: &str) -> u64 {
    let path = fleet
        .dir()
        .join("hosts")
        .join(host)
        .join("dns")
        .join("zone.json");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    saved["snapshot"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["db"] == db)
        .and_then(|d| d["ha_generation"].as_u64())
        .unwrap()
}

/// After a create, every agent's DNS answers the database's names as the
/// control plane does; the API lists them all as resolvers; an agent
/// refuses a primary change from a host that does not run the monitor (403)
/// and one with an old generation (409), and its answer does not move.
#[tokio::test(flavor = "multi_thread")]
async fn every_agent_serves_the_zone_and_takes_primary_changes_only_from_the_monitor_host() {
    let fleet = Fleet::up(3);
    let client = fleet.client();
    fleet.cli_ok(&["db", "create", "zdb"]);
    fleet.cli_ok(&["replica", "create", "zdb", "--name", "r1"]);
    // One replica: HA incomplete, but the monitor runs and has the replica
    // as its synchronous secondary.
    let view = eventually(Duration::from_secs(60), "the replica settled", || async {
        let view = client.database("zdb", false).await.ok()?;
        let settled = view.ha_status == HaStatus::Incomplete
            && view.nodes.iter().any(|n| {
                n.role == NodeRole::Replica
                    && matches!(n.replication_status, Some(ReplicationStatus::Active))
                    && n.ha_state.as_deref() == Some("secondary")
            });
        settled.then_some(view)
    })
    .await;
    let names = names(&view);
    let agents: Vec<SocketAddr> = (1..=3).map(|i| agent_dns(&fleet.host_address(i))).collect();
    let expected = answers(fleet.dns, &names).await;
    assert!(expected.iter().all(|a| a.len() == 1), "{expected:?}");
    for agent in &agents {
        eventually(
            Duration::from_secs(10),
            "the agent's DNS answers as the control plane",
            || async { (answers(*agent, &names).await == expected).then_some(()) },
        )
        .await;
    }
    // Where to resolve: the control plane first, then every agent.
    let listed = client.database("zdb", false).await.unwrap().dns_servers;
    assert_eq!(listed[0], fleet.dns.to_string());
    for agent in &agents {
        assert!(listed.contains(&agent.to_string()), "{listed:?}");
    }
    let uri = fleet.cli(&["db", "uri", "zdb"]);
    assert!(String::from_utf8_lossy(&uri.stderr).contains(&agents[0].to_string()));

    let primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap();
    let replica = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Replica)
        .unwrap();
    let monitor = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Monitor)
        .unwrap();
    let current = saved_ha_generation(&fleet, &primary.host, "zdb");
    let change = |generation: u64| {
        serde_json::json!({
            "db": "zdb", "old_primary": primary.name, "new_primary": replica.name,
            "generation": generation, "reason": "failover", "old_lsn": null, "new_lsn": null,
            "detected_at_ms": null, "promoted_at_ms": null,
        })
    };
    let url = format!(
        "https://{}:7071/dns/primary-changed",
        host_address(&view, &primary.host)
    );
    let primary_dns = agent_dns(&host_address(&view, &primary.host));
    let primary_name = format!("primary.zdb.{ZONE}");
    // A data node's host is not the monitor's host: refused, whatever its generation.
    let stranger = client_as(&fleet, &replica.host)
        .post(&url)
        .json(&change(current + 1000))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), reqwest::StatusCode::FORBIDDEN);
    // The monitor's host, with a generation that is not newer: refused.
    let stale = client_as(&fleet, &monitor.host)
        .post(&url)
        .json(&change(current))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), reqwest::StatusCode::CONFLICT);
    assert_eq!(
        resolve(primary_dns, &primary_name).await,
        vec![primary.address.parse::<Ipv4Addr>().unwrap()],
        "the answer did not move"
    );
    assert_eq!(answers(primary_dns, &names).await, expected);

    // Waking a keeper (the monitor's "you have a new assignment") needs the
    // database's monitor token: another fleet host without it is refused,
    // a node the host does not run is unknown, and a client without a
    // certificate does not get through TLS.
    let wake = |node: &str| {
        format!(
            "https://{}:7071/keeper/zdb/{node}/wake",
            host_address(&view, &primary.host)
        )
    };
    let peer = client_as(&fleet, &replica.host);
    let bare = peer.post(wake(&primary.name)).send().await.unwrap();
    assert_eq!(bare.status(), reqwest::StatusCode::UNAUTHORIZED);
    let guessed = peer
        .post(wake(&primary.name))
        .bearer_auth("not-the-monitor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(guessed.status(), reqwest::StatusCode::UNAUTHORIZED);
    let elsewhere = peer
        .post(wake(&replica.name))
        .bearer_auth("not-the-monitor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), reqwest::StatusCode::NOT_FOUND);
    let anonymous = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .post(wake(&primary.name))
        .send()
        .await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    // "Beat now" (the control plane's nudge after an intent change) carries
    // nothing and is taken from any fleet certificate; strangers do not get
    // through TLS.
    let nudge = format!(
        "https://{}:7071/intent-changed",
        host_address(&view, &primary.host)
    );
    let nudged = peer.post(&nudge).send().await.unwrap();
    assert_eq!(nudged.status(), reqwest::StatusCode::NO_CONTENT);
    let stranger = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .post(&nudge)
        .send()
        .await;
    assert!(stranger.is_err(), "no client certificate: {stranger:?}");
}

/// Control plane killed, then the primary's host: the monitor fails over,
/// and a client resolving `primary.<db>.<zone>` through an agent's DNS (not
/// the monitor's host, not the control plane) reaches the new primary and
/// writes to it; an agent restarted meanwhile answers the same from its
/// saved zone. When the control plane returns it records the change and
/// serves the agents' answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_while_the_control_plane_is_down_reaches_clients_through_an_agents_dns() {
    let mut fleet = Fleet::up(4);
    let client = fleet.client();
    fleet.cli_ok(&["db", "create", "fdb"]);
    fleet.cli_ok(&["replica", "create", "fdb", "--name", "r1"]);
    fleet.cli_ok(&["replica", "create", "fdb", "--name", "r2"]);
    let old_primary = wait_ha_settled(&fleet, "fdb", Duration::from_secs(90)).await;
    let view = client.database("fdb", false).await.unwrap();
    let node = |name: &str| view.nodes.iter().find(|n| n.name == name).unwrap().clone();
    let old = node(&old_primary);
    let monitor = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Monitor)
        .unwrap()
        .clone();
    let replicas: Vec<_> = view
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Replica)
        .cloned()
        .collect();
    let primary_name = format!("primary.fdb.{ZONE}");
    // A replica's host resolves for the client: it hears of the change only
    // by the monitor host's push.
    let resolver = agent_dns(&replicas[0].address);
    let monitor_dns = agent_dns(&host_address(&view, &monitor.host));
    let old_address: Ipv4Addr = old.address.parse().unwrap();
    eventually(
        Duration::from_secs(10),
        "agents answer the primary",
        || async { (resolve(resolver, &primary_name).await == vec![old_address]).then_some(()) },
    )
    .await;
    let uri = fleet
        .cli_ok(&["db", "uri", "fdb", "--resolved"])
        .trim()
        .to_string();
    let db = fleet.connect(&uri).await;
    db.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    drop(db);

    fleet.kill_server();
    assert!(resolve(fleet.dns, &primary_name).await.is_empty());
    fleet.kill_host(&old.host);
    let new_address = eventually(
        Duration::from_secs(30),
        "the agent's DNS names a new primary",
        || async {
            let answer = resolve(resolver, &primary_name).await;
            (answer.len() == 1 && answer[0] != old_address).then(|| answer[0])
        },
    )
    .await;
    let new = replicas
        .iter()
        .find(|r| r.address == new_address.to_string())
        .expect("the new primary is a replica")
        .clone();
    let new_uri = uri.replace(&old.address, &new.address);
    let db = eventually(
        Duration::from_secs(30),
        "a write on the primary the agent's DNS names",
        || async {
            let (db, connection) = tokio_postgres::connect(&new_uri, fleet.pg_tls())
                .await
                .ok()?;
            tokio::spawn(connection);
            db.execute("INSERT INTO t VALUES (1)", &[]).await.ok()?;
            Some(db)
        },
    )
    .await;
    let in_recovery: bool = db
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery);
    drop(db);
    // The monitor's own host answers the same.
    eventually(
        Duration::from_secs(10),
        "the monitor host's DNS",
        || async { (resolve(monitor_dns, &primary_name).await == vec![new_address]).then_some(()) },
    )
    .await;
    // An agent restarted while the control plane is down serves its saved zone.
    fleet.cli_ok(&["host", "kill", &monitor.host]);
    fleet.cli_ok(&["host", "start", &monitor.host]);
    eventually(
        Duration::from_secs(20),
        "the restarted agent answers from its saved zone",
        || async { (resolve(monitor_dns, &primary_name).await == vec![new_address]).then_some(()) },
    )
    .await;

    // The old primary's host returns (its agent's saved zone still names
    // the old primary: the monitor host's push, retried, corrects it), then
    // the control plane, which records the change and serves the same.
    fleet.cli_ok(&["host", "start", &old.host]);
    let old_host_dns = agent_dns(&host_address(&view, &old.host));
    eventually(
        Duration::from_secs(20),
        "the returning host's DNS takes the monitor's push",
        || async {
            (resolve(old_host_dns, &primary_name).await == vec![new_address]).then_some(())
        },
    )
    .await;
    fleet.start_server();
    let client = fleet.client();
    eventually(
        Duration::from_secs(30),
        "the control plane records the new primary",
        || async {
            let view = client.database("fdb", false).await.ok()?;
            (view.primary.as_deref() == Some(new.name.as_str())).then_some(())
        },
    )
    .await;
    let view = client.database("fdb", false).await.unwrap();
    let names: Vec<String> = names(&view)
        .into_iter()
        .filter(|n| !n.starts_with(&format!("{}.", old.name)))
        .collect();
    eventually(
        Duration::from_secs(20),
        "control plane and agents answer the same",
        || async {
            let expected = answers(fleet.dns, &names).await;
            if expected[1] != vec![new_address] {
                return None;
            }
            for server in [resolver, monitor_dns, old_host_dns] {
                if answers(server, &names).await != expected {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}
