//! The fleet's state as metric families, read afresh at every scrape from
//! the store (intent, events, tasks) and the agents' last reports: the same
//! database views `db show` prints (`views::database_view`), so the figures
//! agree with it.

use std::sync::atomic::AtomicU64;

use pgfleet_core::api::DatabaseView;
use pgfleet_core::{Desired, HaStatus, HostStatus, NodeRole, NodeStatus, TaskState};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{database_view, role_name, ViewContext};

type Labels = Vec<(&'static str, String)>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;
type Counters = Family<Labels, Counter>;

/// Families built for one scrape.
#[derive(Default)]
struct Families {
    node_up: Gauges,
    node_role: Gauges,
    node_ha_state: Gauges,
    node_lag_bytes: Gauges,
    node_lag_seconds: Gauges,
    node_synchronous: Gauges,
    db_ha_status: Gauges,
    db_degraded: Gauges,
    db_failovers: Counters,
    db_switchovers: Counters,
    db_last_failover_detected: Gauges,
    db_last_failover_promotion: Gauges,
    db_last_failover_dns: Gauges,
    db_last_failover_rto: Gauges,
    host_connected: Gauges,
    host_heartbeat_age: Gauges,
    host_certificate_expiry: Gauges,
    host_nodes: Gauges,
    tasks_unfinished: Gauges,
    dns_answers: Counters,
}

fn set(family: &Gauges, labels: Labels, value: f64) {
    family.get_or_create(&labels).set(value);
}

fn flag(value: bool) -> f64 {
    if value {
        1.0
    } else {
        0.0
    }
}

fn ha_status_name(status: HaStatus) -> &'static str {
    match status {
        HaStatus::Unconfigured => "unconfigured",
        HaStatus::Incomplete => "incomplete",
        HaStatus::Complete => "complete",
    }
}

fn millis(event: &Value, key: &str) -> Option<i64> {
    event.get(key)?.as_i64()
}

/// Failover and switchover counts and the last failover's times, from the
/// recorded primary changes (`tasks::failover_recorder`).
fn primary_changes(families: &Families, db: &str, events: &[Value]) {
    let mut failovers = 0u64;
    let mut switchovers = 0u64;
    let mut last_failover: Option<&Value> = None;
    for event in events {
        match event.get("kind").and_then(Value::as_str) {
            Some("failover") => {
                failovers += 1;
                let newer = last_failover
                    .is_none_or(|last| millis(event, "at_ms") >= millis(last, "at_ms"));
                if newer {
                    last_failover = Some(event);
                }
            }
            Some("switchover") => switchovers += 1,
            _ => {}
        }
    }
    let labels = || vec![("db", db.to_string())];
    families
        .db_failovers
        .get_or_create(&labels())
        .inc_by(failovers);
    families
        .db_switchovers
        .get_or_create(&labels())
        .inc_by(switchovers);
    let Some(event) = last_failover else { return };
    let detected = millis(event, "detected_at_ms");
    let promoted = millis(event, "promoted_at_ms");
    let dns = millis(event, "dns_switched_at_ms");
    let seconds = |from: i64, to: i64| (to - from) as f64 / 1000.0;
    if let Some(detected) = detected {
        set(
            &families.db_last_failover_detected,
            labels(),
            detected as f64 / 1000.0,
        );
    }
    if let (Some(detected), Some(promoted)) = (detected, promoted) {
        set(
            &families.db_last_failover_promotion,
            labels(),
            seconds(detected, promoted),
        );
    }
    if let (Some(promoted), Some(dns)) = (promoted, dns) {
        set(
            &families.db_last_failover_dns,
            labels(),
            seconds(promoted, dns),
        );
    }
    if let (Some(detected), Some(dns)) = (detected, dns) {
        set(
            &families.db_last_failover_rto,
            labels(),
            seconds(detected, dns),
        );
    }
}

