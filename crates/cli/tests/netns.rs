//! Fleets in network namespaces (`pgfleet up --netns`) and the network fault
//! verbs: an HA database served to the clients' namespace (and failed over
//! by `host kill`, as on loopback), a primary cut
//! from its clients, an isolated primary failed over and fenced, a slowed
//! link, the control plane killed and started again, and nothing of the
//! fleet's network left behind. Skipped, with a printed reason, where
//! network namespaces are unavailable (not root, or `ip netns add` fails).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, resolve, wait_ha_settled, Fleet};
use pgfleet::faults::Slowness;
use pgfleet::netns::{self, Network};
use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::NodeRole;

/// Prints why `test` is skipped when namespaces are unavailable.
fn unavailable(test: &str) -> bool {
    match Fleet::netns_unavailable() {
        Some(reason) => {
            eprintln!("SKIPPED {test}: network namespaces are unavailable here: {reason}");
            true
        }
        None => false,
    }
}

/// A netns fleet of 4 hosts with `db` (primary + 2 replicas) settled;
/// returns it with the primary's node name.
async fn ha_fleet(db: &str) -> (Fleet, String) {
    let fleet = Fleet::up_netns(4);
    fleet.cli_ok(&["db", "create", db]);
    fleet.cli_ok(&["replica", "create", db, "--name", &format!("{db}-r1")]);
    fleet.cli_ok(&["replica", "create", db, "--name", &format!("{db}-r2")]);
    let primary = wait_ha_settled(&fleet, db, Duration::from_secs(40)).await;
    (fleet, primary)
}

/// The URI of `db` with `address` in place of its DNS name, and a 1 s
/// connect timeout.
fn uri_at(fleet: &Fleet, db: &str, address: &str) -> String {
    let uri = fleet.cli_ok(&["db", "uri", db]).trim().to_string();
    uri.replace(&format!("primary.{db}.pgfleet.internal"), address) + "?connect_timeout=1"
}

/// Runs `sql` (one row, one text column) at `uri` from the clients'
/// namespace, within 3 s.
async fn query_from_clients(fleet: &Fleet, uri: &str, sql: &str) -> Result<String, String> {
    let (tls, uri, sql) = (fleet.pg_tls(), uri.to_string(), sql.to_string());
    fleet
        .in_clients(move || async move { query(tls, &uri, &sql).await })
        .await
}

