//! Request and response bodies of the REST API (`/api/v1`), shared by the
//! server and the CLI's typed client.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{DbStatus, HaStatus, HostStatus, NodeRole, NodeStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatabaseRequest {
    pub name: String,
    /// PostgreSQL major version (default: the version the hosts run).
    #[serde(default)]
    pub version: Option<u32>,
    /// Admin role name (default `pgadmin`).
    #[serde(default)]
    pub admin_user: Option<String>,
    /// Database owned by the admin role (default: connect to `postgres`).
    #[serde(default)]
    pub database: Option<String>,
    /// Continuous archiving and scheduled backups (pgBackRest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_policy: Option<crate::backup::BackupPolicyRequest>,
    /// Make the database from another one's backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<crate::backup::RestoreRequest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReplicaRequest {
    /// The new replica's name. Left out (or empty), the replicas get the next
    /// free names `pg-replica-1`, `pg-replica-2`, …; it must be left out with
    /// a `count` above 1.
    #[serde(default)]
    pub name: String,
    /// Failover candidate priority 0..=100 (0 = never promoted automatically).
    #[serde(default)]
    pub priority: Option<u8>,
    /// How many replicas to add at once, 1..=8 (default 1): placed on
    /// distinct hosts and cloned in parallel by one task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u8>,
}

/// Most replicas one request adds.
pub const MAX_REPLICAS_AT_ONCE: u8 = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    pub on: bool,
}

/// Answer of every mutating call: the task that carries the change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskRef {
    pub task_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostView {
    pub name: String,
    pub address: String,
    pub failure_domain: String,
    pub status: HostStatus,
    pub last_heartbeat_ms: Option<i64>,
    pub pg_version: Option<u32>,
    /// `db/node` of every instance placed on the host.
    pub instances: Vec<String>,
    /// When the host's current certificate expires (its agent renews it
    /// when a third of its lifetime is left); none before it has one.
    #[serde(default)]
    pub certificate_expires_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationStatus {
    Active,
    CatchingUp,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub name: String,
    pub role: NodeRole,
    pub host: String,
    pub address: String,
    pub port: u16,
    pub status: NodeStatus,
    pub failure_domain: Option<String>,
    pub fqdn: String,
    pub priority: u8,
    pub maintenance: bool,
    /// Replicas only.
    pub replication_status: Option<ReplicationStatus>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// HA state the keeper follows (when a monitor exists).
    pub ha_state: Option<String>,
    pub error: Option<String>,
    /// What the API accepts for this node now (`promote`, `delete_replica`,
    /// `maintenance_on`, `maintenance_off`), and why not.
    #[serde(default)]
    pub actions: Vec<ActionView>,
}

/// An action on a database or one of its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    CreateReplica,
    DeleteDatabase,
    Promote,
    DeleteReplica,
    MaintenanceOn,
    MaintenanceOff,
}

/// Whether the API accepts an action now. The API refuses exactly the
/// actions shown as not possible, with `blocked_because` as its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionView {
    pub action: ActionKind,
    pub possible: bool,
    /// Why the API refuses it now (none when possible).
    pub blocked_because: Option<String>,
    /// The refusal is temporary (a task runs, a node is still creating or
    /// catching up): waiting makes the action possible.
    pub transient: bool,
}

impl ActionView {
    pub fn possible(action: ActionKind) -> ActionView {
        ActionView {
            action,
            possible: true,
            blocked_because: None,
            transient: false,
        }
    }

    pub fn blocked(action: ActionKind, reason: impl Into<String>, transient: bool) -> ActionView {
        ActionView {
            action,
            possible: false,
            blocked_because: Some(reason.into()),
            transient,
        }
    }
}

/// The action `kind` among `actions`.
pub fn find_action(actions: &[ActionView], kind: ActionKind) -> Option<&ActionView> {
    actions.iter().find(|a| a.action == kind)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AntiAffinityView {
    pub rule: String,
    pub holds: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    pub degraded: bool,
    pub reasons: Vec<String>,
    /// `sync`, `async_fallback` or `none` (standalone).
    pub sync_mode: String,
    pub failover_paused: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseView {
    pub name: String,
    pub status: DbStatus,
    pub ha_status: HaStatus,
    pub health: HealthView,
    pub fqdn: String,
    pub primary_fqdn: String,
    pub primary: Option<String>,
    pub version: u32,
    pub port: u16,
    pub admin_user: String,
    pub database_name: String,
    /// Only with `?show_password=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    pub created_at_ms: i64,
    pub generation: u64,
    pub anti_affinity: AntiAffinityView,
    pub nodes: Vec<NodeView>,
    pub error: Option<String>,
    /// What the API accepts for the database now (`create_replica`,
    /// `delete_database`), and why not. Node actions are on each node.
    #[serde(default)]
    pub actions: Vec<ActionView>,
    /// DNS servers (`ip:port`) a client's resolver should use for the
    /// database's names: the control plane first, then every connected
    /// host's agent (each answers for the zone, also while the control
    /// plane is down).
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// The backup policy, when the database has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_policy: Option<crate::backup::BackupPolicy>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UriView {
    pub uri: String,
    /// DNS servers (`ip:port`) that answer for the database's names: the
    /// control plane first, then every connected host's agent.
    #[serde(default)]
    pub dns_servers: Vec<String>,
}
