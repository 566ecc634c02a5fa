//! The persisted data: node states, assignments, per-node observations and the
//! cluster record (`ClusterState`) that the driver stores as JSON.
//!
//! Everything here is plain data with serde derives; decisions live in
//! `reconcile.rs` and `failover.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The state of a data node, both as assigned by the monitor and as reported by
/// the keeper. Serialized in snake_case (`wait_primary`, `report_lsn`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Primary with no standby at all. Writable, async.
    Single,
    /// Primary whose standbys are not (yet) usable for sync replication. Writable,
    /// `synchronous_standby_names` empty. Degraded (async fallback).
    WaitPrimary,
    /// Primary with synchronous replication to `sync_standbys` (ANY `sync_quorum`).
    Primary,
    /// Planned switchover: primary turns read-only, terminates sessions, keeps its
    /// sync settings, and reports its final LSN. Not writable.
    Draining,
    /// Old primary after a failover: must not accept writes (keeper stops
    /// PostgreSQL / fences). Once it reports `demoted` it is re-assigned `catchingup`.
    Demoted,
    /// New standby waiting until the primary has applied an assignment listing it
    /// in `standbys` (replication slot / HBA ready). The keeper may clone meanwhile.
    WaitStandby,
    /// Standby (re)joining: clone, pg_rewind or plain streaming until caught up.
    /// Not in the sync set, not a switchover target.
    Catchingup,
    /// Streaming standby, caught up: in the sync set, promotable.
    Secondary,
    /// Failover step: stop the WAL receiver, report the final received LSN.
    ReportLsn,
    /// Failover step: the chosen candidate is behind the most advanced standby; it
    /// replicates from it (`primary` names that standby) until its LSN reaches it.
    FastForward,
    /// Promote yourself (pg_promote). Reported back as `promote` once done and out
    /// of recovery.
    Promote,
    /// Operator maintenance: never a candidate, never in the sync set.
    Maintenance,
    /// Node removed: keeper stops PostgreSQL and stops reporting.
    Dropped,
}

impl NodeState {
    /// States in which PostgreSQL accepts (or is about to accept) writes.
    /// The single-writer rule: at most one node is assigned one of these.
    pub fn is_writable(self) -> bool {
        matches!(
            self,
            NodeState::Single | NodeState::WaitPrimary | NodeState::Primary | NodeState::Promote
        )
    }

    /// States held by the node that is `ClusterState::primary` in normal operation.
    pub fn is_primary_role(self) -> bool {
        matches!(
            self,
            NodeState::Single | NodeState::WaitPrimary | NodeState::Primary | NodeState::Draining
        )
    }
}

/// `(timeline, lsn)`; ordered by timeline first, then LSN.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct LsnPos {
    pub timeline: u32,
    pub lsn: u64,
}

/// A synchronous replication setting: `ANY quorum (standbys...)`. Quorum 0 = async.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncConfig {
    pub standbys: Vec<String>,
    pub quorum: u32,
}

/// A sync setting assigned at `generation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEntry {
    pub generation: u64,
    pub config: SyncConfig,
}

/// Everything a keeper needs to converge. The driver hands the node's current one
/// back on every keeper report ([`ClusterState::assignment`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub node: String,
    pub state: NodeState,
    /// Cluster generation at which this assignment was made (unique, increasing).
    pub generation: u64,
    /// Whom to replicate from (standby states, `fast_forward`); `None` otherwise.
    pub primary: Option<String>,
    /// For primaries: `synchronous_standby_names = ANY sync_quorum (sync_standbys)`.
    pub sync_standbys: Vec<String>,
    pub sync_quorum: u32,
    /// For primaries: every node that may replicate from it (slots / HBA).
    pub standbys: Vec<String>,
}

