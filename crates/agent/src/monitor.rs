//! The monitor of one HA database, run by the agent of the host it was placed
//! on. A driver around the pure state machine of `pgfleet-ha`: it feeds it
//! keeper reports, its own PostgreSQL health checks and ticks of the
//! monotonic clock (`monitor_clock`), persists
//! the state to `monitors/<db>.json` after every step (so a restarted monitor
//! resumes), answers keepers with their assignments, and pushes primary
//! changes to the control plane. A replacement monitor (epoch > 0, no state
//! file of its epoch) first rebuilds its state from the keepers
//! (`monitor_rebuild`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgfleet_core::protocol::{MonitorObserved, MonitorSpec, PrimaryChanged};
use pgfleet_core::Desired;
use pgfleet_ha::{Action, ClusterState, Config, Event, NodeState};
use tokio::sync::watch;

use crate::keeper::{Assignment, KeeperReport, PrimaryRef};
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

struct Core {
    /// When the transition that is being finished started (for the history).
    transition_started_ms: Option<u64>,
    state: ClusterState,
    config: Config,
    spec: MonitorSpec,
    path: std::path::PathBuf,
    /// Set while a replacement monitor collects the keepers' reports.
    collecting: Option<Collecting>,
}

/// Writes the monitor's state to `path` (synced, atomic).
fn persist(path: &std::path::Path, state: &ClusterState) -> std::io::Result<()> {
    pgfleet_tls::write_durable(path, &serde_json::to_vec(state)?)
}

use crate::keeper::state_name;

fn parse_state(name: &str, in_recovery: bool) -> NodeState {
    serde_json::from_value(serde_json::Value::String(name.to_string())).unwrap_or(if in_recovery {
        NodeState::WaitStandby
    } else {
        NodeState::Single
    })
}

impl Core {
    fn apply(&mut self, event: Event) -> Vec<Action> {
        if let Some(transition) = &self.state.transition {
            self.transition_started_ms = Some(transition.started_ms);
        }
        match pgfleet_ha::step(&self.state, &event, &self.config) {
            Ok((next, actions)) => {
                // Persist before acting: a step that is not on disk is not
                // taken, so no assignment of it reaches a keeper.
                if let Err(error) = persist(&self.path, &next) {
                    tracing::error!(db = %self.spec.db, generation = next.generation, %error, "cannot persist the monitor state; step not taken");
                    return Vec::new();
                }
                self.state = next;
                actions
            }
            Err(error) => {
                tracing::debug!(%error, "monitor refused event");
                Vec::new()
            }
        }
    }

    /// A replacement monitor that collected enough reports builds its
    /// state (persisted before anyone is answered) and leaves collection.
    fn finish_rebuild(&mut self) -> Vec<Action> {
        let now = now_ms();
        let Some(collecting) = &self.collecting else {
            return Vec::new();
        };
        if !collecting.complete(&self.spec, now, &self.config) {
            return Vec::new();
        }
        let (state, actions) = collecting.build(&self.spec, now, &self.config);
        if let Err(error) = persist(&self.path, &state) {
            tracing::error!(db = %self.spec.db, %error, "cannot persist the rebuilt monitor state; still collecting");
            return Vec::new();
        }
        tracing::info!(db = %self.spec.db, epoch = self.spec.epoch, generation = state.generation, primary = ?state.primary, reports = collecting.reports.len(), "monitor state rebuilt from the keepers");
        self.state = state;
        self.collecting = None;
        actions
    }

    /// Adds nodes the spec has and the state lacks (the initial primary first), drops removed ones.
    fn sync_nodes(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let now = now_ms();
        let mut wanted: Vec<(String, u8)> = self
            .spec
            .nodes
            .iter()
            .map(|p| (p.node.clone(), p.priority))
            .collect();
        wanted.sort_by_key(|(name, _)| *name != self.spec.initial_primary);
        for (name, priority) in &wanted {
            if !self.state.nodes.contains_key(name) {
                actions.extend(self.apply(Event::AddNode {
                    node: name.clone(),
                    priority: *priority,
                    now_ms: now,
                }));
            }
        }
        let existing: Vec<String> = self
            .state
            .nodes
            .iter()
            .filter(|(_, n)| !n.is_dropped())
            .map(|(k, _)| k.clone())
            .collect();
        for name in existing {
            if !wanted.iter().any(|(w, _)| *w == name) {
                actions.extend(self.apply(Event::RemoveNode {
                    node: name.clone(),
                    now_ms: now,
                }));
            }
        }
        for peer in self.spec.nodes.clone() {
            let maintenance = self
                .state
                .nodes
                .get(&peer.node)
                .is_some_and(|n| n.maintenance);
            if maintenance != peer.maintenance {
                actions.extend(self.apply(Event::SetMaintenance {
                    node: peer.node.clone(),
                    on: peer.maintenance,
                    now_ms: now,
                }));
            }
        }
        actions
    }

