//! The monitor of one HA database, run by the agent of the host it was placed
//! on. A driver around the pure state machine of `pgfleet-ha`: it feeds it
//! keeper reports, its own PostgreSQL health checks and ticks of the
//! monotonic clock (`monitor_clock`), persists
//! the state to `monitors/<db>.json` after every step (so a restarted monitor
//! resumes), answers keepers with their assignments, and pushes primary
//! changes to the control plane. A replacement monitor (epoch > 0, no state
//! file of its epoch) first rebuilds its state from the keepers
//! (`monitor_rebuild`).
//!
//! This module: the monitor's handle and shared part (keeper reports,
//! switchovers, executing the core's actions, pushing primary changes) and
//! `spawn`; `state`: the HA core's state with its persistence and the
//! keepers' assignments; `run`: the monitor's loop (ticks, health probes).

mod run;
mod state;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgfleet_core::protocol::{MonitorObserved, MonitorSpec, PrimaryChanged};
use pgfleet_core::Desired;
use pgfleet_ha::{Action, ClusterState, Event};
use tokio::sync::watch;

use self::state::{parse_state, persist, Core};
use crate::keeper::{state_name, Assignment, KeeperReport};
use crate::monitor_clock::now_ms;
use crate::monitor_rebuild::Collecting;
use crate::runtime::AgentRuntime;

/// The agent's handle on a running monitor (kept by the supervisor).
pub struct MonitorHandle {
    pub spec: watch::Sender<MonitorSpec>,
    pub monitor: Arc<MonitorShared>,
    pub task: tokio::task::JoinHandle<()>,
}

pub struct MonitorShared {
    pub db: String,
    /// The monitor's spec as the supervisor last handed it (its nodes' addresses).
    spec: watch::Receiver<MonitorSpec>,
    /// The database's monitor token (keepers and the control plane present it).
    token: String,
    pub node: String,
    runtime: AgentRuntime,
    core: tokio::sync::Mutex<Core>,
    observed: Mutex<Option<MonitorObserved>>,
    /// Start of the transition whose end is being reported.
    detected_ms: Mutex<Option<u64>>,
    /// The last primary change this monitor made, reported in every beat.
    last_change: Mutex<Option<PrimaryChanged>>,
    /// Set once the spec said deleted: the monitor answers and reports nothing.
    deleted: std::sync::atomic::AtomicBool,
}

impl MonitorShared {
    /// Constant-time check of a presented monitor token.
    pub fn token_matches(&self, presented: &str) -> bool {
        !self.token.is_empty() && pgfleet_core::secrets::same_secret(presented, &self.token)
    }

    /// Tells `node`'s keeper at once that it has a new assignment.
    fn wake_keeper(&self, node: &str) {
        let peer = self
            .spec
            .borrow()
            .nodes
            .iter()
            .find(|p| p.node == node)
            .cloned();
        if let Some(peer) = peer {
            crate::wake::wake(&self.runtime, &self.db, &peer, &self.token);
        }
    }

