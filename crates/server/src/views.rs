//! API views: stored intent merged with the latest observations, the
//! database's unfinished task and its monitor's report; each view says which
//! actions the API accepts now (`actions`).

use pgfleet_core::api::{AntiAffinityView, DatabaseView, HealthView, NodeView, ReplicationStatus};
use pgfleet_core::protocol::InstancePhase;
use pgfleet_core::{Database, DbStatus, Desired, Host, HostStatus, NodeRole, NodeStatus, Task};

use crate::actions::{self, Facts};
use crate::observed::Observed;

pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Primary => "primary",
        NodeRole::Replica => "replica",
        NodeRole::Monitor => "monitor",
    }
}

pub struct ViewContext<'a> {
    pub observed: &'a Observed,
    pub hosts: &'a [Host],
    pub host_timeout: std::time::Duration,
    pub zone: &'a str,
    /// Unfinished tasks (of any database); a database with one shows the
    /// change it makes and accepts no other action until it finished.
    pub unfinished: &'a [Task],
}

/// HA states in which a keeper is still joining or rejoining its primary:
/// its replica shows *Catching up* even when its WAL receiver streams.
const CATCHING_UP_STATES: &[&str] = &["catchingup", "wait_standby"];

/// Whether the monitor's last report has `node` still joining: assigned a
/// joining state, or `secondary` not yet reached.
fn joining_per_monitor(monitor: Option<&pgfleet_ha::ClusterHealth>, node: &str) -> bool {
    use pgfleet_ha::NodeState;
    let Some(health) = monitor.and_then(|m| m.nodes.iter().find(|n| n.name == node)) else {
        return false;
    };
    match health.assigned {
        NodeState::Catchingup | NodeState::WaitStandby => true,
        NodeState::Secondary => !health.reached,
        _ => false,
    }
}

fn node_view(
    db: &Database,
    node: &pgfleet_core::Node,
    ctx: &ViewContext,
    monitor: Option<&pgfleet_ha::ClusterHealth>,
) -> NodeView {
    let host_status = ctx.observed.host_status(&node.host, ctx.host_timeout);
    let failure_domain = ctx
        .hosts
        .iter()
        .find(|h| h.name == node.host)
        .map(|h| h.failure_domain.clone());
    let mut view = NodeView {
        name: node.name.clone(),
        role: node.role,
        host: node.host.clone(),
        address: node.address.clone(),
        port: node.port,
        status: NodeStatus::Offline,
        failure_domain,
        fqdn: format!("{}.{}.{}", node.name, db.name, ctx.zone),
        priority: node.priority,
        maintenance: node.maintenance,
        replication_status: None,
        lag_bytes: None,
        lag_seconds: None,
        ha_state: None,
        error: None,
        actions: vec![],
    };
    if host_status != HostStatus::Connected {
        if node.role == NodeRole::Replica {
            view.replication_status = Some(ReplicationStatus::Stopped);
        }
        return view;
    }
    if node.role == NodeRole::Monitor {
        let running = ctx
            .observed
            .monitor(&node.host, &db.name)
            .is_some_and(|m| m.running);
        view.status = match (running, node.ready) {
            (true, _) => NodeStatus::Online,
            (false, false) => NodeStatus::Modifying,
            (false, true) => NodeStatus::Offline,
        };
        return view;
    }
    let Some(instance) = ctx.observed.instance(&node.host, &db.name, &node.name) else {
        view.status = if node.ready {
            NodeStatus::Offline
        } else {
            NodeStatus::Modifying
        };
        return view;
    };
    view.error = instance.error.clone();
    view.ha_state = instance.ha_state.clone();
    view.status = match instance.phase {
        InstancePhase::Running => NodeStatus::Online,
        InstancePhase::Creating => NodeStatus::Modifying,
        InstancePhase::Failed => NodeStatus::Failed,
        InstancePhase::Stopped | InstancePhase::Deleted => NodeStatus::Offline,
    };
    if node.desired == Desired::Deleted
        || matches!(db.status, DbStatus::Modifying | DbStatus::Creating)
            && view.status == NodeStatus::Online
            && !node.ready
    {
        view.status = NodeStatus::Modifying;
    }
    let transitional = matches!(
        instance.ha_state.as_deref(),
        Some("report_lsn" | "promote" | "fast_forward" | "draining" | "demoted")
    );
    if transitional && view.status == NodeStatus::Online {
        view.status = NodeStatus::Modifying;
    }
    if node.role == NodeRole::Replica {
        view.lag_bytes = instance.lag_bytes;
        view.lag_seconds = instance.lag_seconds;
        let joining = instance
            .ha_state
            .as_deref()
            .is_some_and(|s| CATCHING_UP_STATES.contains(&s))
            || joining_per_monitor(monitor, &node.name);
        view.replication_status = Some(match (instance.phase, instance.wal_receiver_streaming) {
            (InstancePhase::Running, Some(true))
                if instance.lag_bytes.unwrap_or(0) < actions::CATCHUP_LAG_BYTES && !joining =>
            {
                ReplicationStatus::Active
            }
            (InstancePhase::Running, Some(true)) | (InstancePhase::Creating, _) => {
                ReplicationStatus::CatchingUp
            }
            _ => ReplicationStatus::Stopped,
        });
    }
    view
}

