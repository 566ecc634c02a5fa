//! Refusals of the decision core.

use serde::{Deserialize, Serialize};

/// Refusals. On error the input state is unchanged and no action is produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum HaError {
    #[error("unknown node {0}")]
    UnknownNode(String),
    #[error("node {0} already exists")]
    NodeExists(String),
    #[error("priority {0} out of range 0..=100")]
    InvalidPriority(u8),
    #[error("node {0} is the primary; switch over first")]
    IsPrimary(String),
    #[error("a failover or switchover is in progress")]
    TransitionInProgress,
    #[error("no primary")]
    NoPrimary,
    #[error("primary {0} is not healthy")]
    PrimaryUnhealthy(String),
    #[error("switchover target {target} is not eligible: {reason}")]
    TargetNotEligible { target: String, reason: String },
    #[error("report from {node} claims generation {seen} but the cluster is at {current}")]
    FutureGeneration {
        node: String,
        seen: u64,
        current: u64,
    },
    #[error("invalid config: {0}")]
    InvalidConfig(String),
}
