//! The monitor's HA core: the state machine's state and config, the spec
//! it runs under, each step persisted before its actions are taken (synced,
//! atomic), and the assignments keepers receive.

use pgfleet_core::protocol::{MonitorObserved, MonitorSpec};
use pgfleet_ha::{Action, ClusterState, Config, Event, NodeState};

use crate::keeper::{Assignment, PrimaryRef};
use crate::monitor_clock::now_ms;
use crate::monitor_rebuild::Collecting;

pub(super) struct Core {
    /// When the transition that is being finished started (for the history).
    pub(super) transition_started_ms: Option<u64>,
    pub(super) state: ClusterState,
    pub(super) config: Config,
    pub(super) spec: MonitorSpec,
    pub(super) path: std::path::PathBuf,
    /// Set while a replacement monitor collects the keepers' reports.
    pub(super) collecting: Option<Collecting>,
}

/// Writes the monitor's state to `path` (synced, atomic).
pub(super) fn persist(path: &std::path::Path, state: &ClusterState) -> std::io::Result<()> {
    pgfleet_tls::write_durable(path, &serde_json::to_vec(state)?)
}

pub(super) fn parse_state(name: &str, in_recovery: bool) -> NodeState {
    serde_json::from_value(serde_json::Value::String(name.to_string())).unwrap_or(if in_recovery {
        NodeState::WaitStandby
    } else {
        NodeState::Single
    })
}

impl Core {
    pub(super) fn apply(&mut self, event: Event) -> Vec<Action> {
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
    pub(super) fn finish_rebuild(&mut self) -> Vec<Action> {
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
    pub(super) fn sync_nodes(&mut self) -> Vec<Action> {
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

    pub(super) fn keeper_assignment(&self, node: &str) -> Option<Assignment> {
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

    pub(super) fn observation(&self) -> MonitorObserved {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keeper::state_name;
    use pgfleet_core::Desired;

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