/// The monitor's last health report, when its host is connected.
fn monitor_health(db: &Database, ctx: &ViewContext) -> Option<pgfleet_ha::ClusterHealth> {
    let monitor = db.monitor()?;
    if ctx.observed.host_status(&monitor.host, ctx.host_timeout) != HostStatus::Connected {
        return None;
    }
    let observed = ctx.observed.monitor(&monitor.host, &db.name)?;
    if !observed.running {
        return None;
    }
    serde_json::from_value(observed.state.get("health")?.clone()).ok()
}

pub fn database_view(db: &Database, ctx: &ViewContext, show_password: bool) -> DatabaseView {
    let monitor = monitor_health(db, ctx);
    // A replaced monitor is no member any more: its record only waits for
    // its host to confirm the removal (or for the host to be removed).
    let mut nodes: Vec<NodeView> = db
        .nodes
        .iter()
        .filter(|n| !(n.role == NodeRole::Monitor && n.desired == Desired::Deleted))
        .map(|n| node_view(db, n, ctx, monitor.as_ref()))
        .collect();
    let active_task = ctx
        .unfinished
        .iter()
        .filter(|t| t.target == db.name && !t.state.is_finished())
        .min_by_key(|t| t.id);
    let status = actions::shown_status(db, active_task, monitor.as_ref());
    let facts = Facts {
        db,
        nodes: &nodes,
        active_task,
        monitor: monitor.as_ref(),
    };
    let database_actions = actions::database_actions(&facts);
    let node_actions: Vec<_> = nodes
        .iter()
        .map(|n| actions::node_actions(&facts, n))
        .collect();
    for (node, node_actions) in nodes.iter_mut().zip(node_actions) {
        node.actions = node_actions;
    }
    let mut reasons = Vec::new();
    for node in &nodes {
        if node.status == NodeStatus::Offline || node.status == NodeStatus::Failed {
            reasons.push(format!("node {} is {:?}", node.name, node.status).to_lowercase());
        }
        if node
            .replication_status
            .as_ref()
            .is_some_and(|r| matches!(r, ReplicationStatus::Stopped))
        {
            reasons.push(format!("replica {} is not replicating", node.name));
        }
    }
    reasons.extend(crate::backup::health_reasons(db, ctx));
    let anti_affinity_holds = db.anti_affinity_holds();
    if !anti_affinity_holds {
        reasons.push("anti-affinity violated: two nodes share a host".into());
    }
    let primary = db.primary();
    let mut sync_mode = "none".to_string();
    let mut failover_paused = false;
    if let Some(monitor_node) = db.monitor() {
        let monitor_obs = ctx.observed.monitor(&monitor_node.host, &db.name);
        let monitor_up = ctx
            .observed
            .host_status(&monitor_node.host, ctx.host_timeout)
            == HostStatus::Connected
            && monitor_obs.is_some_and(|m| m.running);
        if !monitor_up && monitor_node.ready {
            failover_paused = true;
            reasons.push(
                "monitor is unreachable: automatic failover is paused until it is replaced".into(),
            );
        }
        if let Some(error) = db
            .error
            .as_deref()
            .filter(|e| e.starts_with(crate::tasks::replace_monitor::FAILED_PREFIX))
        {
            reasons.push(error.to_string());
        }
        if let Some(p) = primary {
            if let Some(inst) = ctx.observed.instance(&p.host, &db.name, &p.name) {
                match inst.sync_standby_names.as_deref() {
                    Some(names) if !names.is_empty() => sync_mode = "sync".into(),
                    Some(_) if db.replicas().count() > 0 => {
                        sync_mode = "async_fallback".into();
                        reasons.push(
                            "primary runs asynchronously: no healthy synchronous replica".into(),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    DatabaseView {
        name: db.name.clone(),
        status,
        ha_status: db.ha_status(),
        health: HealthView {
            degraded: !reasons.is_empty(),
            reasons,
            sync_mode,
            failover_paused,
        },
        fqdn: format!("{}.{}", db.name, ctx.zone),
        primary_fqdn: format!("primary.{}.{}", db.name, ctx.zone),
        primary: primary.map(|p| p.name.clone()),
        version: db.version,
        port: db.port,
        admin_user: db.admin_user.clone(),
        database_name: db.database_name.clone(),
        admin_password: show_password.then(|| db.admin_password.clone()),
        created_at_ms: db.created_at_ms,
        generation: db.generation,
        anti_affinity: AntiAffinityView {
            rule: "every node of the database on its own host; different failure domains preferred"
                .into(),
            holds: anti_affinity_holds,
        },
        nodes,
        dns_servers: Vec::new(),
        error: db.error.clone(),
        actions: database_actions,
        backup_policy: db.backup.policy.clone(),
    }
}
