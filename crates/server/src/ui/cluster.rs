//! The *Cluster Settings* tab: Cluster Information (HA status and what is
//! missing for `complete`, failover, monitor, anti-affinity), the nodes with
//! their status and replication (live), the latest task, and the *Database
//! Actions* per node. Each action is offered as the view's `actions` say
//! (`crate::actions`, the API's own check): a blocked one is disabled with
//! its reason, and the live part polls until it becomes possible. The
//! read-replica wizard and the node actions are in `node_actions`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use pgfleet_core::api::{find_action, ActionKind, ActionView, DatabaseView, NodeView};
use pgfleet_core::time::now_ms;
use pgfleet_core::{HaStatus, NodeRole, NodeStatus, Task, TaskKind};

use super::database::{head, load, respond, DbHead};
use super::render::{self, page, Badge, Layout, Viewer};
use super::tasks::{task_row, TaskRow};
use crate::api::tasks::TaskListQuery;
use crate::state::AppState;

/// An action as the page offers it: a control, or the reason it is disabled.
pub struct Control {
    pub possible: bool,
    /// Why the API refuses it now (empty when possible).
    pub reason: String,
    /// Waiting makes it possible (the page keeps polling).
    pub transient: bool,
}

impl Control {
    pub fn of(actions: &[ActionView], kind: ActionKind) -> Control {
        match find_action(actions, kind) {
            Some(action) => Control {
                possible: action.possible,
                reason: action
                    .blocked_because
                    .as_deref()
                    .map(render::sentence)
                    .unwrap_or_default(),
                transient: action.transient,
            },
            None => Control {
                possible: false,
                reason: String::new(),
                transient: false,
            },
        }
    }
}

pub struct NodeRow {
    pub name: String,
    pub role: Badge,
    pub host: String,
    pub failure_domain: String,
    pub status: Badge,
    pub replication: Option<Badge>,
    pub lag: String,
    pub maintenance: bool,
    pub fqdn: String,
    pub error: Option<String>,
    pub is_replica: bool,
    pub is_primary: bool,
    /// Whether the node has a *Database Actions* menu: replicas always, the
    /// primary once maintenance applies (with a monitor); never the monitor.
    pub has_actions: bool,
    pub can_maintain: bool,
    pub promote: Control,
    pub delete: Control,
    /// Maintenance on, or off when the node is in maintenance.
    pub maintain: Control,
}

pub struct ClusterInfo {
    pub ha: Badge,
    /// What the database lacks for HA status `complete`.
    pub missing: Vec<String>,
    pub failover: Badge,
    pub sync_mode: &'static str,
    pub monitor: Option<NodeRow>,
    pub anti_affinity_holds: bool,
    pub anti_affinity_rule: String,
    /// Failure domains that hold more than one node of the database.
    pub shared_domains: Vec<String>,
    pub reasons: Vec<String>,
}

fn role_rank(role: NodeRole) -> u8 {
    match role {
        NodeRole::Primary => 0,
        NodeRole::Replica => 1,
        NodeRole::Monitor => 2,
    }
}

fn node_row(node: &NodeView, has_monitor: bool) -> NodeRow {
    let lag = match (node.role, node.lag_bytes, node.lag_seconds) {
        (NodeRole::Replica, Some(bytes), Some(seconds)) => {
            format!("{} · {seconds:.1} s", render::bytes(bytes))
        }
        (NodeRole::Replica, Some(bytes), None) => render::bytes(bytes),
        _ => "—".into(),
    };
    let is_data_node = node.role != NodeRole::Monitor;
    NodeRow {
        name: node.name.clone(),
        role: render::role(node.role),
        host: node.host.clone(),
        failure_domain: node.failure_domain.clone().unwrap_or_else(|| "—".into()),
        status: render::node_status(node.status),
        replication: node.replication_status.as_ref().map(render::replication),
        lag,
        maintenance: node.maintenance,
        fqdn: node.fqdn.clone(),
        error: node.error.clone(),
        is_replica: node.role == NodeRole::Replica,
        is_primary: node.role == NodeRole::Primary,
        has_actions: node.role == NodeRole::Replica || (is_data_node && has_monitor),
        can_maintain: is_data_node && has_monitor,
        promote: Control::of(&node.actions, ActionKind::Promote),
        delete: Control::of(&node.actions, ActionKind::DeleteReplica),
        maintain: Control::of(
            &node.actions,
            if node.maintenance {
                ActionKind::MaintenanceOff
            } else {
                ActionKind::MaintenanceOn
            },
        ),
    }
}

