//! The view's status and the API's preconditions agree in the states that
//! confused users: a database still being created, and HA `complete` while a
//! replica is not yet a `secondary` the monitor would switch over to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgfleet_core::api::{find_action, ActionKind, DatabaseView, NodeView, ReplicationStatus};
use pgfleet_core::protocol::{InstanceObserved, InstancePhase, MonitorObserved};
use pgfleet_core::{
    Database, DbStatus, Desired, HaStatus, Node, NodeRole, NodeStatus, StepState, Task, TaskKind,
    TaskState, TaskStep,
};
use pgfleet_ha::{ClusterHealth, NodeHealth, NodeState, SyncMode};

use crate::observed::{HostObservation, Observed};
use crate::views::{database_view, ViewContext};

fn node(name: &str, role: NodeRole, ready: bool) -> Node {
    Node {
        name: name.into(),
        role,
        host: format!("host-{name}"),
        address: "127.0.0.1".into(),
        port: 5432,
        desired: Desired::Running,
        priority: 50,
        maintenance: false,
        ready,
        removing: false,
        created_at_ms: 0,
    }
}

fn database(status: DbStatus, nodes: Vec<Node>) -> Database {
    Database {
        status,
        admin_password: "x".into(),
        replication_password: "x".into(),
        superuser_password: "x".into(),
        monitor_token: "x".into(),
        created_at_ms: 0,
        nodes,
        ..Database::fixture("d")
    }
}

fn task(id: i64, kind: TaskKind, state: TaskState) -> Task {
    Task {
        id,
        kind,
        target: "d".into(),
        state,
        steps: vec![TaskStep {
            name: "step".into(),
            state: StepState::Running,
        }],
        current_step: 0,
        progress: 50,
        params: serde_json::json!({}),
        created_at_ms: 0,
        started_at_ms: Some(0),
        finished_at_ms: None,
        error: None,
        message: None,
    }
}

/// A running instance as its agent reports it; replicas stream, caught up.
fn running(name: &str, primary: bool, ha_state: Option<&str>) -> InstanceObserved {
    InstanceObserved {
        db: "d".into(),
        node: name.into(),
        phase: InstancePhase::Running,
        error: None,
        is_primary: Some(primary),
        lsn: Some(1000),
        timeline: Some(1),
        wal_receiver_streaming: (!primary).then_some(true),
        lag_bytes: (!primary).then_some(0),
        lag_seconds: None,
        standbys: vec![],
        sync_standby_names: primary.then(|| "ANY 1 (r1, r2)".into()),
        ha_state: ha_state.map(str::to_string),
        generation: 1,
        backup: None,
        next_xid: None,
    }
}

fn node_health(name: &str, assigned: NodeState, reported: NodeState) -> NodeHealth {
    NodeHealth {
        name: name.into(),
        assigned,
        generation: 3,
        reported: Some(reported),
        reached: assigned == reported,
        keeper_reachable: true,
        pg_reachable: true,
        in_sync_set: true,
        priority: 50,
        maintenance: false,
        lsn: 1000,
        timeline: 1,
        lag_bytes: Some(0),
        last_report_age_ms: Some(50),
    }
}

fn health(nodes: Vec<NodeHealth>) -> ClusterHealth {
    ClusterHealth {
        primary: Some("d".into()),
        writable_nodes: vec!["d".into()],
        sync_mode: SyncMode::Sync,
        sync_standbys: vec!["r1".into(), "r2".into()],
        sync_quorum: 1,
        failover_in_progress: false,
        transition: None,
        degraded: false,
        degraded_reasons: vec![],
        nodes,
    }
}

/// What the agents of `db`'s hosts reported just now.
fn observed(
    db: &Database,
    instances: Vec<InstanceObserved>,
    monitor: Option<ClusterHealth>,
) -> Observed {
    let mut observed = Observed::default();
    for node in &db.nodes {
        let mut host = HostObservation {
            last_seen: Instant::now(),
            last_seen_ms: 0,
            pg_version: 16,
            dns_port: 0,
            instances: HashMap::new(),
            monitors: HashMap::new(),
        };
        if let Some(instance) = instances.iter().find(|i| i.node == node.name) {
            host.instances.insert(
                pgfleet_core::protocol::instance_key(&instance.db, &node.name),
                instance.clone(),
            );
        }
        if node.role == NodeRole::Monitor {
            let state = match &monitor {
                Some(health) => serde_json::json!({ "health": health }),
                None => serde_json::json!({}),
            };
            let report = MonitorObserved {
                db: db.name.clone(),
                node: node.name.clone(),
                running: true,
                primary: Some("d".into()),
                primary_generation: 1,
                state,
                last_change: None,
            };
            host.monitors.insert(db.name.clone(), report);
        }
        observed.hosts.insert(node.host.clone(), host);
    }
    observed
}

