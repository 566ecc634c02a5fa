//! The monitor of one HA database, run by the agent of the host it was
//! placed on. (Driver of the pure state machine in `pgfleet-ha`.)

use std::sync::{Arc, Mutex};

use pgfleet_core::protocol::{MonitorObserved, MonitorSpec};
use tokio::sync::watch;

use crate::keeper::{Assignment, KeeperReport};
use crate::runtime::{AgentRuntime, MonitorHandle};

pub struct MonitorShared {
    pub db: String,
    pub node: String,
    pub observed: Mutex<Option<MonitorObserved>>,
}

impl MonitorShared {
    pub fn observed(&self) -> Option<MonitorObserved> {
        self.observed.lock().expect("monitor lock").clone()
    }

    pub async fn keeper_report(&self, _report: KeeperReport) -> Option<Assignment> {
        None
    }
}

pub fn spawn(runtime: AgentRuntime, spec: MonitorSpec) -> MonitorHandle {
    let (tx, _rx) = watch::channel(spec.clone());
    let monitor = Arc::new(MonitorShared { db: spec.db.clone(), node: spec.node.clone(), observed: Mutex::new(None) });
    let _ = runtime;
    let task = tokio::spawn(async {});
    MonitorHandle { spec: tx, monitor, task }
}
