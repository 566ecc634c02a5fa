//! Each task kind's parameters, typed, in one place. A task stores them as
//! its `params` JSON object in the same shape as before they were typed, so
//! tasks stored by older versions still load (`TaskParams::of`).

use pgfleet_core::{Task, TaskKind};
use serde::{Deserialize, Serialize};

/// `CreateDatabase`: the major version chosen at creation (informative; the
/// database record holds it too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateDatabase {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// `DeleteDatabase`: nothing beyond the target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteDatabase {}

fn default_priority() -> u8 {
    50
}

/// `CreateReplica`: the new node's name and failover priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateReplica {
    pub node: String,
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Further replicas created beside `node` by the same task (a request
    /// with a `count`), each on a host of its own, cloned in parallel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<String>,
}

/// `DeleteReplica`: the replica to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteReplica {
    pub node: String,
}

/// `PromoteReplica`: either a user's switchover (`node`, the target; the
/// task stores `old_primary` once it started), or the record of a primary
/// change the monitor pushed (`new_primary`, `old_primary`, `reason`,
/// `generation`; see `failover_recorder`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromoteReplica {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_primary: Option<String>,
    /// `switchover` or `failover`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// `SetMaintenance`: the node and whether maintenance goes on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMaintenance {
    pub node: String,
    #[serde(default)]
    pub on: bool,
}

/// `ReplaceMonitor`: the monitor being replaced, why, and (once placed)
/// the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceMonitor {
    pub old_node: String,
    pub old_host: String,
    /// Why it is replaced, e.g. "host host-4 lost for 12s".
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_host: Option<String>,
}

/// `Backup`: pgBackRest's backup type (`full`, `diff`, `incr`); whether the
/// schedule asked for it. The task stores the node it chose once it did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Backup {
    pub kind: String,
    #[serde(default)]
    pub scheduled: bool,
    /// The node whose agent runs it, once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Whether it copies from that standby (`--backup-standby`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_standby: Option<bool>,
    /// The backup's label, once taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `RestoreDatabase`: the database whose backups are restored and the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreDatabase {
    pub source: String,
    pub target: pgfleet_core::backup::RestoreTarget,
}

/// A task's parameters; the variant is the task's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskParams {
    CreateDatabase(CreateDatabase),
    DeleteDatabase(DeleteDatabase),
    CreateReplica(CreateReplica),
    DeleteReplica(DeleteReplica),
    PromoteReplica(PromoteReplica),
    SetMaintenance(SetMaintenance),
    ReplaceMonitor(ReplaceMonitor),
    Backup(Backup),
    RestoreDatabase(RestoreDatabase),
}

/// Why a stored task's parameters do not fit its kind.
#[derive(Debug, thiserror::Error)]
#[error("task {id} ({kind:?}) has parameters that do not fit its kind")]
pub struct BadParams {
    pub id: i64,
    pub kind: TaskKind,
    #[source]
    pub source: serde_json::Error,
}