    /// Superseded (by a monitor of a newer epoch): answers and reports nothing.
    pub fn retire(&self) {
        self.deleted
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn observed(&self) -> Option<MonitorObserved> {
        if self.deleted.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let mut observed = self.observed.lock().expect("monitor lock").clone()?;
        observed.last_change = self.last_change.lock().expect("monitor lock").clone();
        Some(observed)
    }

    /// Handles a keeper report and answers with the node's assignment.
    pub async fn keeper_report(&self, report: KeeperReport) -> Option<Assignment> {
        let mut core = self.core.lock().await;
        if self.deleted.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let facts = pgfleet_ha::KeeperReport {
            node: report.node.clone(),
            reported: parse_state(&report.reported, report.is_in_recovery),
            generation_seen: report.generation_seen,
            lsn: report.lsn,
            timeline: report.timeline,
            pg_running: report.pg_running,
            is_in_recovery: report.is_in_recovery,
            wal_receiver_streaming: report.wal_receiver_streaming,
            upstream_silent_ms: report.upstream_silent_ms,
            streaming_standbys: report.streaming_standbys.clone(),
            now_ms: now_ms(),
        };
        let mut actions = Vec::new();
        if core.collecting.is_some() {
            let spec = core.spec.clone();
            if let Some(collecting) = core.collecting.as_mut() {
                collecting.record(&spec, &report, facts);
            }
            actions = core.finish_rebuild();
            *self.observed.lock().expect("monitor lock") = Some(core.observation());
            if core.collecting.is_some() {
                return None;
            }
        } else {
            if !core.state.nodes.contains_key(&report.node) {
                return None;
            }
            actions.extend(core.apply(Event::KeeperReport(facts)));
        }
        *self.detected_ms.lock().expect("monitor lock") = core.transition_started_ms;
        let answer = core.keeper_assignment(&report.node);
        *self.observed.lock().expect("monitor lock") = Some(core.observation());
        drop(core);
        self.execute(actions);
        answer
    }

    /// Starts a planned switchover to `target`; the refusal says why.
    pub async fn switchover(&self, target: &str) -> Result<(), String> {
        let mut core = self.core.lock().await;
        let event = Event::Switchover {
            target: target.to_string(),
            now_ms: now_ms(),
        };
        let (next, actions) =
            pgfleet_ha::step(&core.state, &event, &core.config).map_err(|e| e.to_string())?;
        persist(&core.path, &next)
            .map_err(|error| format!("cannot persist the monitor state: {error}"))?;
        core.state = next;
        *self.observed.lock().expect("monitor lock") = Some(core.observation());
        drop(core);
        self.execute(actions);
        Ok(())
    }

    fn execute(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Assign(assignment) => {
                    tracing::info!(db = %self.db, node = %assignment.node, state = %state_name(assignment.state), generation = assignment.generation, "assigned");
                    self.wake_keeper(&assignment.node);
                }
                Action::PrimaryChanged {
                    old,
                    new,
                    reason,
                    generation,
                    old_lsn,
                    new_lsn,
                } => {
                    let detected = *self.detected_ms.lock().expect("monitor lock");
                    tracing::warn!(db = %self.db, ?old, %new, ?reason, generation, "primary changed");
                    let change = PrimaryChanged {
                        db: self.db.clone(),
                        old_primary: old,
                        new_primary: new,
                        generation,
                        reason: serde_json::to_value(reason)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        old_lsn,
                        new_lsn: Some(new_lsn),
                        promoted_at_ms: Some(pgfleet_core::time::now_ms()),
                        detected_at_ms: detected.map(crate::monitor_clock::wall_ms),
                    };
                    *self.last_change.lock().expect("monitor lock") = Some(change.clone());
                    crate::dns_push::announce(&self.runtime, &change);
                    let runtime = self.runtime.clone();
                    tokio::spawn(push_primary_change(runtime, change));
                }
                Action::Fence { node } => {
                    tracing::warn!(db = %self.db, %node, "fencing old primary (its keeper stops it when it reports)")
                }
                Action::AwaitReport { node } => self.wake_keeper(&node),
                Action::TransitionAborted { kind, reason } => {
                    tracing::warn!(db = %self.db, ?kind, %reason, "transition aborted")
                }
            }
        }
    }
}

/// Tells the control plane at once; retried for a while. The heartbeat carries
/// the same fact, so a push lost for good is still applied (reconcile poll).
async fn push_primary_change(runtime: AgentRuntime, body: PrimaryChanged) {
    let url = format!(
        "{}/api/v1/agents/primary-changed",
        runtime.config.server_url.trim_end_matches('/')
    );
    for _ in 0..20 {
        let result = runtime
            .http()
            .post(&url)
            .bearer_auth(&runtime.config.credential)
            .json(&body)
            .send()
            .await;
        if matches!(&result, Ok(r) if r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tracing::warn!(db = %body.db, generation = body.generation, "the control plane did not take the primary change; the monitor's heartbeat carries it");
}

pub fn spawn(runtime: AgentRuntime, spec: MonitorSpec) -> MonitorHandle {
    let (tx, rx) = watch::channel(spec.clone());
    let path = runtime
        .host_dir
        .join("monitors")
        .join(format!("{}.json", spec.db));
    let config = crate::config::ha_config(
        runtime.config.keeper_interval_ms,
        runtime.config.failure_timeout_ms,
    );
    let saved = match spec.desired {
        // A retired monitor only removes its file: it never reads it again.
        Desired::Deleted => None,
        _ => std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ClusterState>(&bytes).ok()),
    };
    let mut collecting = None;
    let state = match saved {
        Some(saved) if crate::monitor_rebuild::resumable(&saved, spec.epoch) => {
            tracing::info!(db = %spec.db, generation = saved.generation, "monitor resumes from its saved state");
            pgfleet_ha::after_restart(&saved, now_ms())
        }
        saved => {
            if let Some(old) = saved {
                tracing::warn!(db = %spec.db, generation = old.generation, epoch = spec.epoch, "ignoring a state file of an older monitor epoch");
            }
            if spec.epoch > 0 && spec.desired != Desired::Deleted {
                tracing::info!(db = %spec.db, epoch = spec.epoch, "replacement monitor: rebuilding its state from the keepers");
                collecting = Some(Collecting::new(now_ms()));
            }
            ClusterState::new()
        }
    };
    let core = Core {
        transition_started_ms: None,
        state,
        config,
        spec: spec.clone(),
        path,
        collecting,
    };
    let monitor = Arc::new(MonitorShared {
        db: spec.db.clone(),
        spec: rx.clone(),
        token: spec.monitor_token.clone(),
        node: spec.node.clone(),
        runtime: runtime.clone(),
        observed: Mutex::new((spec.desired != Desired::Deleted).then(|| core.observation())),
        detected_ms: Mutex::new(None),
        last_change: Mutex::new(None),
        deleted: std::sync::atomic::AtomicBool::new(false),
        core: tokio::sync::Mutex::new(core),
    });
    let task = tokio::spawn(run::run(runtime, monitor.clone(), rx));
    MonitorHandle {
        spec: tx,
        monitor,
        task,
    }
}
