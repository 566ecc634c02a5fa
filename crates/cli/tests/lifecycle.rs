//! The lifecycle around an HA database: planned switchover (Promote
//! Replica), its refusals, maintenance, scale down to unconfigured, and the
//! failover history; actions taken the moment the database's view says they
//! are possible are accepted and complete.

mod common;

use std::time::Duration;

use common::{eventually, resolve, wait_ha_settled, Fleet};
use pgfleet_core::api::{find_action, ActionKind, CreateReplicaRequest};
use pgfleet_core::{HaStatus, NodeRole, TaskState};

async fn wait_complete(fleet: &Fleet, db: &str) {
    wait_ha_settled(fleet, db, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_maintenance_scale_down_and_events() {
    let fleet = Fleet::up(4);
    let client = fleet.client();
    fleet.cli_ok(&["db", "create", "pg-dev-db-1"]);

    // No monitor yet: promote is refused and nothing changes.
    let refused = fleet.cli(&["replica", "promote", "pg-dev-db-1", "pg-dev-db-1"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("has no monitor"));

    fleet.cli_ok(&["replica", "create", "pg-dev-db-1", "--name", "pg-replica-1"]);
    fleet.cli_ok(&["replica", "create", "pg-dev-db-1", "--name", "pg-replica-2"]);
    wait_complete(&fleet, "pg-dev-db-1").await;

    let uri = fleet
        .cli_ok(&["db", "uri", "pg-dev-db-1"])
        .trim()
        .to_string();
    let primary_address = resolve(fleet.dns, "primary.pg-dev-db-1.pgfleet.internal").await[0];
    let db = fleet
        .connect(&uri.replace(
            "primary.pg-dev-db-1.pgfleet.internal",
            &primary_address.to_string(),
        ))
        .await;
    db.batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 500)")
        .await
        .unwrap();
    drop(db);

    // Refusals: the primary is not a replica; unknown node.
    let not_replica = fleet.cli(&["replica", "promote", "pg-dev-db-1", "pg-dev-db-1"]);
    assert!(String::from_utf8_lossy(&not_replica.stderr).contains("is not a replica"));
    let unknown = client.promote("pg-dev-db-1", "nope").await.unwrap_err();
    assert_eq!(unknown.status, Some(404));
    let delete_primary = fleet.cli(&["replica", "delete", "pg-dev-db-1", "pg-dev-db-1"]);
    assert!(String::from_utf8_lossy(&delete_primary.stderr).contains("promote another node first"));

    // Planned switchover to pg-replica-1: zero data loss, DNS follows, old primary follows.
    fleet.cli_ok(&["replica", "promote", "pg-dev-db-1", "pg-replica-1"]);
    let view = client.database("pg-dev-db-1", false).await.unwrap();
    let new_primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap();
    assert_eq!(new_primary.name, "pg-replica-1");
    let answer = resolve(fleet.dns, "primary.pg-dev-db-1.pgfleet.internal").await;
    assert_eq!(
        answer,
        vec![new_primary.address.parse::<std::net::Ipv4Addr>().unwrap()]
    );
    wait_complete(&fleet, "pg-dev-db-1").await;
    let db = fleet
        .connect(&uri.replace(
            "primary.pg-dev-db-1.pgfleet.internal",
            &answer[0].to_string(),
        ))
        .await;
    let count: i64 = db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 500);
    db.batch_execute("INSERT INTO t VALUES (501)")
        .await
        .expect("the new primary takes writes");
    drop(db);

    let events = client.events("pg-dev-db-1").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "switchover");
    assert_eq!(events[0]["old_primary"], "pg-dev-db-1");
    assert_eq!(events[0]["new_primary"], "pg-replica-1");
    assert!(
        events[0]["new_primary_lsn"].as_u64().unwrap()
            >= events[0]["old_primary_lsn"].as_u64().unwrap()
    );
    let events_cli = fleet.cli_ok(&["db", "events", "pg-dev-db-1", "--json"]);
    assert!(events_cli.contains("switchover"));

    // Maintenance on the primary switches over first.
    fleet.cli_ok(&["node", "maintenance", "pg-dev-db-1", "pg-replica-1", "on"]);
    let view = client.database("pg-dev-db-1", false).await.unwrap();
    let primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap();
    assert_ne!(primary.name, "pg-replica-1");
    assert!(
        view.nodes
            .iter()
            .find(|n| n.name == "pg-replica-1")
            .unwrap()
            .maintenance
    );
    fleet.cli_ok(&["node", "maintenance", "pg-dev-db-1", "pg-replica-1", "off"]);
    wait_complete(&fleet, "pg-dev-db-1").await;

    // Scale down: one replica → incomplete, the last one → unconfigured, monitor gone.
    let view = client.database("pg-dev-db-1", false).await.unwrap();
    let replicas: Vec<String> = view
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Replica)
        .map(|n| n.name.clone())
        .collect();
    fleet.cli_ok(&["replica", "delete", "pg-dev-db-1", &replicas[0]]);
    assert_eq!(
        client
            .database("pg-dev-db-1", false)
            .await
            .unwrap()
            .ha_status,
        HaStatus::Incomplete
    );
    fleet.cli_ok(&["replica", "delete", "pg-dev-db-1", &replicas[1]]);
    let view = client.database("pg-dev-db-1", false).await.unwrap();
    assert_eq!(view.ha_status, HaStatus::Unconfigured);
    assert_eq!(
        view.nodes.len(),
        1,
        "only the primary is left: {:?}",
        view.nodes.iter().map(|n| &n.name).collect::<Vec<_>>()
    );
    // Commits are not blocked by a leftover synchronous standby name.
    let address = view.nodes[0].address.clone();
    let db = fleet
        .connect(&uri.replace("primary.pg-dev-db-1.pgfleet.internal", &address))
        .await;
    tokio::time::timeout(
        Duration::from_secs(5),
        db.batch_execute("INSERT INTO t VALUES (502)"),
    )
    .await
    .expect("commit not blocked")
    .unwrap();
    let count: i64 = db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 502);
}