fn missing_for_complete(view: &DatabaseView) -> Vec<String> {
    if view.ha_status == HaStatus::Complete {
        return vec![];
    }
    let has_monitor = view.nodes.iter().any(|n| n.role == NodeRole::Monitor);
    let replicas = view
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Replica)
        .count();
    let mut missing = Vec::new();
    if !has_monitor {
        missing.push("a monitor (created with the first read replica)".to_string());
    }
    match replicas {
        0 => missing.push("two read replicas".into()),
        1 => missing.push("one more read replica".into()),
        _ => {}
    }
    if missing.is_empty() {
        missing.push("the new nodes to finish being created".into());
    }
    missing
}

pub fn shared_domains(view: &DatabaseView) -> Vec<String> {
    let mut domains: Vec<(String, Vec<String>)> = Vec::new();
    for node in &view.nodes {
        let Some(domain) = &node.failure_domain else {
            continue;
        };
        match domains.iter_mut().find(|(d, _)| d == domain) {
            Some((_, names)) => names.push(node.name.clone()),
            None => domains.push((domain.clone(), vec![node.name.clone()])),
        }
    }
    let mut shared = Vec::new();
    for (domain, names) in domains {
        if names.len() > 1 {
            shared.push(format!("{domain}: {}", names.join(", ")));
        }
    }
    shared
}

/// Nodes an unfinished task is changing: the node a task names, and for a
/// promotion also the primary it replaces. They show as `Modifying`.
fn nodes_in_change(view: &DatabaseView, tasks: &[Task]) -> Vec<String> {
    let mut changing = Vec::new();
    for task in tasks {
        if task.target != view.name || task.state.is_finished() {
            continue;
        }
        let params = crate::tasks::params::TaskParams::of(task).ok();
        if let Some(node) = params.as_ref().and_then(|p| p.node()) {
            changing.push(node.to_string());
        }
        if task.kind == TaskKind::PromoteReplica {
            let primary = view.nodes.iter().find(|n| n.role == NodeRole::Primary);
            changing.extend(primary.map(|p| p.name.clone()));
        }
    }
    changing
}

pub fn cluster_info(view: &DatabaseView, tasks: &[Task]) -> (ClusterInfo, Vec<NodeRow>) {
    let has_monitor = view.nodes.iter().any(|n| n.role == NodeRole::Monitor);
    let changing = nodes_in_change(view, tasks);
    let mut ordered: Vec<&NodeView> = view.nodes.iter().collect();
    ordered.sort_by(|a, b| (role_rank(a.role), &a.name).cmp(&(role_rank(b.role), &b.name)));
    let mut rows = Vec::with_capacity(ordered.len());
    for node in ordered {
        let mut row = node_row(node, has_monitor);
        if node.status == NodeStatus::Online && changing.contains(&node.name) {
            row.status = render::node_status(NodeStatus::Modifying);
        }
        rows.push(row);
    }
    let monitor = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Monitor)
        .map(|n| node_row(n, has_monitor));
    let failover = match (has_monitor, view.health.failover_paused) {
        (false, _) => Badge {
            text: "Not configured",
            tone: "muted",
        },
        (true, true) => Badge {
            text: "Paused",
            tone: "warn",
        },
        (true, false) => Badge {
            text: "Automatic",
            tone: "ok",
        },
    };
    let sync_mode = match view.health.sync_mode.as_str() {
        "sync" => "Synchronous",
        "async_fallback" => "Asynchronous (no healthy synchronous replica)",
        _ => "None (standalone)",
    };
    let info = ClusterInfo {
        ha: render::ha_status(view.ha_status),
        missing: missing_for_complete(view),
        failover,
        sync_mode,
        monitor,
        anti_affinity_holds: view.anti_affinity.holds,
        anti_affinity_rule: view.anti_affinity.rule.clone(),
        shared_domains: shared_domains(view),
        reasons: view.health.reasons.clone(),
    };
    (info, rows)
}

#[derive(Template)]
#[template(path = "db_cluster.html", blocks = ["head", "live"])]
struct ClusterTab {
    layout: Layout,
    head: DbHead,
    info: ClusterInfo,
    nodes: Vec<NodeRow>,
    latest_task: Option<TaskRow>,
    create_replica: Control,
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    viewer: Viewer,
) -> Response {
    let view = match load(&state, &name).await {
        Ok(view) => view,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let query = TaskListQuery {
        target: Some(name),
        limit: Some(200),
    };
    let tasks = match crate::api::tasks::list(State(state.clone()), Query(query)).await {
        Ok(Json(tasks)) => tasks,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let latest_task = tasks.first().map(|task| task_row(task, now_ms()));
    let (info, nodes) = cluster_info(&view, &tasks);
    let tab = ClusterTab {
        layout: viewer.layout("databases"),
        head: head(&view, "cluster"),
        info,
        nodes,
        latest_task,
        create_replica: Control::of(&view.actions, ActionKind::CreateReplica),
    };
    respond!(viewer, tab, {})
}