/// What the monitor knows about one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// 0..=100; 0 = never promoted automatically.
    pub priority: u8,
    /// Operator maintenance flag (the assignment follows it when no transition runs).
    pub maintenance: bool,
    /// Current assignment.
    pub assignment: Assignment,
    /// When the current assignment was made.
    pub assigned_ms: u64,
    pub added_ms: u64,
    /// Last state the keeper reported, and the generation it had applied then.
    pub reported: Option<NodeState>,
    pub generation_seen: u64,
    pub last_report_ms: Option<u64>,
    pub last_health_ok_ms: Option<u64>,
    pub last_health_fail_ms: Option<u64>,
    /// Last evidence PostgreSQL was up: report with `pg_running`, or health check ok.
    pub last_pg_ok_ms: Option<u64>,
    /// Last evidence this standby was streaming: its own report, or the primary's
    /// `streaming_standbys`.
    pub last_streaming_ms: Option<u64>,
    pub lsn: u64,
    pub timeline: u32,
    pub pg_running: bool,
    pub is_in_recovery: bool,
    pub wal_receiver_streaming: bool,
    pub streaming_standbys: Vec<StreamingStandby>,
    /// Sync setting of the last assignment this node (as primary) confirmed applying.
    pub applied_sync: SyncConfig,
    /// Sync settings that may be in force on this node as primary: the one it last
    /// confirmed and every one assigned since (with their generations). A failover
    /// must satisfy the quorum rule for each of them.
    pub sync_history: Vec<SyncEntry>,
    /// Highest LSN known acknowledged by the sync quorum (from the primary's
    /// `streaming_standbys` flush LSNs). Reset when the node becomes primary.
    pub sync_ack_lsn: Option<u64>,
    /// Since when every health check found nothing listening on the node's
    /// PostgreSQL port (cleared by any sign of life: a check that did not
    /// end in a refusal, a report of a running PostgreSQL, a restart).
    #[serde(default)]
    pub refused_since_ms: Option<u64>,
    /// When (monitor clock) this standby's WAL receiver last heard from its
    /// upstream, as of its last report (`None`: the keeper did not say).
    #[serde(default)]
    pub upstream_heard_ms: Option<u64>,
}

impl NodeRecord {
    pub(crate) fn new(name: &str, priority: u8, now: u64) -> Self {
        NodeRecord {
            name: name.to_string(),
            priority,
            maintenance: false,
            assignment: Assignment {
                node: name.to_string(),
                state: NodeState::WaitStandby,
                generation: 0,
                primary: None,
                sync_standbys: vec![],
                sync_quorum: 0,
                standbys: vec![],
            },
            assigned_ms: now,
            added_ms: now,
            reported: None,
            generation_seen: 0,
            last_report_ms: None,
            last_health_ok_ms: None,
            last_health_fail_ms: None,
            last_pg_ok_ms: None,
            last_streaming_ms: None,
            lsn: 0,
            timeline: 0,
            pg_running: false,
            is_in_recovery: false,
            wal_receiver_streaming: false,
            streaming_standbys: vec![],
            applied_sync: SyncConfig::default(),
            sync_history: vec![],
            sync_ack_lsn: None,
            refused_since_ms: None,
            upstream_heard_ms: None,
        }
    }

    /// Rule 7: the keeper reported the assigned state *and* had applied this
    /// assignment's generation (older generations never count).
    pub fn reached(&self) -> bool {
        self.reported == Some(self.assignment.state)
            && self.generation_seen >= self.assignment.generation
    }

    pub fn pos(&self) -> LsnPos {
        LsnPos {
            timeline: self.timeline,
            lsn: self.lsn,
        }
    }

    /// The keeper reported within `failure_timeout_ms`.
    pub fn keeper_alive(&self, now: u64, cfg: &Config) -> bool {
        cfg.recent(now, self.last_report_ms)
    }

    /// Some evidence within `failure_timeout_ms` that PostgreSQL is up.
    pub fn pg_alive(&self, now: u64, cfg: &Config) -> bool {
        cfg.recent(now, self.last_pg_ok_ms)
    }

    /// The node's PostgreSQL has refused connections, and its keeper has been
    /// silent, for the whole of `Config::refused_failure_ms`: its processes
    /// are gone (killed, crashed with their host), not merely slow.
    pub fn gone_with_evidence(&self, now: u64, cfg: &Config) -> bool {
        let Some(window) = cfg.refused_window_ms() else {
            return false;
        };
        let refused_long = self
            .refused_since_ms
            .is_some_and(|since| now.saturating_sub(since) >= window);
        let keeper_silent = self
            .last_report_ms
            .is_none_or(|at| now.saturating_sub(at) >= window);
        refused_long && keeper_silent
    }

    /// Own recent report says "WAL receiver streaming" (used for rule 2b).
    pub fn reports_streaming(&self, now: u64, cfg: &Config) -> bool {
        self.keeper_alive(now, cfg)
            && self.wal_receiver_streaming
            && self.is_in_recovery
            && self.upstream_heard_recently(now, cfg)
    }

    /// The standby's receiver heard from its upstream within
    /// `Config::stream_silence_ms` (true when unbounded or not reported).
    fn upstream_heard_recently(&self, now: u64, cfg: &Config) -> bool {
        match (cfg.stream_silence_window_ms(), self.upstream_heard_ms) {
            (Some(window), Some(heard)) => now.saturating_sub(heard) <= window,
            _ => true,
        }
    }

