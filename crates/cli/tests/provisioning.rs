//! New databases are copies of the host's initdb template, each with a
//! cluster identity of its own and its own superuser password.

mod common;

use std::path::Path;

use common::Fleet;

fn pg_controldata(data: &Path) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL installed")
        .flatten()
        .map(|e| e.path().join("bin/pg_controldata"))
        .find(|p| p.exists())
        .expect("pg_controldata");
    let output = std::process::Command::new(bin)
        .arg(data)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn system_identifier(data: &Path) -> String {
    pg_controldata(data)
        .lines()
        .find_map(|l| l.strip_prefix("Database system identifier:"))
        .expect("identifier line")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn databases_on_one_host_are_template_copies_with_identities_of_their_own() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "tpl-a"]);
    fleet.cli_ok(&["db", "create", "tpl-b"]);
    let client = fleet.client();
    let host_dir = fleet.dir().join("hosts/host-1");
    let mut identifiers = Vec::new();
    for db in ["tpl-a", "tpl-b"] {
        let view = client.database(db, false).await.unwrap();
        let node = &view.nodes[0];
        let data = host_dir
            .join("pg")
            .join(format!("{db}.{}", node.name))
            .join("data");
        identifiers.push(system_identifier(&data));
        // The admin role works and writes: the copy is a whole server.
        let uri = fleet
            .cli_ok(&["db", "uri", db, "--resolved"])
            .trim()
            .to_string();
        let pg = fleet.connect(&uri).await;
        pg.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
    }
    let template = std::fs::read_dir(host_dir.join("templates"))
        .expect("a template folder on the host")
        .flatten()
        .next()
        .expect("one template")
        .path();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&template).unwrap().permissions().mode() & 0o777,
        0o700,
        "the template is private"
    );
    let template_identifier = system_identifier(&template.join("data"));
    assert_ne!(
        identifiers[0], identifiers[1],
        "two databases, one identity"
    );
    assert!(
        !identifiers.contains(&template_identifier),
        "a database kept the template's identity"
    );
}

/// `replica create --count 2` makes a standalone database HA Complete in one
/// task: the monitor and two replicas named `pg-replica-1` and
/// `pg-replica-2`, each on a host of its own, both streaming and
/// synchronous candidates. A name together with a count is refused and
/// changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_at_once_make_the_database_complete() {
    use pgfleet_core::api::ReplicationStatus;
    use pgfleet_core::{HaStatus, NodeRole};
    let fleet = Fleet::up(4);
    fleet.cli_ok(&["db", "create", "cnt-db"]);
    let refused = fleet.cli(&[
        "replica", "create", "cnt-db", "--name", "r9", "--count", "2",
    ]);
    assert!(!refused.status.success(), "a name names one replica");
    let output = fleet.cli_ok(&["replica", "create", "cnt-db", "--count", "2"]);
    assert!(
        output.contains("replicas pg-replica-1, pg-replica-2 of cnt-db are streaming"),
        "{output}"
    );
    common::wait_ha_settled(&fleet, "cnt-db", std::time::Duration::from_secs(30)).await;
    let view = fleet.client().database("cnt-db", false).await.unwrap();
    assert_eq!(view.ha_status, HaStatus::Complete, "{view:?}");
    let replicas: Vec<_> = view
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Replica)
        .collect();
    assert_eq!(replicas.len(), 2);
    for replica in &replicas {
        assert!(
            matches!(replica.replication_status, Some(ReplicationStatus::Active)),
            "{replica:?}"
        );
    }
    let mut hosts: Vec<&str> = view.nodes.iter().map(|n| n.host.as_str()).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 4, "primary, two replicas and monitor apart");
    let tasks = fleet.cli_ok(&["task", "list"]);
    assert_eq!(
        tasks.matches("CreateReplica").count(),
        1,
        "one task: {tasks}"
    );
}

/// Replica names repeat across databases (every database's first replica is
/// `pg-replica-1`). Two HA databases on the same four hosts, both alive, must
/// each get their own servers, folders and HA state; and a database deleted
/// and made again under its name starts from nothing. (An agent keyed its
/// servers by node name alone: the second database's replicas took the
/// first one's actor, its assignment generations were ignored as old, and
/// it never became Complete; two such live databases shared a data folder.)
#[tokio::test(flavor = "multi_thread")]
async fn databases_with_the_same_replica_names_on_the_same_hosts_stay_apart() {
    use pgfleet_core::HaStatus;
    let fleet = Fleet::up(4);
    for db in ["twin-a", "twin-b"] {
        fleet.cli_ok(&["db", "create", db]);
        fleet.cli_ok(&["replica", "create", db, "--count", "2"]);
        common::wait_ha_settled(&fleet, db, std::time::Duration::from_secs(60)).await;
    }
    let client = fleet.client();
    let mut dirs = std::collections::HashSet::new();
    for db in ["twin-a", "twin-b"] {
        let view = client.database(db, false).await.unwrap();
        assert_eq!(view.ha_status, HaStatus::Complete, "{view:?}");
        for node in view.nodes.iter().filter(|n| n.port != 0) {
            let dir = fleet
                .dir()
                .join("hosts")
                .join(&node.host)
                .join("pg")
                .join(format!("{db}.{}", node.name));
            assert!(dir.join("data").exists(), "{}", dir.display());
            assert!(dirs.insert(dir), "two nodes share a folder");
        }
        // Writes go to this database and only to it.
        let uri = fleet.cli_ok(&["db", "uri", db, "--resolved"]);
        let (sql, conn) = tokio_postgres::connect(uri.trim(), fleet.pg_tls())
            .await
            .unwrap();
        tokio::spawn(conn);
        sql.batch_execute(&format!("CREATE TABLE only_in_{} ()", db.replace('-', "_")))
            .await
            .unwrap();
    }
    // Made again under the same name: a new incarnation, HA Complete again.
    fleet.cli_ok(&["db", "delete", "twin-a"]);
    fleet.cli_ok(&["db", "create", "twin-a"]);
    fleet.cli_ok(&["replica", "create", "twin-a", "--count", "2"]);
    common::wait_ha_settled(&fleet, "twin-a", std::time::Duration::from_secs(60)).await;
    let view = client.database("twin-b", false).await.unwrap();
    assert_eq!(
        view.ha_status,
        HaStatus::Complete,
        "the twin is untouched: {view:?}"
    );
}
