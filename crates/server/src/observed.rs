//! What agents last reported, kept in memory (observation, not intent).
//! After a control-plane restart every host is `unknown` until it beats.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgfleet_core::protocol::{HeartbeatRequest, InstanceObserved, MonitorObserved};
use pgfleet_core::HostStatus;

#[derive(Debug, Clone)]
pub struct HostObservation {
    pub last_seen: Instant,
    pub last_seen_ms: i64,
    pub pg_version: u32,
    /// Port of the host agent's DNS server (0: off or not reported).
    pub dns_port: u16,
    pub instances: HashMap<String, InstanceObserved>,
    pub monitors: HashMap<String, MonitorObserved>,
}

#[derive(Debug, Default)]
pub struct Observed {
    pub hosts: HashMap<String, HostObservation>,
    /// When a host was last answered with a monitor spec that says
    /// `deleted`, by (host, database): a retired monitor is confirmed gone
    /// only by a heartbeat after that.
    pub monitor_deletions_sent: HashMap<(String, String), Instant>,
}

impl Observed {
    pub fn record(&mut self, beat: &HeartbeatRequest, now_ms: i64) {
        let mut instances = HashMap::new();
        for instance in &beat.instances {
            instances.insert(
                pgfleet_core::protocol::instance_key(&instance.db, &instance.node),
                instance.clone(),
            );
        }
        let mut monitors = HashMap::new();
        for monitor in &beat.monitors {
            monitors.insert(monitor.db.clone(), monitor.clone());
        }
        self.hosts.insert(
            beat.host.name.clone(),
            HostObservation {
                last_seen: Instant::now(),
                last_seen_ms: now_ms,
                pg_version: beat.pg_version,
                dns_port: beat.host.dns_port,
                instances,
                monitors,
            },
        );
    }

    pub fn host_status(&self, host: &str, timeout: Duration) -> HostStatus {
        match self.hosts.get(host) {
            None => HostStatus::Unknown,
            Some(obs) if obs.last_seen.elapsed() <= timeout => HostStatus::Connected,
            Some(_) => HostStatus::Lost,
        }
    }

    /// The last instance report of `node` of `db` on `host`, however old:
    /// callers that need a live one check `host_status` too. (Node names
    /// are unique only within a database.)
    pub fn instance(&self, host: &str, db: &str, node: &str) -> Option<&InstanceObserved> {
        self.hosts.get(host).and_then(|h| {
            h.instances
                .get(&pgfleet_core::protocol::instance_key(db, node))
        })
    }

    /// The host was told to delete its monitor of `db`, has beaten since,
    /// and reports no monitor of `db`.
    pub fn monitor_deletion_confirmed(&self, host: &str, db: &str) -> bool {
        let key = (host.to_string(), db.to_string());
        let Some(sent) = self.monitor_deletions_sent.get(&key) else {
            return false;
        };
        self.hosts
            .get(host)
            .is_some_and(|h| h.last_seen > *sent && !h.monitors.contains_key(db))
    }

    pub fn monitor(&self, host: &str, db: &str) -> Option<&MonitorObserved> {
        self.hosts.get(host).and_then(|h| h.monitors.get(db))
    }
}