async fn query(
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    uri: &str,
    sql: &str,
) -> Result<String, String> {
    let work = async {
        let (client, connection) = tokio_postgres::connect(uri, tls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let row = client
            .query_one(sql, &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, String>(0))
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .map_err(|_| "no answer within 3 s".to_string())?
}

/// Runs `sql` (any statements) at `uri` from the clients' namespace, within 3 s.
async fn execute_from_clients(fleet: &Fleet, uri: &str, sql: &str) -> Result<(), String> {
    let (tls, uri, sql) = (fleet.pg_tls(), uri.to_string(), sql.to_string());
    fleet
        .in_clients(move || async move {
            let work = async {
                let (client, connection) = tokio_postgres::connect(&uri, tls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client.batch_execute(&sql).await.map_err(|e| e.to_string())
            };
            tokio::time::timeout(Duration::from_secs(3), work)
                .await
                .map_err(|_| "no answer within 3 s".to_string())?
        })
        .await
}

fn node_address(view: &pgfleet_core::api::DatabaseView, node: &str) -> String {
    view.nodes
        .iter()
        .find(|n| n.name == node)
        .unwrap()
        .address
        .clone()
}

/// Nothing of `network` remains: no namespace, veth or bridge.
fn assert_removed(network: &Network) {
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    for member in network.members() {
        assert!(!namespaces.contains(&member.netns), "{namespaces}");
        assert!(
            !Path::new("/sys/class/net").join(&member.veth).exists(),
            "{links}"
        );
    }
    assert!(!links.contains(&network.bridge), "{links}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_netns_fleet_serves_an_ha_database_to_the_clients_namespace_and_leaves_nothing_behind() {
    if unavailable("a_netns_fleet_serves_an_ha_database…") {
        return;
    }
    let (fleet, primary) = ha_fleet("ns-db").await;
    let network = fleet.network.clone().unwrap();
    assert!(
        network.subnet().starts_with("198.1"),
        "{}",
        network.subnet()
    );
    let log = std::fs::read_to_string(fleet.dir().join("up.log")).unwrap();
    assert!(log.contains("network:    netns"), "{log}");

    // DNS answers, from the clients' namespace, with the primary's own address.
    let view = fleet.client().database("ns-db", false).await.unwrap();
    let primary_address = node_address(&view, &primary);
    let dns = fleet.dns;
    let answer = fleet
        .in_clients(move || async move { resolve(dns, "primary.ns-db.pgfleet.internal").await })
        .await;
    assert_eq!(
        answer,
        vec![primary_address.parse::<std::net::Ipv4Addr>().unwrap()]
    );
    // And so does every host's agent, on its namespace's address.
    assert_eq!(
        view.dns_servers.len(),
        1 + fleet.hosts as usize,
        "{:?}",
        view.dns_servers
    );
    for server in view.dns_servers.clone() {
        let server: std::net::SocketAddr = server.parse().unwrap();
        let from_agent = eventually(Duration::from_secs(10), "an agent's DNS answer", || {
            let (fleet, expected) = (&fleet, answer.clone());
            async move {
                let got = fleet
                    .in_clients(move || async move {
                        resolve(server, "primary.ns-db.pgfleet.internal").await
                    })
                    .await;
                (got == expected).then_some(got)
            }
        })
        .await;
        assert_eq!(from_agent, answer, "{server}");
    }

    // `db uri --resolved`, run in the clients' namespace, connects from there:
    // the server sees the clients' address, not 127.0.0.1.
    let resolved = fleet.cli_in_clients(&["db", "uri", "ns-db", "--resolved"]);
    assert!(resolved.status.success(), "{resolved:?}");
    let uri = String::from_utf8(resolved.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(uri.contains(&primary_address), "{uri}");
    let seen = query_from_clients(&fleet, &uri, "SELECT host(inet_client_addr())").await;
    assert_eq!(seen, Ok(network.clients.address.to_string()));

    // The control plane killed (SIGKILL) and started by the CLI: the data
    // plane never stops serving, and the control plane resumes on its store.
    let killed = fleet.cli_ok(&["server", "kill"]);
    assert!(killed.contains("control plane killed"), "{killed}");
    let during = query_from_clients(&fleet, &uri, "SELECT 'still serving'").await;
    assert_eq!(during.as_deref(), Ok("still serving"));
    let started = fleet.cli_ok(&["server", "start"]);
    assert!(started.contains("control plane started"), "{started}");
    assert_eq!(
        wait_ha_settled(&fleet, "ns-db", Duration::from_secs(30)).await,
        primary,
        "no failover because the control plane restarted"
    );

    // Failover by power loss, as on loopback: DNS moves, and the old
    // primary's host, started again (in its namespace), rejoins as a replica.
    let primary_host = view
        .nodes
        .iter()
        .find(|n| n.name == primary)
        .unwrap()
        .host
        .clone();
    let killed = fleet.cli_ok(&["host", "kill", &primary_host]);
    assert!(killed.contains("killed"), "{killed}");
    eventually(
        Duration::from_secs(30),
        "DNS to leave the killed primary",
        || {
            let (fleet, old) = (&fleet, primary_address.clone());
            async move {
                let answer = fleet
                    .in_clients(move || async move {
                        resolve(dns, "primary.ns-db.pgfleet.internal").await
                    })
                    .await;
                answer.first().filter(|a| a.to_string() != old).copied()
            }
        },
    )
    .await;
    fleet.cli_ok(&["host", "start", &primary_host]);
    let new_primary = wait_ha_settled(&fleet, "ns-db", Duration::from_secs(40)).await;
    assert_ne!(new_primary, primary);

    drop(fleet);
    assert_removed(&network);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_cut_from_its_clients_is_unreachable_to_them_while_replicas_keep_streaming() {
    if unavailable("a_primary_cut_from_its_clients…") {
        return;
    }
    let (mut fleet, primary) = ha_fleet("cut-db").await;
    let network = fleet.network.clone().unwrap();
    let view = fleet.client().database("cut-db", false).await.unwrap();
    let primary_node = view.nodes.iter().find(|n| n.name == primary).unwrap();
    let replica_address = node_address(&view, "cut-db-r1");
    let primary_uri = uri_at(&fleet, "cut-db", &primary_node.address);

    let done = fleet.cut(&primary_node.host, "clients").unwrap();
    assert!(done.contains("cut from clients"), "{done}");
    let refused = query_from_clients(&fleet, &primary_uri, "SELECT 'reached'").await;
    assert!(
        refused.is_err(),
        "the primary answered a cut client: {refused:?}"
    );

    // The control plane's side still reaches the primary; what it writes
    // streams to the replicas, which the clients still reach.
    let setup = fleet.connect(&primary_uri).await;
    setup
        .batch_execute("CREATE TABLE during_cut (note text); INSERT INTO during_cut VALUES ('written during the cut')")
        .await
        .unwrap();
    let replica_uri = uri_at(&fleet, "cut-db", &replica_address);
    let replicated = eventually(Duration::from_secs(10), "the write on a replica", || {
        let (fleet, uri) = (&fleet, &replica_uri);
        async move {
            query_from_clients(fleet, uri, "SELECT note FROM during_cut")
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(replicated, "written during the cut");
    let view = fleet.client().database("cut-db", false).await.unwrap();
    assert!(view
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Replica)
        .all(|n| matches!(n.replication_status, Some(ReplicationStatus::Active))));
    assert_eq!(
        view.nodes
            .iter()
            .find(|n| n.role == NodeRole::Primary)
            .unwrap()
            .name,
        primary,
        "a cut from clients is no reason to fail over"
    );

    let healed = fleet.heal(Some(&primary_node.host)).unwrap();
    assert!(healed.contains("healed"), "{healed}");
    let reached = query_from_clients(&fleet, &primary_uri, "SELECT 'reached'").await;
    assert_eq!(reached.as_deref(), Ok("reached"));

    // A control plane that died and never came back: the kit still removes
    // the fleet's processes and network.
    fleet.kill_server();
    drop(fleet);
    assert_removed(&network);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_primary_is_failed_over_and_fences_itself_and_heal_makes_it_a_replica() {
    if unavailable("an_isolated_primary_is_failed_over…") {
        return;
    }
    let (fleet, old_primary) = ha_fleet("iso-db").await;
    let view = fleet.client().database("iso-db", false).await.unwrap();
    let old = view
        .nodes
        .iter()
        .find(|n| n.name == old_primary)
        .unwrap()
        .clone();
    let old_host_netns = fleet
        .network
        .as_ref()
        .unwrap()
        .host(&old.host)
        .unwrap()
        .netns
        .clone();
    let isolated_at = Instant::now();
    let done = fleet.isolate(&old.host).unwrap();
    assert!(done.contains("isolated"), "{done}");

    // DNS, asked from the clients' namespace, moves to another node.
    let dns = fleet.dns;
    let new_address = eventually(Duration::from_secs(30), "DNS to move", || {
        let (fleet, old_address) = (&fleet, old.address.clone());
        async move {
            let answer = fleet
                .in_clients(
                    move || async move { resolve(dns, "primary.iso-db.pgfleet.internal").await },
                )
                .await;
            answer
                .first()
                .map(|a| a.to_string())
                .filter(|a| *a != old_address)
        }
    })
    .await;
    eprintln!("DNS moved {:?} after the isolation", isolated_at.elapsed());
    let new_uri = uri_at(&fleet, "iso-db", &new_address);
    eventually(
        Duration::from_secs(20),
        "a write on the new primary",
        || {
            let (fleet, uri) = (&fleet, &new_uri);
            async move {
                execute_from_clients(
                    fleet,
                    uri,
                    "CREATE TABLE IF NOT EXISTS after_failover (note text)",
                )
                .await
                .ok()
            }
        },
    )
    .await;
    eprintln!(
        "a write acknowledged by the new primary {:?} after the isolation",
        isolated_at.elapsed()
    );

    // The isolated old primary, seen from inside its own host, stopped
    // accepting connections (and so writes): it fenced itself.
    let old_uri = uri_at(&fleet, "iso-db", &old.address);
    let tls = fleet.pg_tls();
    netns::spawn_in(&old_host_netns, move || async move {
        eventually(
            Duration::from_secs(20),
            "the old primary to fence itself",
            || {
                let (tls, uri) = (tls.clone(), old_uri.clone());
                async move {
                    query(tls, &uri, "SELECT 'accepting'")
                        .await
                        .err()
                        .filter(|e| e.contains("refused") || e.contains("connect"))
                }
            },
        )
        .await
    })
    .await
    .unwrap();
    let agent_log =
        std::fs::read_to_string(fleet.dir().join("hosts").join(&old.host).join("agent.log"))
            .unwrap();
    assert!(agent_log.contains("isolated primary: fencing itself"));

    // Healed, the old primary comes back as a streaming replica.
    fleet.heal(Some(&old.host)).unwrap();
    let primary = wait_ha_settled(&fleet, "iso-db", Duration::from_secs(60)).await;
    assert_ne!(primary, old_primary);
    let view = fleet.client().database("iso-db", false).await.unwrap();
    let rejoined = view.nodes.iter().find(|n| n.name == old_primary).unwrap();
    assert_eq!(rejoined.role, NodeRole::Replica);
    assert!(matches!(
        rejoined.replication_status,
        Some(ReplicationStatus::Active)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slowed_host_answers_its_clients_measurably_later() {
    if unavailable("a_slowed_host_answers_its_clients_measurably_later") {
        return;
    }
    if let Err(reason) = pgfleet::faults::netem_available() {
        eprintln!("SKIPPED a_slowed_host_answers_its_clients_measurably_later: {reason:#}");
        return;
    }
    let fleet = Fleet::up_netns(1);
    fleet.cli_ok(&["db", "create", "slow-db"]);
    let uri = uri_at(&fleet, "slow-db", &fleet.host_address(1));
    let tls = fleet.pg_tls();
    let round_trip = move || {
        let (tls, uri) = (tls.clone(), uri.clone());
        async move {
            let (client, connection) = tokio_postgres::connect(&uri, tls).await.unwrap();
            tokio::spawn(connection);
            let mut times = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                client.simple_query("SELECT 1").await.unwrap();
                times.push(start.elapsed());
            }
            times.sort();
            times[2]
        }
    };
    let before = fleet.in_clients(round_trip.clone()).await;
    let slowness = Slowness {
        delay_ms: 100,
        jitter_ms: 0,
        loss_percent: 0.0,
    };
    let done = fleet.slow("host-1", slowness).unwrap();
    assert!(done.contains("slowed"), "{done}");
    let during = fleet.in_clients(round_trip.clone()).await;
    fleet.heal(None).unwrap();
    let after = fleet.in_clients(round_trip).await;
    eprintln!("median SELECT 1: {before:?} before, {during:?} slowed, {after:?} healed");
    assert!(during >= before + Duration::from_millis(90), "{during:?}");
    assert!(after < Duration::from_millis(90), "{after:?}");
}

#[test]
fn fault_verbs_on_a_loopback_fleet_say_they_need_netns() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(Fleet::bin())
        .args(["host", "isolate", "host-1"])
        .env("PGFLEET_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`host isolate` needs a fleet started with `pgfleet up --netns`"),
        "{stderr}"
    );
}
