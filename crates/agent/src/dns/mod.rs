//! The agent's authoritative DNS server for the zone, on `<address>:<dns
//! port>` (UDP and TCP, the `pgfleet-dns` server the control plane runs), so
//! `primary.<db>.<zone>` resolves, and follows failovers, while the control
//! plane is down.
//!
//! What it serves: the control plane's last zone snapshot (from the
//! heartbeat answer) merged with the primary changes this agent applied
//! itself since ([`merge`]); changes come from the database's monitor host
//! (`dns_push`: `POST /dns/primary-changed` on the agent endpoint, and the
//! monitor's own host directly). Both, and the SOA serial, are saved in
//! `DATA_DIR/dns/zone.json` (written atomically) so a restarted agent
//! answers the same while the control plane is down. The serial only
//! increases: `max(previous + 1, unix seconds)` at every change.

pub mod merge;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pgfleet_core::errors::error_chain;
use pgfleet_core::protocol::PrimaryChanged;
use pgfleet_core::zone::ZoneSnapshot;
use pgfleet_dns::{ZoneHandle, ZoneRecords};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use merge::{LocalChanges, LocalPrimary, Refusal};

/// What the agent serves from, as saved in `DATA_DIR/dns/zone.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub snapshot: Option<ZoneSnapshot>,
    /// Changes applied here that the snapshot does not show yet.
    #[serde(default)]
    pub local: LocalChanges,
    /// The SOA serial of the records served.
    #[serde(default)]
    pub serial: u64,
}

struct Served {
    zone: ZoneHandle,
    /// Stops this zone's listeners (when the zone's name or TTL changes).
    cancel: CancellationToken,
}