fn view(db: &Database, observed: &Observed, unfinished: &[Task]) -> DatabaseView {
    let ctx = ViewContext {
        observed,
        hosts: &[],
        host_timeout: Duration::from_secs(60),
        zone: "pgfleet.internal",
        unfinished,
    };
    database_view(db, &ctx, false)
}

fn possible(actions: &[pgfleet_core::api::ActionView], kind: ActionKind) -> bool {
    find_action(actions, kind).expect("action listed").possible
}

fn reason(actions: &[pgfleet_core::api::ActionView], kind: ActionKind) -> String {
    let action = find_action(actions, kind).expect("action listed");
    assert!(action.transient, "{kind:?} is blocked only for now");
    action.blocked_because.clone().expect("a reason")
}

fn node_view<'a>(view: &'a DatabaseView, name: &str) -> &'a NodeView {
    view.nodes.iter().find(|n| n.name == name).expect("node")
}

/// What a user sees agrees with what the API accepts: a database shown
/// online accepts a read replica, a replica shown active and online (HA
/// complete) can be promoted.
fn assert_shown_matches_accepted(view: &DatabaseView) {
    assert_eq!(
        view.status == DbStatus::Online,
        possible(&view.actions, ActionKind::CreateReplica),
        "status {:?} vs create replica {:?}",
        view.status,
        find_action(&view.actions, ActionKind::CreateReplica)
    );
    for node in view.nodes.iter().filter(|n| n.role == NodeRole::Replica) {
        if possible(&node.actions, ActionKind::Promote) {
            assert_eq!(node.status, NodeStatus::Online, "{}", node.name);
            assert!(
                matches!(node.replication_status, Some(ReplicationStatus::Active)),
                "{} promotable but not shown active",
                node.name
            );
        }
    }
}

#[test]
fn a_database_being_created_is_shown_creating_while_replicas_are_refused() {
    let primary = || vec![running("d", true, None)];
    // The primary runs, the create task has not marked the database online.
    let db = database(
        DbStatus::Creating,
        vec![node("d", NodeRole::Primary, false)],
    );
    let creating = task(1, TaskKind::CreateDatabase, TaskState::Running);
    let shown = view(
        &db,
        &observed(&db, primary(), None),
        std::slice::from_ref(&creating),
    );
    assert_eq!(shown.status, DbStatus::Creating);
    assert_eq!(node_view(&shown, "d").status, NodeStatus::Modifying);
    assert_eq!(
        reason(&shown.actions, ActionKind::CreateReplica),
        "database \"d\" is creating, not online"
    );
    assert_shown_matches_accepted(&shown);

    // Marked online, but the task has not finished: still Creating, the
    // API would refuse with the task's name.
    let db = database(DbStatus::Online, vec![node("d", NodeRole::Primary, true)]);
    let shown = view(
        &db,
        &observed(&db, primary(), None),
        std::slice::from_ref(&creating),
    );
    assert_eq!(shown.status, DbStatus::Creating);
    assert_eq!(
        reason(&shown.actions, ActionKind::CreateReplica),
        "task 1 (CreateDatabase) is still running on database \"d\""
    );
    assert_shown_matches_accepted(&shown);

    // The task finished: Online, and a replica is accepted.
    let shown = view(&db, &observed(&db, primary(), None), &[]);
    assert_eq!(shown.status, DbStatus::Online);
    assert_eq!(node_view(&shown, "d").status, NodeStatus::Online);
    assert!(possible(&shown.actions, ActionKind::CreateReplica));
    assert_shown_matches_accepted(&shown);
}

fn ha_database() -> Database {
    database(
        DbStatus::Online,
        vec![
            node("d", NodeRole::Primary, true),
            node("r1", NodeRole::Replica, true),
            node("r2", NodeRole::Replica, true),
            node("d-monitor", NodeRole::Monitor, true),
        ],
    )
}