    fn keeper_assignment(&self, node: &str) -> Option<Assignment> {
        let assignment = self.state.assignment(node)?;
        let primary = assignment.primary.as_ref().and_then(|name| {
            self.spec
                .nodes
                .iter()
                .find(|p| &p.node == name)
                .map(|p| PrimaryRef {
                    node: p.node.clone(),
                    address: p.address.clone(),
                    port: p.port,
                })
        });
        Some(Assignment {
            state: assignment.state,
            generation: assignment.generation,
            primary,
            sync_standbys: assignment.sync_standbys.clone(),
            sync_quorum: assignment.sync_quorum,
        })
    }

    fn observation(&self) -> MonitorObserved {
        let health = pgfleet_ha::health(&self.state, now_ms(), &self.config);
        let primary_generation = self
            .state
            .primary
            .as_ref()
            .and_then(|p| self.state.assignment(p))
            .map(|a| a.generation)
            .unwrap_or(0);
        MonitorObserved {
            db: self.spec.db.clone(),
            node: self.spec.node.clone(),
            running: true,
            primary: self.state.primary.clone(),
            primary_generation,
            state: serde_json::json!({"health": health, "generation": self.state.generation, "transition": self.state.transition, "epoch": self.spec.epoch, "rebuilding": self.collecting.is_some()}),
            last_change: None,
        }
    }
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
    let task = tokio::spawn(run(runtime, monitor.clone(), rx));
    MonitorHandle {
        spec: tx,
        monitor,
        task,
    }
}