pub struct AgentDns {
    address: String,
    port: u16,
    path: PathBuf,
    saved: Mutex<Saved>,
    served: Mutex<Option<Served>>,
    stopping: CancellationToken,
    /// The newest generation this host's monitor announced per database: a
    /// push of an older one is superseded.
    announced: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl AgentDns {
    /// Reads the saved zone (none, or unreadable: starts empty and waits for
    /// the control plane's).
    pub fn load(config: &AgentConfig, stopping: CancellationToken) -> AgentDns {
        let path = config.data_dir.join("dns").join("zone.json");
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "cannot read the saved zone; waiting for the control plane's");
                Saved::default()
            }),
            Err(_) => Saved::default(),
        };
        AgentDns {
            address: config.address.clone(),
            port: config.dns_port,
            path,
            saved: Mutex::new(saved),
            served: Mutex::new(None),
            stopping,
            announced: Mutex::new(Default::default()),
        }
    }

    /// Serves the saved zone, if any (at start, before the control plane
    /// answers).
    pub fn start(&self) {
        let mut saved = self.saved.lock().expect("dns lock");
        if saved.snapshot.is_some() {
            tracing::info!(serial = saved.serial, "agent DNS serves its saved zone");
            self.install(&mut saved);
        }
    }

    /// The digest of the control plane's snapshot held (empty: none).
    pub fn digest(&self) -> String {
        let saved = self.saved.lock().expect("dns lock");
        saved
            .snapshot
            .as_ref()
            .map(|s| s.digest.clone())
            .unwrap_or_default()
    }

    /// The primary changes applied here that the snapshot does not show yet.
    pub fn local_changes(&self) -> LocalChanges {
        self.saved.lock().expect("dns lock").local.clone()
    }

    pub fn snapshot(&self) -> Option<ZoneSnapshot> {
        self.saved.lock().expect("dns lock").snapshot.clone()
    }

    /// The records served now and their serial (for tests and logs).
    pub fn served(&self) -> Option<ZoneRecords> {
        let served = self.served.lock().expect("dns lock");
        served.as_ref().map(|s| s.zone.snapshot())
    }

    /// A new snapshot from the control plane: merged with the local changes
    /// still ahead of it and served.
    pub fn apply_snapshot(&self, snapshot: ZoneSnapshot) {
        let mut saved = self.saved.lock().expect("dns lock");
        if let Some(held) = saved.snapshot.take() {
            merge::keep_newer_primaries(&held, &snapshot, &mut saved.local);
        }
        saved.snapshot = Some(snapshot);
        self.install(&mut saved);
    }

    /// A primary change from the client whose certificate has `fingerprint`
    /// (this host's own when its monitor made it): applied if [`merge::accept`]
    /// says so.
    pub fn apply_change(&self, change: &PrimaryChanged, fingerprint: &str) -> Result<(), Refusal> {
        let mut saved = self.saved.lock().expect("dns lock");
        merge::accept(saved.snapshot.as_ref(), &saved.local, change, fingerprint)?;
        saved.local.insert(
            change.db.clone(),
            LocalPrimary {
                generation: change.generation,
                primary: change.new_primary.clone(),
            },
        );
        self.install(&mut saved);
        Ok(())
    }

    /// Records that this host's monitor announced `generation` for `db`.
    pub(crate) fn announce(&self, db: &str, generation: u64) {
        let mut announced = self.announced.lock().expect("dns lock");
        let newest = announced.entry(db.to_string()).or_insert(0);
        *newest = (*newest).max(generation);
    }

    pub(crate) fn superseded(&self, db: &str, generation: u64) -> bool {
        let announced = self.announced.lock().expect("dns lock");
        announced.get(db).is_some_and(|newest| *newest > generation)
    }

    /// Serves `saved` (merged), under a new serial when the records
    /// changed, and saves it.
    fn install(&self, saved: &mut Saved) {
        let Some(snapshot) = saved.snapshot.as_ref() else {
            return;
        };
        let (records, ahead) = merge::merge(snapshot, &saved.local);
        saved.local = ahead;
        let zone = self.zone_for(snapshot);
        let current = zone.snapshot();
        // A fresh handle (generation 0, after a start or a zone change) or
        // new records: a new serial.
        if current.a != records || current.generation == 0 {
            saved.serial =
                pgfleet_dns::zone::next_serial(saved.serial, pgfleet_dns::zone::unix_secs());
            zone.replace(ZoneRecords {
                generation: saved.serial,
                a: records,
            });
        }
        if let Err(error) = self.save(saved) {
            tracing::warn!(path = %self.path.display(), %error, "cannot save the agent's zone");
        }
    }

    fn save(&self, saved: &Saved) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        pgfleet_tls::write_durable(&self.path, &serde_json::to_vec(saved)?)
    }

    /// The zone handle for the snapshot's zone, (re)starting the listeners
    /// when the zone is new or its name or TTL changed.
    fn zone_for(&self, snapshot: &ZoneSnapshot) -> ZoneHandle {
        let mut served = self.served.lock().expect("dns lock");
        if let Some(current) = served.as_ref() {
            let same = current.zone.zone() == pgfleet_dns::zone::normalize(&snapshot.zone)
                && current.zone.ttl() == snapshot.ttl_secs;
            if same {
                return current.zone.clone();
            }
            current.cancel.cancel();
        }
        let zone = ZoneHandle::try_new(&snapshot.zone, snapshot.ttl_secs).unwrap_or_else(|error| {
            tracing::warn!(zone = %snapshot.zone, error = %error_chain(&error), "the control plane's zone name is invalid here; serving nothing");
            ZoneHandle::new("invalid.pgfleet.internal", snapshot.ttl_secs)
        });
        let cancel = self.stopping.child_token();
        if self.port != 0 {
            match self.address.parse::<Ipv4Addr>() {
                Ok(ip) => {
                    let addr = SocketAddr::new(ip.into(), self.port);
                    tokio::spawn(serve(addr, zone.clone(), cancel.clone()));
                }
                Err(error) => tracing::warn!(address = %self.address, %error, "no DNS server"),
            }
        }
        *served = Some(Served {
            zone: zone.clone(),
            cancel,
        });
        zone
    }
}

/// Binds and serves until cancelled; a port that is taken is tried again
/// every second (logged once).
async fn serve(addr: SocketAddr, zone: ZoneHandle, cancel: CancellationToken) {
    let mut failures = 0u32;
    loop {
        match pgfleet_dns::bind(addr, zone.clone()).await {
            Ok(server) => {
                tracing::info!(%addr, zone = %zone.zone(), "agent DNS server answers for the zone");
                server.run(cancel).await;
                return;
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%addr, error = %error_chain(&error), "cannot bind the agent's DNS server; retrying every second");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests;