impl TaskParams {
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskParams::CreateDatabase(_) => TaskKind::CreateDatabase,
            TaskParams::DeleteDatabase(_) => TaskKind::DeleteDatabase,
            TaskParams::CreateReplica(_) => TaskKind::CreateReplica,
            TaskParams::DeleteReplica(_) => TaskKind::DeleteReplica,
            TaskParams::PromoteReplica(_) => TaskKind::PromoteReplica,
            TaskParams::SetMaintenance(_) => TaskKind::SetMaintenance,
            TaskParams::ReplaceMonitor(_) => TaskKind::ReplaceMonitor,
            TaskParams::Backup(_) => TaskKind::Backup,
            TaskParams::RestoreDatabase(_) => TaskKind::RestoreDatabase,
        }
    }

    /// The JSON object stored as the task's `params`.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            TaskParams::CreateDatabase(p) => serde_json::to_value(p),
            TaskParams::DeleteDatabase(p) => serde_json::to_value(p),
            TaskParams::CreateReplica(p) => serde_json::to_value(p),
            TaskParams::DeleteReplica(p) => serde_json::to_value(p),
            TaskParams::PromoteReplica(p) => serde_json::to_value(p),
            TaskParams::SetMaintenance(p) => serde_json::to_value(p),
            TaskParams::ReplaceMonitor(p) => serde_json::to_value(p),
            TaskParams::Backup(p) => serde_json::to_value(p),
            TaskParams::RestoreDatabase(p) => serde_json::to_value(p),
        };
        value.expect("task parameters serialize")
    }

    /// The parameters of a stored task, read by its kind.
    pub fn of(task: &Task) -> Result<TaskParams, BadParams> {
        let params = task.params.clone();
        let parsed = match task.kind {
            TaskKind::CreateDatabase => serde_json::from_value(params).map(Self::CreateDatabase),
            TaskKind::DeleteDatabase => serde_json::from_value(params).map(Self::DeleteDatabase),
            TaskKind::CreateReplica => serde_json::from_value(params).map(Self::CreateReplica),
            TaskKind::DeleteReplica => serde_json::from_value(params).map(Self::DeleteReplica),
            TaskKind::PromoteReplica => serde_json::from_value(params).map(Self::PromoteReplica),
            TaskKind::SetMaintenance => serde_json::from_value(params).map(Self::SetMaintenance),
            TaskKind::ReplaceMonitor => serde_json::from_value(params).map(Self::ReplaceMonitor),
            TaskKind::Backup => serde_json::from_value(params).map(Self::Backup),
            TaskKind::RestoreDatabase => serde_json::from_value(params).map(Self::RestoreDatabase),
        };
        parsed.map_err(|source| BadParams {
            id: task.id,
            kind: task.kind,
            source,
        })
    }

    /// The node the task changes, if it names one (a switchover's target, a
    /// recorded change's new primary).
    pub fn node(&self) -> Option<&str> {
        match self {
            TaskParams::CreateReplica(p) => Some(&p.node),
            TaskParams::DeleteReplica(p) => Some(&p.node),
            TaskParams::SetMaintenance(p) => Some(&p.node),
            TaskParams::PromoteReplica(p) => p.node.as_deref().or(p.new_primary.as_deref()),
            TaskParams::ReplaceMonitor(p) => Some(&p.old_node),
            TaskParams::CreateDatabase(_)
            | TaskParams::DeleteDatabase(_)
            | TaskParams::Backup(_)
            | TaskParams::RestoreDatabase(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(kind: TaskKind, params: serde_json::Value) -> Task {
        let mut task =
            crate::tasks::queued_task(&TaskParams::DeleteDatabase(DeleteDatabase {}), "d");
        task.id = 3;
        task.kind = kind;
        task.params = params;
        task
    }

    /// Parameters as versions before the typed ones stored them.
    #[test]
    fn tasks_stored_by_older_versions_load_and_keep_their_shape() {
        let older = [
            (TaskKind::CreateDatabase, serde_json::json!({"version": 16})),
            (TaskKind::DeleteDatabase, serde_json::json!({})),
            (
                TaskKind::CreateReplica,
                serde_json::json!({"node": "r1", "priority": 70}),
            ),
            (TaskKind::DeleteReplica, serde_json::json!({"node": "r1"})),
            (
                TaskKind::PromoteReplica,
                serde_json::json!({"node": "r1", "reason": "switchover", "old_primary": "d"}),
            ),
            (
                TaskKind::PromoteReplica,
                serde_json::json!({"old_primary": "d", "new_primary": "r2", "reason": "failover", "generation": 7}),
            ),
            (
                TaskKind::SetMaintenance,
                serde_json::json!({"node": "r1", "on": true}),
            ),
        ];
        for (kind, json) in older {
            let params = TaskParams::of(&stored(kind, json.clone())).expect("loads");
            assert_eq!(params.kind(), kind);
            assert_eq!(params.to_json(), json, "same shape for {kind:?}");
        }
        let priority = TaskParams::of(&stored(
            TaskKind::CreateReplica,
            serde_json::json!({"node": "r1"}),
        ))
        .unwrap();
        assert_eq!(
            priority,
            TaskParams::CreateReplica(CreateReplica {
                node: "r1".into(),
                priority: 50,
                more: vec![],
            })
        );
        let failover = TaskParams::of(&stored(
            TaskKind::PromoteReplica,
            serde_json::json!({"old_primary": null, "new_primary": "r2", "reason": "failover", "generation": 2}),
        ))
        .unwrap();
        assert_eq!(failover.node(), Some("r2"));
    }

    #[test]
    fn parameters_that_do_not_fit_the_kind_are_refused_with_the_task_named() {
        let error =
            TaskParams::of(&stored(TaskKind::DeleteReplica, serde_json::json!({}))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "task 3 (DeleteReplica) has parameters that do not fit its kind"
        );
        assert!(std::error::Error::source(&error)
            .unwrap()
            .to_string()
            .contains("node"));
    }
}
