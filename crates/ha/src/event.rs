//! Inputs ([`Event`]) and outputs ([`Action`]) of [`crate::step`]; its refusals are
//! [`crate::HaError`].

use serde::{Deserialize, Serialize};

use crate::states::{Assignment, NodeState, StreamingStandby, TransitionKind};

/// What a keeper sends on every report (every `report_interval_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeeperReport {
    pub node: String,
    /// The state the keeper has reached (the assigned one once converged).
    pub reported: NodeState,
    /// Generation of the last assignment the keeper applied (persisted by the keeper).
    pub generation_seen: u64,
    /// Primary: `pg_current_wal_flush_lsn()`. Standby: `pg_last_wal_receive_lsn()`
    /// (or replay LSN if no receiver). After `report_lsn`: the final LSN.
    pub lsn: u64,
    /// Timeline of that LSN.
    pub timeline: u32,
    pub pg_running: bool,
    /// `pg_is_in_recovery()`.
    pub is_in_recovery: bool,
    /// Standby: `pg_stat_wal_receiver.status = 'streaming'`.
    pub wal_receiver_streaming: bool,
    /// Standby with a streaming receiver: how long ago it last heard from
    /// its upstream (`pg_stat_wal_receiver.last_msg_receipt_time`), when
    /// the keeper knows (see `Config::stream_silence_ms`).
    #[serde(default)]
    pub upstream_silent_ms: Option<u64>,
    /// Primary: standbys streaming from it (`pg_stat_replication`).
    pub streaming_standbys: Vec<StreamingStandby>,
    /// Receive time on the monitor.
    pub now_ms: u64,
}

/// Everything that can happen to the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Event {
    KeeperReport(KeeperReport),
    /// The monitor's own PostgreSQL-level probe of the node (e.g. `SELECT 1`).
    HealthCheck {
        node: String,
        ok: bool,
        /// The probe failed because nothing listens on the node's PostgreSQL
        /// port: the connection was actively refused (TCP reset), not timed
        /// out. Evidence that PostgreSQL is gone, which a slow or paused host
        /// never gives (see `Config::refused_failure_ms`).
        #[serde(default)]
        refused: bool,
        now_ms: u64,
    },
    Tick {
        now_ms: u64,
    },
    /// Priority 0..=100, 0 = never promoted automatically.
    AddNode {
        node: String,
        priority: u8,
        now_ms: u64,
    },
    RemoveNode {
        node: String,
        now_ms: u64,
    },
    Switchover {
        target: String,
        now_ms: u64,
    },
    SetMaintenance {
        node: String,
        on: bool,
        now_ms: u64,
    },
}

impl Event {
    pub fn now_ms(&self) -> u64 {
        match self {
            Event::KeeperReport(r) => r.now_ms,
            Event::HealthCheck { now_ms, .. }
            | Event::Tick { now_ms }
            | Event::AddNode { now_ms, .. }
            | Event::RemoveNode { now_ms, .. }
            | Event::Switchover { now_ms, .. }
            | Event::SetMaintenance { now_ms, .. } => *now_ms,
        }
    }
}

/// Why the primary changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionReason {
    Failover,
    Switchover,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Action {
    /// New assignment for `assignment.node`: push it to the keeper (it is also
    /// what [`crate::ClusterState::assignment`] returns from now on).
    Assign(Assignment),
    /// The writable node changed: update control-plane metadata and DNS.
    PrimaryChanged {
        old: Option<String>,
        new: String,
        reason: PromotionReason,
        /// Generation of the new primary's writable assignment.
        generation: u64,
        old_lsn: Option<u64>,
        new_lsn: u64,
    },
    /// Failover started: make sure `node` cannot accept writes if at all possible
    /// (stop the VM / block its port / STONITH). Best effort.
    Fence { node: String },
    /// A transition was abandoned without promoting anyone.
    TransitionAborted {
        kind: TransitionKind,
        reason: String,
    },
    /// The running transition now waits on `node`'s next report (with no
    /// new assignment for it): a driver may ask its keeper to report now
    /// rather than at its next interval. Purely an optimisation.
    AwaitReport { node: String },
}