#[test]
fn ha_complete_with_a_replica_not_yet_secondary_shows_it_catching_up_and_refuses_its_promotion() {
    use NodeState::{Primary, Secondary};
    let db = ha_database();
    assert_eq!(db.ha_status(), HaStatus::Complete);
    let instances = vec![
        running("d", true, Some("primary")),
        running("r1", false, Some("catchingup")),
        running("r2", false, Some("secondary")),
    ];
    let monitor = health(vec![
        node_health("d", Primary, Primary),
        node_health("r1", Secondary, NodeState::Catchingup),
        node_health("r2", Secondary, Secondary),
    ]);
    let shown = view(&db, &observed(&db, instances, Some(monitor)), &[]);
    assert_eq!(shown.ha_status, HaStatus::Complete);
    let r1 = node_view(&shown, "r1");
    assert!(matches!(
        r1.replication_status,
        Some(ReplicationStatus::CatchingUp)
    ));
    assert!(reason(&r1.actions, ActionKind::Promote).contains("not a healthy, caught-up replica"));
    let r2 = node_view(&shown, "r2");
    assert!(matches!(
        r2.replication_status,
        Some(ReplicationStatus::Active)
    ));
    assert!(possible(&r2.actions, ActionKind::Promote));
    assert_shown_matches_accepted(&shown);
}

#[test]
fn a_replica_the_monitor_does_not_count_as_secondary_yet_is_not_promotable() {
    use NodeState::{Primary, Secondary};
    let db = ha_database();
    let instances = || {
        vec![
            running("d", true, Some("primary")),
            running("r1", false, Some("secondary")),
            running("r2", false, Some("secondary")),
        ]
    };
    // The keeper follows `secondary`, but the monitor has not seen it report
    // so at the current generation: it would refuse the switchover.
    let mut behind = node_health("r1", Secondary, Secondary);
    behind.reached = false;
    let monitor = health(vec![
        node_health("d", Primary, Primary),
        behind,
        node_health("r2", Secondary, Secondary),
    ]);
    let shown = view(&db, &observed(&db, instances(), Some(monitor.clone())), &[]);
    let r1 = node_view(&shown, "r1");
    assert!(matches!(
        r1.replication_status,
        Some(ReplicationStatus::CatchingUp)
    ));
    assert!(reason(&r1.actions, ActionKind::Promote).contains("not a healthy, caught-up replica"));
    assert_shown_matches_accepted(&shown);
    assert!(possible(
        &node_view(&shown, "r2").actions,
        ActionKind::Promote
    ));

    // No monitor report yet: wait for it.
    let shown = view(&db, &observed(&db, instances(), None), &[]);
    let r2 = node_view(&shown, "r2");
    assert!(reason(&r2.actions, ActionKind::Promote).contains("monitor's report"));

    // A promotion running: Modifying, nothing else accepted until it ends.
    let promoting = task(7, TaskKind::PromoteReplica, TaskState::Running);
    let shown = view(
        &db,
        &observed(&db, instances(), Some(monitor)),
        &[promoting],
    );
    assert_eq!(shown.status, DbStatus::Modifying);
    let r2 = node_view(&shown, "r2");
    assert_eq!(
        reason(&r2.actions, ActionKind::Promote),
        "task 7 (PromoteReplica) is still running on database \"d\""
    );
    assert_shown_matches_accepted(&shown);

    // A switchover the monitor runs: Modifying, no replica created meanwhile.
    let mut switching = health(vec![
        node_health("d", NodeState::Draining, NodeState::Draining),
        node_health("r1", Secondary, Secondary),
        node_health("r2", Secondary, Secondary),
    ]);
    switching.transition = Some(pgfleet_ha::TransitionStatus {
        kind: pgfleet_ha::TransitionKind::Switchover,
        old_primary: "d".into(),
        target: Some("r2".into()),
        phase: "draining".into(),
        candidate: Some("r2".into()),
        started_ms: 0,
        waiting_on: vec![],
        blocked: None,
    });
    let shown = view(&db, &observed(&db, instances(), Some(switching)), &[]);
    assert_eq!(shown.status, DbStatus::Modifying);
    assert!(reason(&shown.actions, ActionKind::CreateReplica).contains("switchover"));
    assert_shown_matches_accepted(&shown);

    // The API refuses with the view's reason.
    let refused = crate::actions::refusal(&r2.actions, ActionKind::Promote).unwrap_err();
    assert_eq!(refused.status, axum::http::StatusCode::CONFLICT);
    assert!(refused.message.contains("task 7"));
}
