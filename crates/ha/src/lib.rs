//! `pgfleet-ha`: the pure decision core of the per-database monitor.
//!
//! No I/O, no clock, no randomness: time is the `now_ms` carried by each [`Event`].
//! State machine and rules: `STATE_MACHINE.md` next to this crate's `Cargo.toml`.
//!
//! # Driver contract
//!
//! ```text
//! state = load_json().map(|s| after_restart(&s, now)).unwrap_or_default();
//! loop {
//!     let event = next_event();      // keeper report | health probe | Tick | operator command
//!     match step(&state, &event, &config) {
//!         Ok((next, actions)) => {
//!             persist_json(&next);   // BEFORE executing the actions
//!             state = next;
//!             execute(actions);      // in order: Assign -> push to keeper, Fence,
//!                                    // PrimaryChanged -> control plane + DNS
//!         }
//!         Err(e) => log(e),          // state unchanged, no action
//!     }
//!     // A keeper report is answered with `state.assignment(&node)` (always the
//!     // current one, so a lost push is repaired by the next poll).
//! }
//! ```
//!
//! - Send `Event::Tick` every `config.report_interval_ms` (200 ms) even when idle:
//!   failure detection and timeouts only advance on events.
//! - Send `Event::HealthCheck` from the monitor's own probe of each node's
//!   PostgreSQL (e.g. every `report_interval_ms`); it keeps a node alive even when
//!   its keeper cannot report.
//! - `now_ms` must come from one monotonic clock of the monitor (receive time).
//! - Events for one database must be applied one at a time, in receive order.
//!
//! ```
//! use pgfleet_ha::{health, step, Action, ClusterState, Config, Event, NodeState, SyncMode};
//!
//! let cfg = Config::default();
//! let add = Event::AddNode { node: "n0".into(), priority: 50, now_ms: 1_000 };
//! let (state, actions) = step(&ClusterState::new(), &add, &cfg).unwrap();
//! assert!(matches!(&actions[0], Action::Assign(a) if a.state == NodeState::Single));
//! assert_eq!(state.assignment("n0").unwrap().state, NodeState::Single);
//! assert_eq!(health(&state, 1_000, &cfg).sync_mode, SyncMode::None);
//! ```
//!
//! # Keeper contract (what the assignments mean)
//!
//! - Persist `generation_seen` (outside PGDATA); report it with every report. A
//!   report older than the last accepted one from the same keeper is ignored.
//! - Apply an assignment fully, then report `reported = assignment.state` with
//!   `generation_seen = assignment.generation`. Apply `primary` changes in any
//!   standby state (new `primary_conninfo`, pg_rewind or re-clone on divergence).
//! - A node in a primary role (`single`/`wait_primary`/`primary`) that cannot reach
//!   the monitor for `failure_timeout_ms` *and* has no streaming standby must stop
//!   accepting writes (self-fencing): that is what makes an unconfirmed `demoted`
//!   safe. "Cannot reach" means tried and failed, after the silence began:
//!   time the keeper itself was paused is not silence (it asks again first).
//!   Acknowledged writes do not depend on the fence's timing: a primary cut
//!   from its standbys cannot satisfy its synchronous setting.
//!
//! Modules, each using only those listed before it (no cycle): error, config,
//! states (data), event (in/out), assign (setting assignments), detect (failure
//! detection), phase (transition building blocks), failover / switchover (their
//! phases), transition (the driver shared by both), reconcile (steady state),
//! step (entry points), health (query), rebuild (a replaced monitor's state).

mod assign;
mod config;
mod detect;
mod error;
mod event;
mod failover;
mod health;
mod phase;
mod rebuild;
mod reconcile;
mod states;
mod step;
mod switchover;
mod transition;

pub use config::Config;
pub use detect::primary_failed;
pub use error::HaError;
pub use event::{Action, Event, KeeperReport, PromotionReason};
pub use health::{health, ClusterHealth, NodeHealth, SyncMode, TransitionStatus};
pub use rebuild::{generation_floor, rebuild, HeldAssignment, RebuildReport, SpecNode};
pub use states::{
    Assignment, ClusterState, LsnPos, NodeRecord, NodeState, Phase, StreamingStandby, SyncConfig,
    SyncEntry, Transition, TransitionKind,
};
pub use step::{after_restart, step};