/// Whether `replica` is in the primary's synchronous standby set, as the
/// primary reports it (`pg_stat_replication.sync_state`).
fn is_synchronous(state: &AppState, view: &DatabaseView, replica: &str) -> Option<bool> {
    let primary = view.nodes.iter().find(|n| n.role == NodeRole::Primary)?;
    let observed = state.observed.lock().expect("observed lock");
    let instance = observed.instance(&primary.host, &view.name, &primary.name)?;
    Some(instance.standbys.iter().any(|standby| {
        standby.application_name == replica
            && matches!(standby.sync_state.as_str(), "sync" | "quorum")
    }))
}

fn database(state: &AppState, families: &Families, view: &DatabaseView) {
    let db = || ("db", view.name.clone());
    for status in [
        HaStatus::Unconfigured,
        HaStatus::Incomplete,
        HaStatus::Complete,
    ] {
        set(
            &families.db_ha_status,
            vec![db(), ("status", ha_status_name(status).into())],
            flag(view.ha_status == status),
        );
    }
    if view.health.reasons.is_empty() {
        set(
            &families.db_degraded,
            vec![db(), ("reason", String::new())],
            0.0,
        );
    }
    for reason in &view.health.reasons {
        set(
            &families.db_degraded,
            vec![db(), ("reason", reason.clone())],
            1.0,
        );
    }
    for node in &view.nodes {
        let labels = || {
            vec![
                db(),
                ("node", node.name.clone()),
                ("host", node.host.clone()),
            ]
        };
        set(
            &families.node_up,
            labels(),
            flag(node.status == NodeStatus::Online),
        );
        let mut with_role = labels();
        with_role.push(("role", role_name(node.role).into()));
        set(&families.node_role, with_role, 1.0);
        if let Some(ha_state) = &node.ha_state {
            let mut with_state = labels();
            with_state.push(("state", ha_state.clone()));
            set(&families.node_ha_state, with_state, 1.0);
        }
        if node.role != NodeRole::Replica {
            continue;
        }
        if let Some(bytes) = node.lag_bytes {
            set(&families.node_lag_bytes, labels(), bytes as f64);
        }
        if let Some(seconds) = node.lag_seconds {
            set(&families.node_lag_seconds, labels(), seconds);
        }
        if let Some(synchronous) = is_synchronous(state, view, &node.name) {
            set(&families.node_synchronous, labels(), flag(synchronous));
        }
    }
}

fn hosts(
    state: &AppState,
    families: &Families,
    hosts: &[pgfleet_core::Host],
    placed: &[(String, usize)],
) {
    let now_ms = pgfleet_core::time::now_ms();
    let observed = state.observed.lock().expect("observed lock");
    for host in hosts {
        let labels = || vec![("host", host.name.clone())];
        let status = observed.host_status(&host.name, state.host_timeout());
        set(
            &families.host_connected,
            labels(),
            flag(status == HostStatus::Connected),
        );
        if let Some(seen) = observed.hosts.get(&host.name) {
            set(
                &families.host_heartbeat_age,
                labels(),
                (now_ms - seen.last_seen_ms).max(0) as f64 / 1000.0,
            );
        }
        if let Some(certificate) = state.identities.certificate(&host.name) {
            set(
                &families.host_certificate_expiry,
                labels(),
                certificate.expires_at_ms as f64 / 1000.0,
            );
        }
        let count = placed
            .iter()
            .find(|(name, _)| *name == host.name)
            .map_or(0, |(_, count)| *count);
        set(&families.host_nodes, labels(), count as f64);
    }
}

