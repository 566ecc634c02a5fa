//! `pgfleet-ha`: the pure decision core of the per-database monitor.
//!
//! No I/O, no clock, no randomness. The driver feeds [`Event`]s into [`step`],
//! persists the returned [`ClusterState`] (JSON via serde) and then executes the
//! returned [`Action`]s, in order:
//!
//! ```text
//! loop {
//!     let event = next_event();           // keeper report, health probe, tick, operator
//!     match step(&state, &event, &config) {
//!         Ok((next, actions)) => { persist(&next); state = next; execute(actions) }
//!         Err(e) => log(e),               // state unchanged
//!     }
//!     // reply to a keeper report with state.assignment(&node)
//! }
//! ```
//!
//! On monitor start: load the file, `state = after_restart(&state, now)`.
//!
//! The state machine (see `STATE_MACHINE.md`): nodes are assigned a [`NodeState`]
//! with a generation; keepers report what they reached and which generation they
//! applied. Steady-state rules live in `reconcile.rs`, failover / switchover in
//! `failover.rs`, the read-only summary in [`health`].

mod config;
mod event;
mod failover;
mod health;
mod reconcile;
mod states;
mod step;

pub use config::Config;
pub use event::{Action, Event, HaError, KeeperReport, PromotionReason, StreamingStandby};
pub use health::{health, ClusterHealth, NodeHealth, SyncMode, TransitionStatus};
pub use reconcile::primary_failed;
pub use states::{
    Assignment, ClusterState, LsnPos, NodeRecord, NodeState, Phase, SyncConfig, SyncEntry,
    Transition, TransitionKind,
};
pub use step::{after_restart, step};