    /// A standby usable for the sync set: not in maintenance, PostgreSQL up, and
    /// streaming (or freshly assigned) within `failure_timeout_ms`.
    pub fn sync_healthy(&self, now: u64, cfg: &Config) -> bool {
        let since = self.last_streaming_ms.unwrap_or(0).max(self.assigned_ms);
        !self.maintenance && self.pg_alive(now, cfg) && cfg.recent(now, Some(since))
    }

    /// The standby stopped streaming although the primary demonstrably kept
    /// running for a whole failure timeout after that: the standby's fault.
    /// A primary that just died looks alive for up to a failure timeout; a
    /// standby that lost its stream at the same moment must stay a candidate.
    pub fn stream_lost_to_live_primary(
        &self,
        primary: &NodeRecord,
        now: u64,
        cfg: &Config,
    ) -> bool {
        if self.sync_healthy(now, cfg) {
            return false;
        }
        let lost_at = self.last_streaming_ms.unwrap_or(0).max(self.assigned_ms);
        primary.pg_alive(now, cfg)
            && primary.last_pg_ok_ms.unwrap_or(0) >= lost_at + cfg.failure_timeout_ms
    }

    /// Kept in the sync set: streaming, or alive and not (yet) known to have
    /// lost its stream through its own fault.
    pub fn sync_member(&self, primary: &NodeRecord, now: u64, cfg: &Config) -> bool {
        !self.maintenance
            && (self.sync_healthy(now, cfg)
                || (self.pg_alive(now, cfg)
                    && !self.stream_lost_to_live_primary(primary, now, cfg)))
    }

    pub fn is_dropped(&self) -> bool {
        self.assignment.state == NodeState::Dropped
    }
}

/// Planned or unplanned change of primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    Failover,
    Switchover,
}

/// Where a transition stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Switchover: waiting for the old primary to report `draining` and for the
    /// target to reach its final LSN.
    Draining,
    /// Failover: waiting for standbys to report `report_lsn`.
    CollectLsn,
    /// Failover: `candidate` fetches missing WAL from `upstream` until `target`.
    FastForward {
        candidate: String,
        upstream: String,
        target: LsnPos,
    },
    /// `candidate` is assigned `promote`; waiting for it to confirm.
    Promoting { candidate: String },
}

/// An ongoing failover or switchover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub kind: TransitionKind,
    pub old_primary: String,
    /// Switchover target (None for failovers).
    pub target: Option<String>,
    pub started_ms: u64,
    pub phase: Phase,
    /// Old primary's last known position.
    pub old_primary_pos: LsnPos,
    /// Old primary's last known sync-acknowledged LSN.
    pub sync_ack_lsn: Option<u64>,
    /// Sync settings that may have been in force on the old primary (applied and
    /// assigned). For each, `|standbys| - quorum + 1` members must report.
    pub quorum_sets: Vec<SyncConfig>,
    /// Standbys assigned `report_lsn`.
    pub participants: Vec<String>,
    /// Final positions reported (`report_lsn` / `fast_forward`), max per node.
    pub reports: BTreeMap<String, LsnPos>,
    /// Switchover: the old primary's final LSN once it reported `draining`.
    pub drain_pos: Option<LsnPos>,
    /// Nodes the transition currently waits on.
    pub waiting_on: Vec<String>,
    /// Why it cannot proceed right now (None = progressing normally).
    pub blocked: Option<String>,
}

/// The whole monitor state for one database. Persist it (JSON) after each step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClusterState {
    /// Bumped on every assignment change; never decreases.
    pub generation: u64,
    /// Monitor clock: the max `now_ms` seen.
    pub now_ms: u64,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// The node that holds (or, during a transition, last held) the primary role.
    pub primary: Option<String>,
    pub transition: Option<Transition>,
}

impl ClusterState {
    /// An empty cluster (no node yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The node's current assignment: reply with it to every keeper report.
    pub fn assignment(&self, node: &str) -> Option<&Assignment> {
        self.nodes.get(node).map(|n| &n.assignment)
    }

    pub fn node(&self, node: &str) -> Option<&NodeRecord> {
        self.nodes.get(node)
    }

    /// True while a failover or switchover is running.
    pub fn transition_in_progress(&self) -> bool {
        self.transition.is_some()
    }

    pub(crate) fn primary_record(&self) -> Option<&NodeRecord> {
        self.primary.as_deref().and_then(|p| self.nodes.get(p))
    }

    /// Names of non-dropped nodes other than `except`, in name order.
    pub(crate) fn others(&self, except: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.name != except && !n.is_dropped())
            .map(|n| n.name.clone())
            .collect()
    }
}

/// A standby the primary sees in `pg_stat_replication` (state `streaming`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamingStandby {
    /// The standby's node name (its `application_name`).
    pub name: String,
    /// `flush_lsn` of that standby as seen by the primary.
    pub flush_lsn: u64,
}