/// Waits for the task `id` and asserts it succeeded.
async fn assert_task_succeeds(client: &pgfleet::client::Client, id: i64, what: &str) {
    let task = client
        .wait_task(id, Duration::from_secs(240), |_| {})
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert_eq!(task.state, TaskState::Succeeded, "{what}: {:?}", task.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_taken_as_soon_as_the_view_allows_them_are_accepted_and_complete() {
    const DB: &str = "pg-eager";
    let fleet = Fleet::up(4);
    let client = fleet.client();
    let created = client
        .create_database(&pgfleet_core::api::CreateDatabaseRequest {
            name: DB.into(),
            admin_user: None,
            database: None,
            version: None,
            backup_policy: None,
            restore: None,
        })
        .await
        .unwrap();
    // A user clicks Create read replica the moment it is enabled.
    for replica in ["r1", "r2"] {
        eventually(
            Duration::from_secs(180),
            "create replica offered",
            || async {
                let view = client.database(DB, false).await.ok()?;
                let action = find_action(&view.actions, ActionKind::CreateReplica)?;
                action.possible.then_some(())
            },
        )
        .await;
        let request = CreateReplicaRequest {
            name: replica.into(),
            ..Default::default()
        };
        let task = client
            .create_replica(DB, &request)
            .await
            .unwrap_or_else(|error| panic!("the view offered {replica}, the API refused: {error}"));
        assert_task_succeeds(&client, task.task_id, replica).await;
    }
    assert_task_succeeds(&client, created.task_id, "create database").await;
    // ... and Promote Replica the moment the view offers it, again and again.
    for round in 1..=4 {
        let (target, old_primary) = eventually(
            Duration::from_secs(120),
            "a replica the view says can be promoted",
            || async {
                let view = client.database(DB, false).await.ok()?;
                let target = view.nodes.iter().find(|n| {
                    find_action(&n.actions, ActionKind::Promote).is_some_and(|a| a.possible)
                })?;
                Some((target.name.clone(), view.primary.clone()?))
            },
        )
        .await;
        let task = client.promote(DB, &target).await.unwrap_or_else(|error| {
            panic!("round {round}: the view offered {target}, the API refused: {error}")
        });
        assert_task_succeeds(
            &client,
            task.task_id,
            &format!("round {round}: promote {target}"),
        )
        .await;
        let view = client.database(DB, false).await.unwrap();
        assert_eq!(
            view.primary.as_deref(),
            Some(target.as_str()),
            "round {round}"
        );
        let old = view.nodes.iter().find(|n| n.name == old_primary).unwrap();
        assert_eq!(
            old.role,
            NodeRole::Replica,
            "round {round}: {old_primary} follows"
        );
    }
}
