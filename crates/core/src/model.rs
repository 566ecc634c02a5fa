//! The records the control plane stores: hosts, databases with their nodes,
//! and tasks. Stored records keep what the user asked for and what we decided
//! (intent); what agents last reported (observation) lives in the server's
//! memory and is merged into API views.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A machine that runs an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub failure_domain: String,
    /// Port of the agent's own HTTP endpoint (monitor and keeper traffic).
    pub agent_port: u16,
    pub registered_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Heartbeats arrive.
    Connected,
    /// No heartbeat for longer than the host timeout.
    Lost,
    /// The control plane restarted and has not heard from the host yet.
    Unknown,
    /// The host joined (it has a credential) but never sent a heartbeat;
    /// forgotten after `--joined-host-expiry-secs`.
    Joined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbStatus {
    Creating,
    Online,
    Modifying,
    Failed,
    Deleting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HaStatus {
    /// No replica.
    Unconfigured,
    /// Monitor and one replica.
    Incomplete,
    /// Monitor and at least two replicas.
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Primary,
    Replica,
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Online,
    Modifying,
    Offline,
    Failed,
}

/// What the control plane wants an instance to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    #[default]
    Running,
    Stopped,
    /// Stop the server and remove its data.
    Deleted,
}

/// One member of a database: a PostgreSQL server (primary or replica) or the
/// monitor. Stored intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub name: String,
    pub role: NodeRole,
    pub host: String,
    pub address: String,
    pub port: u16,
    #[serde(default)]
    pub desired: Desired,
    /// 0..=100; 0 means never promoted automatically.
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default)]
    pub maintenance: bool,
    /// Set once the node finished being created.
    #[serde(default)]
    pub ready: bool,
    /// Being removed: already out of the monitor's and the primary's view
    /// (sync set, slots) but still running until that is confirmed.
    #[serde(default)]
    pub removing: bool,
    pub created_at_ms: i64,
}

fn default_priority() -> u8 {
    50
}

/// A database: its settings, secrets and nodes (stored intent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    pub status: DbStatus,
    pub version: u32,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: String,
    pub replication_password: String,
    /// Secret keepers and the control plane present to this database's monitor.
    #[serde(default)]
    pub monitor_token: String,
    /// Password of the `pgfleet` superuser the agents and monitor use.
    #[serde(default)]
    pub superuser_password: String,
    /// Database the URI connects to (`postgres` unless `--database` was given).
    pub database_name: String,
    pub created_at_ms: i64,
    /// Bumped on every change of the record; DNS data and agent specs carry it.
    pub generation: u64,
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub error: Option<String>,
    /// Last monitor generation whose primary change was applied (fences
    /// stale pushes from the monitor).
    #[serde(default)]
    pub ha_generation: u64,
    /// Bumped each time the monitor is replaced (`ReplaceMonitor`); carried
    /// in `MonitorSpec::epoch`. Monitor generations of epoch `e` start at
    /// `e << 32`, above everything an older monitor handed out.
    #[serde(default)]
    pub monitor_epoch: u64,
    /// Backup policy, the backup asked for, the restore that makes it.
    #[serde(default, skip_serializing_if = "crate::backup::BackupIntent::is_empty")]
    pub backup: crate::backup::BackupIntent,
}

impl Database {
    pub fn primary(&self) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.role == NodeRole::Primary && n.desired != Desired::Deleted)
    }

    pub fn monitor(&self) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.role == NodeRole::Monitor && n.desired != Desired::Deleted)
    }

    pub fn replicas(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(|n| n.role == NodeRole::Replica && n.desired != Desired::Deleted && !n.removing)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// HA status from the nodes that exist and are ready.
    pub fn ha_status(&self) -> HaStatus {
        let replicas = self.replicas().filter(|n| n.ready).count();
        let has_monitor = self.monitor().is_some_and(|m| m.ready);
        match (has_monitor, replicas) {
            (true, r) if r >= 2 => HaStatus::Complete,
            (true, 1) => HaStatus::Incomplete,
            _ => HaStatus::Unconfigured,
        }
    }

    /// Whether every live node is on its own host.
    pub fn anti_affinity_holds(&self) -> bool {
        let mut hosts: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.desired != Desired::Deleted)
            .map(|n| n.host.as_str())
            .collect();
        let before = hosts.len();
        hosts.sort_unstable();
        hosts.dedup();
        hosts.len() == before
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum TaskKind {
    CreateDatabase,
    DeleteDatabase,
    CreateReplica,
    DeleteReplica,
    PromoteReplica,
    SetMaintenance,
    /// A new monitor on another host, after its host was lost for longer
    /// than `--monitor-replace-after-secs` (submitted by the control plane).
    ReplaceMonitor,
    /// A pgBackRest backup (on demand or scheduled).
    Backup,
    /// A new database made from another one's backups.
    RestoreDatabase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl TaskState {
    pub fn is_finished(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskStep {
    pub name: String,
    pub state: StepState,
}

/// A durable unit of work. Its steps are idempotent: after a control-plane
/// crash the task resumes at `current_step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: i64,
    pub kind: TaskKind,
    /// The database the task works on.
    pub target: String,
    pub state: TaskState,
    pub steps: Vec<TaskStep>,
    pub current_step: usize,
    /// 0..=100
    pub progress: u8,
    /// Kind-specific parameters (never secrets).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    /// Last human-readable progress message.
    pub message: Option<String>,
}
