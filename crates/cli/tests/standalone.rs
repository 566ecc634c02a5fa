//! The foundation story: a fleet comes up, a database is created, reached
//! through pgfleet's DNS, survives a fleet restart, and is deleted.

mod common;

use std::time::Duration;

use common::{eventually, resolve, Fleet};
use pgfleet_core::{DbStatus, NodeStatus};

#[tokio::test(flavor = "multi_thread")]
async fn database_lifecycle_through_dns_and_fleet_restart() {
    let mut fleet = Fleet::up(2);
    let out = fleet.cli_ok(&["db", "create", "pg-dev-db-1"]);
    assert!(
        out.contains("primary.pg-dev-db-1.pgfleet.internal"),
        "{out}"
    );

    let view = fleet.client().database("pg-dev-db-1", false).await.unwrap();
    assert_eq!(view.status, DbStatus::Online);
    assert_eq!(view.primary_fqdn, "primary.pg-dev-db-1.pgfleet.internal");
    assert!(view.admin_password.is_none());
    let primary = &view.nodes[0];
    assert_eq!(primary.status, NodeStatus::Online);

    let answer = resolve(fleet.dns, "primary.pg-dev-db-1.pgfleet.internal").await;
    assert_eq!(
        answer,
        vec![primary.address.parse::<std::net::Ipv4Addr>().unwrap()]
    );

    let uri = fleet
        .cli_ok(&["db", "uri", "pg-dev-db-1"])
        .trim()
        .to_string();
    assert!(
        uri.contains("@primary.pg-dev-db-1.pgfleet.internal:"),
        "{uri}"
    );
    // TLS with a certificate from the fleet CA: verify-full against the DNS name.
    let verified = std::process::Command::new("psql")
        .arg(format!(
            "{uri}?sslmode=verify-full&sslrootcert={}&hostaddr={}",
            fleet.dir().join("ca.crt").display(),
            answer[0]
        ))
        .args([
            "-Atc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .output()
        .expect("psql runs");
    assert!(
        verified.status.success(),
        "verify-full: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "t");
    let resolved_uri = uri.replace(
        "primary.pg-dev-db-1.pgfleet.internal",
        &answer[0].to_string(),
    );
    let db = fleet.connect(&resolved_uri).await;
    db.batch_execute(
        "CREATE TABLE notes (id int primary key, body text); INSERT INTO notes VALUES (1, 'kept')",
    )
    .await
    .unwrap();
    drop(db);

    assert_eq!(fleet.stop(), Some(0), "pgfleet up exits 0 on SIGTERM");
    fleet.start();
    let client = fleet.client();
    eventually(
        Duration::from_secs(60),
        "the database to be online again",
        || async {
            let view = client.database("pg-dev-db-1", false).await.ok()?;
            (view.nodes[0].status == NodeStatus::Online).then_some(())
        },
    )
    .await;
    let db = fleet
        .connect(
            fleet
                .cli_ok(&["db", "uri", "pg-dev-db-1", "--resolved"])
                .trim(),
        )
        .await;
    let row = db
        .query_one("SELECT body FROM notes WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "kept");
    drop(db);

    fleet.cli_ok(&["db", "delete", "pg-dev-db-1"]);
    let missing = fleet
        .client()
        .database("pg-dev-db-1", false)
        .await
        .unwrap_err();
    assert_eq!(missing.status, Some(404));
    assert!(resolve(fleet.dns, "primary.pg-dev-db-1.pgfleet.internal")
        .await
        .is_empty());
    assert!(
        !fleet
            .dir()
            .join("hosts")
            .join(&primary.host)
            .join("pg")
            .join("pg-dev-db-1.pg-dev-db-1")
            .exists(),
        "data removed"
    );
    // The name is free again.
    fleet.cli_ok(&["db", "create", "pg-dev-db-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors() {
    let fleet = Fleet::up(1);
    let bad = fleet.cli(&["db", "create", "Bad_Name"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("DNS labels"), "{stderr}");
    // A version no host runs is refused before anything is made.
    let version = fleet.cli(&["db", "create", "db-v", "--version", "42"]);
    let stderr = String::from_utf8_lossy(&version.stderr);
    assert!(
        stderr.contains("no connected host runs PostgreSQL 42"),
        "{stderr}"
    );
    assert!(fleet.client().database("db-v", false).await.is_err());

    fleet.cli_ok(&["db", "create", "db-one"]);
    let duplicate = fleet
        .client()
        .create_database(&pgfleet_core::api::CreateDatabaseRequest {
            name: "db-one".into(),
            version: None,
            admin_user: None,
            database: None,
            backup_policy: None,
            restore: None,
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.status, Some(409));
    let unknown = fleet.client().database("nope", false).await.unwrap_err();
    assert_eq!(unknown.status, Some(404));
    let unauthorized = pgfleet::client::Client::with_ca(&fleet.api, "wrong", fleet.ca().as_deref())
        .list_databases()
        .await
        .unwrap_err();
    assert_eq!(unauthorized.status, Some(401));
    let no_task = fleet.client().task(999_999).await.unwrap_err();
    assert_eq!(no_task.status, Some(404));

    // One host, already used: a replica has nowhere to go and nothing changes.
    let refused = fleet.cli(&["replica", "create", "db-one", "--name", "r1"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("anti-affinity: no host without a node of db-one"));
    let view = fleet.client().database("db-one", false).await.unwrap();
    assert_eq!(view.nodes.len(), 1);
    assert_eq!(view.status, DbStatus::Online);
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_host_shows_offline_and_recovers() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "db-k"]);
    fleet.cli_ok(&["host", "kill", "host-1"]);
    let client = fleet.client();
    eventually(
        Duration::from_secs(20),
        "the node to be offline",
        || async {
            let view = client.database("db-k", false).await.ok()?;
            (view.nodes[0].status == NodeStatus::Offline && view.health.degraded).then_some(())
        },
    )
    .await;
    fleet.cli_ok(&["host", "start", "host-1"]);
    eventually(
        Duration::from_secs(60),
        "the node to be online again",
        || async {
            let view = client.database("db-k", false).await.ok()?;
            (view.nodes[0].status == NodeStatus::Online).then_some(())
        },
    )
    .await;
    let db = fleet
        .connect(fleet.cli_ok(&["db", "uri", "db-k", "--resolved"]).trim())
        .await;
    db.query_one("SELECT 1", &[]).await.unwrap();
}