async fn run(
    runtime: AgentRuntime,
    monitor: Arc<MonitorShared>,
    mut rx: watch::Receiver<MonitorSpec>,
) {
    let interval = Duration::from_millis(runtime.config.keeper_interval_ms);
    loop {
        let spec = rx.borrow_and_update().clone();
        if monitor.core.lock().await.collecting.is_some() {
            let actions = {
                let mut core = monitor.core.lock().await;
                core.spec = spec.clone();
                let actions = core.finish_rebuild();
                *monitor.observed.lock().expect("monitor lock") = Some(core.observation());
                actions
            };
            monitor.execute(actions);
        }
        if spec.desired != Desired::Deleted && monitor.core.lock().await.collecting.is_some() {
            tokio::select! {
                _ = runtime.stopping.cancelled() => return,
                changed = rx.changed() => { if changed.is_err() { return; } }
                _ = tokio::time::sleep(interval) => {}
            }
            continue;
        }
        if spec.desired == Desired::Deleted {
            let core = monitor.core.lock().await;
            monitor
                .deleted
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = std::fs::remove_file(&core.path);
            *monitor.observed.lock().expect("monitor lock") = None;
            tracing::info!(db = %spec.db, "monitor removed");
            return;
        }
        let actions = {
            let mut core = monitor.core.lock().await;
            core.spec = spec.clone();
            let mut actions = core.sync_nodes();
            actions.extend(core.apply(Event::Tick { now_ms: now_ms() }));
            *monitor.observed.lock().expect("monitor lock") = Some(core.observation());
            actions
        };
        monitor.execute(actions);
        // PostgreSQL-level health checks of every data node, in parallel.
        let mut checks = Vec::new();
        for peer in spec.nodes.clone() {
            let password = spec.superuser_password.clone();
            let pg_tls = spec.pg_tls.clone();
            checks.push(tokio::spawn(async move {
                let (ok, refused) = match crate::pg::sql::connect_tcp(
                    &peer.address,
                    peer.port,
                    &password,
                    pg_tls.as_ref(),
                    Duration::from_millis(500),
                )
                .await
                {
                    Ok(client) => (client.simple_query("SELECT 1").await.is_ok(), false),
                    Err(error) => (false, refused(&error)),
                };
                (peer.node, ok, refused)
            }));
        }
        let mut results = Vec::new();
        for check in checks {
            if let Ok(result) = check.await {
                results.push(result);
            }
        }
        let actions = {
            let mut core = monitor.core.lock().await;
            let mut actions = Vec::new();
            for (node, ok, refused) in results {
                if core.state.nodes.contains_key(&node) {
                    actions.extend(core.apply(Event::HealthCheck {
                        node,
                        ok,
                        refused,
                        now_ms: now_ms(),
                    }));
                }
            }
            actions
        };
        monitor.execute(actions);
        tokio::select! {
            _ = runtime.stopping.cancelled() => return,
            changed = rx.changed() => { if changed.is_err() { return; } }
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Whether a failed probe's connection was actively refused (TCP reset:
/// nothing listens on the port), the evidence the HA core's fast detection
/// needs. A timeout, an unreachable network, a failed handshake or query is
/// not a refusal.
fn refused(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's own error tells a port nothing listens on (refused: the
    /// fast detection's evidence) from one that accepts and never answers
    /// (a frozen server: a timeout, no evidence).
    #[tokio::test]
    async fn a_refused_probe_is_told_from_one_that_times_out() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let Err(error) =
            crate::pg::sql::connect_tcp("127.0.0.1", port, "x", None, Duration::from_millis(500))
                .await
        else {
            panic!("nothing listens");
        };
        assert!(refused(&error), "{error:#}");

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let Err(error) =
            crate::pg::sql::connect_tcp("127.0.0.1", port, "x", None, Duration::from_millis(200))
                .await
        else {
            panic!("nothing answers");
        };
        assert!(!refused(&error), "{error:#}");
    }

    use proptest::prelude::*;

    const STATES: [NodeState; 13] = [
        NodeState::Single,
        NodeState::WaitPrimary,
        NodeState::Primary,
        NodeState::Draining,
        NodeState::Demoted,
        NodeState::WaitStandby,
        NodeState::Catchingup,
        NodeState::Secondary,
        NodeState::ReportLsn,
        NodeState::FastForward,
        NodeState::Promote,
        NodeState::Maintenance,
        NodeState::Dropped,
    ];

    fn core_at(path: std::path::PathBuf) -> Core {
        let peer = pgfleet_core::protocol::PeerSpec {
            node: "db-1".into(),
            address: "127.0.0.1".into(),
            port: 5432,
            agent_port: 7071,
            priority: 50,
            maintenance: false,
        };
        Core {
            transition_started_ms: None,
            state: ClusterState::new(),
            config: Config::default(),
            spec: MonitorSpec {
                db: "db".into(),
                node: "db-monitor".into(),
                desired: Desired::Running,
                nodes: vec![peer],
                initial_primary: "db-1".into(),
                superuser_password: String::new(),
                monitor_token: String::new(),
                clients: vec![],
                pg_tls: None,
                generation: 1,
                epoch: 0,
            },
            path,
            collecting: None,
        }
    }

    /// Persist before acting: a monitor that cannot write its state takes
    /// no step, so no keeper receives an assignment that a restarted monitor
    /// would not know; once the disk works again the step is taken.
    #[test]
    fn a_step_that_cannot_be_persisted_hands_out_no_assignment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db.json");
        std::fs::create_dir_all(path.join("in-the-way")).expect("folder where the file goes");
        let mut core = core_at(path.clone());
        assert!(core.sync_nodes().is_empty(), "no action of an unsaved step");
        assert_eq!(core.keeper_assignment("db-1"), None);
        assert_eq!(core.state.generation, ClusterState::new().generation);

        std::fs::remove_dir_all(&path).expect("unblock");
        assert!(!core.sync_nodes().is_empty());
        let assignment = core.keeper_assignment("db-1").expect("assigned");
        let saved: ClusterState =
            serde_json::from_slice(&std::fs::read(&path).expect("saved")).expect("parses");
        assert_eq!(saved.generation, assignment.generation);
        assert_eq!(saved, core.state);
    }

    proptest! {
        /// Every state's wire name parses back to it, in and out of recovery.
        #[test]
        fn state_names_round_trip(state in prop::sample::select(STATES.to_vec()), in_recovery in any::<bool>()) {
            prop_assert_eq!(parse_state(&state_name(state), in_recovery), state);
        }

        /// A keeper's `reported` text that names no state never panics; the recovery
        /// flag decides: `wait_standby` in recovery, else `single`.
        #[test]
        fn unknown_state_names_fall_back(name in any::<String>(), in_recovery in any::<bool>()) {
            prop_assume!(STATES.iter().all(|s| state_name(*s) != name));
            let expected = if in_recovery { NodeState::WaitStandby } else { NodeState::Single };
            prop_assert_eq!(parse_state(&name, in_recovery), expected);
        }
    }
}
