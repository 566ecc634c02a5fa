//! Which actions the API accepts now, and why not: one decision made from the
//! same facts the database view shows (the stored database, the status the
//! view derives, the node views, the database's unfinished task and the
//! monitor's last health report). `views` puts it into every database view
//! (`actions` on the database and on each node); the API's handlers refuse
//! with [`refusal`] of that view, and the web UI renders it (a blocked action
//! is a disabled control with its reason, polled until it becomes possible).

use pgfleet_core::api::{ActionKind, ActionView, NodeView, ReplicationStatus};
use pgfleet_core::{Database, DbStatus, NodeRole, NodeStatus, Task, TaskKind};
use pgfleet_ha::{ClusterHealth, NodeState};

use crate::error::ApiError;
use crate::views::role_name;

/// How far behind its primary a switchover target may be (the monitor's
/// default `catchup_lag_bytes`; the view calls a replica further behind
/// *Catching up*).
pub const CATCHUP_LAG_BYTES: u64 = 16 * 1024 * 1024;

/// What the decision reads.
pub struct Facts<'a> {
    pub db: &'a Database,
    pub nodes: &'a [NodeView],
    /// The database's oldest unfinished task: it must finish before the API
    /// accepts another one.
    pub active_task: Option<&'a Task>,
    /// The monitor's last health report, when its host is connected.
    pub monitor: Option<&'a ClusterHealth>,
}

/// The status a database shows: the stored one, or while one of its tasks
/// is unfinished the change that task is making, or while its monitor runs
/// a failover or switchover `modifying` (the API accepts no other change
/// meanwhile, so the database is not shown `online`).
pub fn shown_status(
    db: &Database,
    active_task: Option<&Task>,
    monitor: Option<&ClusterHealth>,
) -> DbStatus {
    match (db.status, active_task) {
        (DbStatus::Online, Some(task)) => match task.kind {
            TaskKind::CreateDatabase => DbStatus::Creating,
            TaskKind::DeleteDatabase => DbStatus::Deleting,
            _ => DbStatus::Modifying,
        },
        (DbStatus::Online, None) if transition(monitor).is_some() => DbStatus::Modifying,
        (status, _) => status,
    }
}

/// The failover or switchover the monitor reports running, by name.
fn transition(monitor: Option<&ClusterHealth>) -> Option<&'static str> {
    let transition = monitor?.transition.as_ref()?;
    Some(match transition.kind {
        pgfleet_ha::TransitionKind::Failover => "failover",
        pgfleet_ha::TransitionKind::Switchover => "switchover",
    })
}

fn status_name(status: DbStatus) -> &'static str {
    match status {
        DbStatus::Creating => "creating",
        DbStatus::Online => "online",
        DbStatus::Modifying => "modifying",
        DbStatus::Failed => "failed",
        DbStatus::Deleting => "deleting",
    }
}

fn state_name(state: NodeState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{state:?}"))
}

/// The refusal while a task runs (the same words as the store's check).
fn busy(facts: &Facts) -> Option<String> {
    facts.active_task.map(|task| {
        format!(
            "task {} ({:?}) is still running on database {:?}",
            task.id, task.kind, facts.db.name
        )
    })
}

/// The database's own actions: `create_replica`, `delete_database`.
pub fn database_actions(facts: &Facts) -> Vec<ActionView> {
    vec![create_replica(facts), delete_database(facts)]
}

fn create_replica(facts: &Facts) -> ActionView {
    let kind = ActionKind::CreateReplica;
    let status = facts.db.status;
    if status != DbStatus::Online {
        let reason = format!(
            "database {:?} is {}, not online",
            facts.db.name,
            status_name(status)
        );
        let transient = matches!(status, DbStatus::Creating | DbStatus::Modifying);
        return ActionView::blocked(kind, reason, transient);
    }
    if let Some(reason) = busy(facts) {
        return ActionView::blocked(kind, reason, true);
    }
    if let Some(transition) = transition(facts.monitor) {
        let reason = format!(
            "a {transition} of database {:?} is in progress",
            facts.db.name
        );
        return ActionView::blocked(kind, reason, true);
    }
    ActionView::possible(kind)
}

fn delete_database(facts: &Facts) -> ActionView {
    match busy(facts) {
        Some(reason) => ActionView::blocked(ActionKind::DeleteDatabase, reason, true),
        None => ActionView::possible(ActionKind::DeleteDatabase),
    }
}

/// A data node's actions: `promote`, `delete_replica`, `maintenance_on`,
/// `maintenance_off` (none for the monitor).
pub fn node_actions(facts: &Facts, node: &NodeView) -> Vec<ActionView> {
    if node.role == NodeRole::Monitor {
        return vec![];
    }
    vec![
        promote(facts, node),
        delete_replica(facts, node),
        maintenance(facts, node, true),
        maintenance(facts, node, false),
    ]
}

