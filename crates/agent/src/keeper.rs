//! The keeper: for each data node of an HA database it reports the node's
//! state to the monitor and receives the assignment to apply. The last
//! accepted assignment is persisted (with its generation) so a restarted
//! agent never applies an older one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::runtime::AgentRuntime;
use pgfleet_ha::NodeState;

/// What a keeper tells the monitor (`POST /monitor/{db}/report`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeeperReport {
    pub node: String,
    /// The assignment state the node has reached.
    pub reported: String,
    pub generation_seen: u64,
    pub lsn: u64,
    pub timeline: u32,
    pub pg_running: bool,
    pub is_in_recovery: bool,
    pub wal_receiver_streaming: bool,
    /// How long ago the streaming receiver last heard from its upstream.
    #[serde(default)]
    pub upstream_silent_ms: Option<u64>,
    pub streaming_standbys: Vec<pgfleet_ha::StreamingStandby>,
    /// The assignment the keeper persisted (`assignment.json`), whichever
    /// monitor made it: a replacement monitor rebuilds its state from these.
    #[serde(default)]
    pub held: Option<Assignment>,
}

/// Whom a standby follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryRef {
    pub node: String,
    pub address: String,
    pub port: u16,
}

/// What the monitor wants the node to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The HA state, as the HA core names it (`snake_case` on the wire).
    pub state: NodeState,
    pub generation: u64,
    pub primary: Option<PrimaryRef>,
    pub sync_standbys: Vec<String>,
    pub sync_quorum: u32,
}

/// How the node must run, derived from an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Writable; `synchronous_standby_names` as given.
    Primary { sync_standby_names: String },
    /// Read-only primary for a switchover: no new writes.
    Draining,
    /// Streams from the given upstream.
    Standby { upstream: PrimaryRef },
    /// A standby that stopped replicating (failover: report the final LSN).
    Detached,
    /// PostgreSQL stopped (fenced or dropped).
    Stopped,
}

pub fn sync_names(names: &[String], quorum: u32) -> String {
    if names.is_empty() || quorum == 0 {
        return String::new();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "ANY {} ({})",
        quorum.min(names.len() as u32),
        quoted.join(", ")
    )
}

impl Assignment {
    pub fn mode(&self) -> Mode {
        // Every state is named: a new state in the HA core must be given
        // a mode here before the agent builds.
        match self.state {
            NodeState::Single
            | NodeState::WaitPrimary
            | NodeState::Primary
            | NodeState::Promote => Mode::Primary {
                sync_standby_names: sync_names(&self.sync_standbys, self.sync_quorum),
            },
            NodeState::Draining => Mode::Draining,
            NodeState::ReportLsn => Mode::Detached,
            NodeState::Demoted | NodeState::Dropped => Mode::Stopped,
            NodeState::WaitStandby
            | NodeState::Catchingup
            | NodeState::Secondary
            | NodeState::FastForward
            | NodeState::Maintenance => match &self.primary {
                Some(upstream) => Mode::Standby {
                    upstream: upstream.clone(),
                },
                None => Mode::Detached,
            },
        }
    }
}

/// The wire name of an HA state (`wait_primary`, `report_lsn`, …).
pub fn state_name(state: NodeState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub fn load(root: &Path) -> Option<Assignment> {
    let text = std::fs::read_to_string(root.join("assignment.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Persists the assignment the keeper is about to act on (synced, atomic).
/// On an error the keeper must not act on it: after a restart it would
/// otherwise fall back to an older generation than the one it applied.
pub fn persist(root: &Path, assignment: &Assignment) -> std::io::Result<()> {
    let text = serde_json::to_vec(assignment)?;
    pgfleet_tls::write_durable(&root.join("assignment.json"), &text)
}

/// How long a report waits for the monitor's answer.
pub const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// Sends the report; `None` when the monitor cannot be reached.
pub async fn report(
    runtime: &AgentRuntime,
    monitor: &pgfleet_core::protocol::MonitorEndpoint,
    db: &str,
    token: &str,
    report: &KeeperReport,
) -> Option<Assignment> {
    let url = format!(
        "https://{}:{}/monitor/{}/report",
        monitor.address, monitor.port, db
    );
    let response = runtime
        .peer_http()
        .post(&url)
        .bearer_auth(token)
        .timeout(REPORT_TIMEOUT)
        .json(report)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<Assignment>().await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_names_use_quorum_syntax() {
        assert_eq!(sync_names(&[], 1), "");
        assert_eq!(
            sync_names(&["a".into(), "b".into()], 1),
            "ANY 1 (\"a\", \"b\")"
        );
        assert_eq!(sync_names(&["a".into()], 2), "ANY 1 (\"a\")");
    }

    fn assignment(state: &str, generation: u64) -> Assignment {
        Assignment {
            state: serde_json::from_value(serde_json::Value::String(state.into())).unwrap(),
            generation,
            primary: None,
            sync_standbys: vec![],
            sync_quorum: 0,
        }
    }

    #[test]
    fn an_assignment_that_cannot_be_persisted_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        persist(dir.path(), &assignment("secondary", 4)).expect("persisted");
        assert_eq!(load(dir.path()), Some(assignment("secondary", 4)));

        // The folder is gone (disk unmounted, removed): the keeper is told.
        let gone = dir.path().join("gone");
        assert!(persist(&gone, &assignment("primary", 5)).is_err());

        // The file cannot be replaced: an error, not a silent success.
        let blocked = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(blocked.path().join("assignment.json/inside")).expect("folder");
        assert!(persist(blocked.path(), &assignment("primary", 5)).is_err());
    }
}