/// Registers every fleet family, filled from the state now.
pub async fn collect(state: &AppState, registry: &mut Registry) -> Result<(), ApiError> {
    let host_list = state.store.list_hosts().await?;
    let databases = state.store.list_databases().await?;
    let unfinished = state.store.unfinished_tasks().await?;
    let mut events = Vec::with_capacity(databases.len());
    for db in &databases {
        events.push(state.store.list_events(&db.name).await?);
    }
    let views: Vec<DatabaseView> = {
        let observed = state.observed.lock().expect("observed lock");
        let zone = state.zone.zone();
        let ctx = ViewContext {
            observed: &observed,
            hosts: &host_list,
            host_timeout: state.host_timeout(),
            zone: &zone,
            unfinished: &unfinished,
        };
        databases
            .iter()
            .map(|db| database_view(db, &ctx, false))
            .collect()
    };
    let families = Families::default();
    for (view, events) in views.iter().zip(&events) {
        database(state, &families, view);
        primary_changes(&families, &view.name, events);
    }
    let mut placed: Vec<(String, usize)> = Vec::new();
    for db in &databases {
        for node in db.nodes.iter().filter(|n| n.desired != Desired::Deleted) {
            match placed.iter_mut().find(|(name, _)| *name == node.host) {
                Some((_, count)) => *count += 1,
                None => placed.push((node.host.clone(), 1)),
            }
        }
    }
    hosts(state, &families, &host_list, &placed);
    for task_state in [TaskState::Queued, TaskState::Running] {
        let count = unfinished.iter().filter(|t| t.state == task_state).count();
        let name = if task_state == TaskState::Queued {
            "queued"
        } else {
            "running"
        };
        set(
            &families.tasks_unfinished,
            vec![("state", name.into())],
            count as f64,
        );
    }
    for (rcode, count) in state.zone.answer_counts() {
        families
            .dns_answers
            .get_or_create(&vec![("rcode", rcode.to_string())])
            .inc_by(count);
    }
    register(registry, families);
    Ok(())
}

fn register(registry: &mut Registry, f: Families) {
    let gauges: [(&str, &str, Gauges); 17] = [
        (
            "node_up",
            "1 when the node is online (as `db show` says), 0 otherwise",
            f.node_up,
        ),
        (
            "node_role",
            "The node's role (label role): always 1",
            f.node_role,
        ),
        (
            "node_ha_state",
            "The HA state the node's keeper reports (label state): always 1",
            f.node_ha_state,
        ),
        (
            "node_replication_lag_bytes",
            "Bytes of WAL the replica has not replayed yet",
            f.node_lag_bytes,
        ),
        (
            "node_replication_lag_seconds",
            "Replay lag of the replica in seconds",
            f.node_lag_seconds,
        ),
        (
            "node_synchronous",
            "1 when the replica is in the primary's synchronous standby set",
            f.node_synchronous,
        ),
        (
            "database_ha_status",
            "The database's HA status (label status): 1 for the current one",
            f.db_ha_status,
        ),
        (
            "database_degraded",
            "1 per reason the database is degraded; one series with reason=\"\" and 0 when healthy",
            f.db_degraded,
        ),
        (
            "database_last_failover_detected_timestamp_seconds",
            "When the monitor detected the last failover's failure (Unix time)",
            f.db_last_failover_detected,
        ),
        (
            "database_last_failover_promotion_seconds",
            "Last failover: detection to promotion",
            f.db_last_failover_promotion,
        ),
        (
            "database_last_failover_dns_seconds",
            "Last failover: promotion to DNS switched",
            f.db_last_failover_dns,
        ),
        (
            "database_last_failover_rto_seconds",
            "Last failover: detection to DNS switched",
            f.db_last_failover_rto,
        ),
        (
            "host_connected",
            "1 when the host's heartbeats arrive",
            f.host_connected,
        ),
        (
            "host_heartbeat_age_seconds",
            "Seconds since the host's last heartbeat",
            f.host_heartbeat_age,
        ),
        (
            "host_certificate_expiry_timestamp_seconds",
            "When the host's client certificate expires (Unix time)",
            f.host_certificate_expiry,
        ),
        (
            "host_nodes",
            "Nodes (data nodes and monitors) placed on the host",
            f.host_nodes,
        ),
        (
            "tasks_unfinished",
            "Tasks queued or running (label state)",
            f.tasks_unfinished,
        ),
    ];
    for (name, help, family) in gauges {
        registry.register(name, help, family);
    }
    registry.register(
        "database_failovers",
        "Failovers recorded for the database",
        f.db_failovers,
    );
    registry.register(
        "database_switchovers",
        "Switchovers recorded for the database",
        f.db_switchovers,
    );
    registry.register(
        "dns_answers",
        "DNS answers given since start, by response code",
        f.dns_answers,
    );
}