/// Whether `node` is a replica the monitor would switch over to now, as far
/// as the view and the monitor's report show.
pub fn promote(facts: &Facts, node: &NodeView) -> ActionView {
    let kind = ActionKind::Promote;
    let db = &facts.db.name;
    let name = &node.name;
    if facts.db.monitor().is_none() {
        let reason = format!("database {db:?} has no monitor: create a replica first");
        return ActionView::blocked(kind, reason, false);
    }
    if node.role != NodeRole::Replica {
        let reason = format!(
            "node {name:?} is not a replica (it is the {})",
            role_name(node.role)
        );
        return ActionView::blocked(kind, reason, false);
    }
    if let Some(reason) = busy(facts) {
        return ActionView::blocked(kind, reason, true);
    }
    if node.maintenance {
        let reason = format!("node {name:?} is in maintenance: turn maintenance off first");
        return ActionView::blocked(kind, reason, false);
    }
    let replicating = node.replication_status.as_ref();
    let healthy = node.status == NodeStatus::Online
        && matches!(replicating, Some(ReplicationStatus::Active))
        && node.ha_state.as_deref() == Some("secondary");
    if !healthy {
        let reason = format!(
            "node {name:?} is not a healthy, caught-up replica (status {:?}, replication {:?}, ha state {:?})",
            node.status, node.replication_status, node.ha_state
        )
        .to_lowercase();
        let transient = matches!(node.status, NodeStatus::Online | NodeStatus::Modifying);
        return ActionView::blocked(kind, reason, transient);
    }
    match monitor_accepts(facts.monitor, name) {
        Some(reason) => ActionView::blocked(kind, reason, true),
        None => ActionView::possible(kind),
    }
}

/// Why the monitor would refuse a switchover to `target` now (its own
/// checks, `pgfleet_ha`'s `start_switchover`, on its last report).
fn monitor_accepts(health: Option<&ClusterHealth>, target: &str) -> Option<String> {
    let Some(health) = health else {
        return Some("waiting for the monitor's report".into());
    };
    if let Some(transition) = transition(Some(health)) {
        return Some(format!("a {transition} is in progress"));
    }
    let primary = health
        .primary
        .as_deref()
        .and_then(|p| health.nodes.iter().find(|n| n.name == p));
    let Some(primary) = primary else {
        return Some("the monitor has no primary".into());
    };
    if !primary.pg_reachable || !primary.assigned.is_writable() {
        return Some(format!("the primary {:?} is not healthy", primary.name));
    }
    let Some(node) = health.nodes.iter().find(|n| n.name == target) else {
        return Some(format!("the monitor does not watch node {target:?} yet"));
    };
    if node.assigned != NodeState::Secondary || !node.reached {
        return Some(format!(
            "node {target:?} is catching up (the monitor assigned {}, the node reported {})",
            state_name(node.assigned),
            node.reported
                .map(state_name)
                .unwrap_or_else(|| "nothing".into())
        ));
    }
    if !node.keeper_reachable || !node.pg_reachable {
        return Some(format!("node {target:?} is not reachable from the monitor"));
    }
    if node.lag_bytes.unwrap_or(0) > CATCHUP_LAG_BYTES {
        return Some(format!(
            "node {target:?} is catching up (not caught up yet)"
        ));
    }
    None
}

fn delete_replica(facts: &Facts, node: &NodeView) -> ActionView {
    let kind = ActionKind::DeleteReplica;
    if node.role != NodeRole::Replica {
        let reason = format!(
            "node {:?} is the {}, not a replica: promote another node first",
            node.name,
            role_name(node.role)
        );
        return ActionView::blocked(kind, reason, false);
    }
    match busy(facts) {
        Some(reason) => ActionView::blocked(kind, reason, true),
        None => ActionView::possible(kind),
    }
}

fn maintenance(facts: &Facts, node: &NodeView, on: bool) -> ActionView {
    let kind = if on {
        ActionKind::MaintenanceOn
    } else {
        ActionKind::MaintenanceOff
    };
    let db = &facts.db.name;
    let name = &node.name;
    if facts.db.monitor().is_none() {
        let reason = format!("database {db:?} has no monitor: maintenance applies to HA databases");
        return ActionView::blocked(kind, reason, false);
    }
    let is_primary = node.role == NodeRole::Primary;
    if on && is_primary && facts.db.replicas().count() == 0 {
        let reason = format!("node {name:?} is the only data node: nothing can take over");
        return ActionView::blocked(kind, reason, false);
    }
    if let Some(reason) = busy(facts) {
        return ActionView::blocked(kind, reason, true);
    }
    if on && is_primary && !facts.nodes.iter().any(can_take_over) {
        let reason = format!("node {name:?} is the primary and no healthy replica can take over");
        return ActionView::blocked(kind, reason, true);
    }
    ActionView::possible(kind)
}

/// A replica the maintenance task would switch over to.
fn can_take_over(node: &NodeView) -> bool {
    node.role == NodeRole::Replica
        && !node.maintenance
        && node.priority > 0
        && matches!(node.replication_status, Some(ReplicationStatus::Active))
        && node.ha_state.as_deref() == Some("secondary")
}

/// The API's refusal of `kind` among a view's `actions` (409 with the reason),
/// or `Ok` when the view says it is possible.
pub fn refusal(actions: &[ActionView], kind: ActionKind) -> Result<(), ApiError> {
    match pgfleet_core::api::find_action(actions, kind) {
        Some(ActionView {
            possible: false,
            blocked_because,
            ..
        }) => Err(ApiError::conflict(
            blocked_because
                .clone()
                .unwrap_or_else(|| format!("{kind:?} is not possible now")),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "actions_tests.rs"]
mod tests;
