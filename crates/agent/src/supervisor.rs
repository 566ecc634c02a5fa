//! The agent's actors: one per instance (`instance`), one per monitor
//! (`monitor`). The heartbeat hands them their new specs ([`Supervisor::apply_intent`])
//! and collects their observations; at shutdown they stop their servers.
//! Sits above the actors (which only know the lower `runtime`), so no
//! module below it reaches back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRef;
use pgfleet_core::protocol::{InstanceObserved, InstanceSpec, MonitorObserved, MonitorSpec};
use tokio::sync::watch;

use crate::monitor::MonitorHandle;
use crate::runtime::AgentRuntime;

/// The runtime and the monitors running on it. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    pub runtime: AgentRuntime,
    pub monitors: Arc<Mutex<HashMap<String, MonitorHandle>>>,
}

impl FromRef<Supervisor> for AgentRuntime {
    fn from_ref(supervisor: &Supervisor) -> AgentRuntime {
        supervisor.runtime.clone()
    }
}

impl Supervisor {
    pub fn new(runtime: AgentRuntime) -> Supervisor {
        Supervisor {
            runtime,
            monitors: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Hands new specs to the actors, starting actors for new instances.
    pub fn apply_intent(&self, instances: Vec<InstanceSpec>, monitors: Vec<MonitorSpec>) {
        {
            let mut running = self.runtime.instances.lock().expect("instances lock");
            for spec in instances {
                let key = pgfleet_core::protocol::instance_key(&spec.db, &spec.node);
                match running.get(&key) {
                    Some(handle) => {
                        update_spec(&handle.spec, &spec);
                    }
                    None => {
                        let handle = crate::instance::spawn(self.runtime.clone(), spec.clone());
                        running.insert(key, handle);
                    }
                }
            }
        }
        let mut running = self.monitors.lock().expect("monitors lock");
        for spec in monitors {
            // A monitor that was deleted here and is wanted again starts afresh;
            // so does one of a new epoch (a replacement placed where a
            // replaced monitor of the same database still ran).
            let wanted = spec.desired != pgfleet_core::Desired::Deleted;
            let finished = running.get(&spec.db).is_some_and(|h| h.task.is_finished());
            let new_epoch = running
                .get(&spec.db)
                .is_some_and(|h| h.spec.borrow().epoch != spec.epoch);
            if wanted && (finished || new_epoch) {
                if let Some(old) = running.remove(&spec.db) {
                    old.monitor.retire();
                    old.task.abort();
                }
            }
            match running.get(&spec.db) {
                Some(handle) => {
                    update_spec(&handle.spec, &spec);
                }
                None => {
                    let handle = crate::monitor::spawn(self.runtime.clone(), spec.clone());
                    running.insert(spec.db.clone(), handle);
                }
            }
        }
    }

    pub fn observed_instances(&self) -> Vec<InstanceObserved> {
        let running = self.runtime.instances.lock().expect("instances lock");
        running
            .values()
            .map(|h| h.observed.lock().expect("observed lock").clone())
            .collect()
    }

    pub fn observed_monitors(&self) -> Vec<MonitorObserved> {
        let running = self.monitors.lock().expect("monitors lock");
        running
            .values()
            .filter_map(|h| h.monitor.observed())
            .collect()
    }

    /// Stops every actor (and so every PostgreSQL server), cleanly.
    pub async fn shutdown(&self) {
        self.runtime.stopping.cancel();
        let instance_tasks: Vec<_> = self
            .runtime
            .instances
            .lock()
            .expect("instances lock")
            .drain()
            .map(|(_, h)| h.task)
            .collect();
        let monitor_tasks: Vec<_> = self
            .monitors
            .lock()
            .expect("monitors lock")
            .drain()
            .map(|(_, h)| h.task)
            .collect();
        for task in instance_tasks.into_iter().chain(monitor_tasks) {
            let _ = task.await;
        }
    }
}

/// Hands `spec` to an actor, waking it only when something changed.
fn update_spec<T: PartialEq + Clone>(sender: &watch::Sender<T>, spec: &T) {
    sender.send_if_modified(|current| {
        if current != spec {
            *current = spec.clone();
            true
        } else {
            false
        }
    });
}
