//! The first phase of a replacement monitor (monitor epoch > 0, no state
//! file of its epoch): it collects the keepers' reports, each with the
//! assignment the keeper holds, and answers nobody, until every data node
//! of its spec reported or `failure_timeout_ms` passed; then it builds its
//! state with the pure `pgfleet_ha::rebuild` and runs as usual
//! (`monitor.rs`). No I/O here.

use std::collections::BTreeMap;

use pgfleet_core::protocol::MonitorSpec;
use pgfleet_ha::{Action, ClusterState, Config, HeldAssignment, RebuildReport, SpecNode};

use crate::keeper::KeeperReport;

/// Reports collected so far.
#[derive(Debug, Clone)]
pub struct Collecting {
    /// Monitor clock when collection began.
    pub started_ms: u64,
    pub reports: BTreeMap<String, RebuildReport>,
}

impl Collecting {
    pub fn new(now_ms: u64) -> Collecting {
        Collecting {
            started_ms: now_ms,
            reports: BTreeMap::new(),
        }
    }

    /// Keeps the latest report of a data node of `spec`.
    pub fn record(
        &mut self,
        spec: &MonitorSpec,
        report: &KeeperReport,
        event: pgfleet_ha::KeeperReport,
    ) {
        if !spec.nodes.iter().any(|p| p.node == report.node) {
            return;
        }
        let held = report.held.as_ref().map(|a| HeldAssignment {
            state: a.state,
            generation: a.generation,
            primary: a.primary.as_ref().map(|p| p.node.clone()),
            sync_standbys: a.sync_standbys.clone(),
            sync_quorum: a.sync_quorum,
        });
        self.reports.insert(
            report.node.clone(),
            RebuildReport {
                report: event,
                held,
            },
        );
    }

    /// Every data node reported, or the failure timeout passed.
    pub fn complete(&self, spec: &MonitorSpec, now_ms: u64, config: &Config) -> bool {
        let everyone = spec
            .nodes
            .iter()
            .all(|p| self.reports.contains_key(&p.node));
        everyone || now_ms.saturating_sub(self.started_ms) >= config.failure_timeout_ms
    }

    /// The rebuilt state (see `pgfleet_ha::rebuild`).
    pub fn build(
        &self,
        spec: &MonitorSpec,
        now_ms: u64,
        config: &Config,
    ) -> (ClusterState, Vec<Action>) {
        let nodes: Vec<SpecNode> = spec
            .nodes
            .iter()
            .map(|p| SpecNode {
                name: p.node.clone(),
                priority: p.priority,
                maintenance: p.maintenance,
            })
            .collect();
        let reports: Vec<RebuildReport> = self.reports.values().cloned().collect();
        let spec_primary = Some(spec.initial_primary.as_str()).filter(|p| !p.is_empty());
        pgfleet_ha::rebuild(&reports, &nodes, spec_primary, spec.epoch, now_ms, config)
    }
}

/// Whether a saved state can be resumed by a monitor of `epoch`: it must
/// be of that epoch (an older epoch's file is a retired monitor's).
pub fn resumable(saved: &ClusterState, epoch: u64) -> bool {
    epoch == 0 || saved.generation >= pgfleet_ha::generation_floor(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgfleet_core::protocol::PeerSpec;
    use pgfleet_core::Desired;
    use pgfleet_ha::NodeState;

    fn spec(epoch: u64) -> MonitorSpec {
        let peer = |node: &str| PeerSpec {
            node: node.into(),
            address: "127.0.0.1".into(),
            port: 5432,
            agent_port: 7071,
            priority: 50,
            maintenance: false,
        };
        MonitorSpec {
            db: "db".into(),
            node: "db-monitor-2".into(),
            desired: Desired::Running,
            nodes: vec![peer("db"), peer("r1")],
            initial_primary: "db".into(),
            superuser_password: String::new(),
            monitor_token: String::new(),
            clients: vec![],
            pg_tls: None,
            generation: 3,
            epoch,
        }
    }

    fn report(
        node: &str,
        state: NodeState,
        generation: u64,
    ) -> (KeeperReport, pgfleet_ha::KeeperReport) {
        let held = crate::keeper::Assignment {
            state,
            generation,
            primary: None,
            sync_standbys: vec![],
            sync_quorum: 0,
        };
        let wire = KeeperReport {
            node: node.into(),
            reported: crate::keeper::state_name(state),
            generation_seen: generation,
            lsn: 1,
            timeline: 1,
            pg_running: true,
            is_in_recovery: !state.is_writable(),
            wal_receiver_streaming: false,
            upstream_silent_ms: None,
            streaming_standbys: vec![],
            held: Some(held),
        };
        let facts = pgfleet_ha::KeeperReport {
            node: node.into(),
            reported: state,
            generation_seen: generation,
            lsn: 1,
            timeline: 1,
            pg_running: true,
            is_in_recovery: !state.is_writable(),
            wal_receiver_streaming: false,
            upstream_silent_ms: None,
            streaming_standbys: vec![],
            now_ms: 100,
        };
        (wire, facts)
    }

    /// Collection ends when every data node reported, or after the failure
    /// timeout; reports of nodes the spec does not list are left out; the
    /// built state continues above the epoch's floor.
    #[test]
    fn collection_ends_with_every_node_or_the_timeout() {
        let spec = spec(1);
        let config = Config::default();
        let mut collecting = Collecting::new(100);
        let (wire, facts) = report("stranger", NodeState::Primary, 40);
        collecting.record(&spec, &wire, facts);
        assert!(collecting.reports.is_empty());
        let (wire, facts) = report("db", NodeState::Primary, 7);
        collecting.record(&spec, &wire, facts);
        assert!(!collecting.complete(&spec, 200, &config));
        assert!(collecting.complete(&spec, 100 + config.failure_timeout_ms, &config));
        let (wire, facts) = report("r1", NodeState::Secondary, 6);
        collecting.record(&spec, &wire, facts);
        assert!(collecting.complete(&spec, 200, &config));
        let (state, _) = collecting.build(&spec, 200, &config);
        assert_eq!(state.primary.as_deref(), Some("db"));
        assert!(state.generation >= pgfleet_ha::generation_floor(1));
    }

    /// A state file of an older epoch (a retired monitor's) is not resumed.
    #[test]
    fn only_a_state_of_the_monitors_epoch_is_resumed() {
        let old = ClusterState {
            generation: 12,
            ..ClusterState::default()
        };
        assert!(resumable(&old, 0));
        assert!(!resumable(&old, 1));
        let current = ClusterState {
            generation: pgfleet_ha::generation_floor(1) + 3,
            ..ClusterState::default()
        };
        assert!(resumable(&current, 1));
        assert!(!resumable(&current, 2));
    }
}
