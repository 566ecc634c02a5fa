//! Publishing the zone's A records to an external authoritative server
//! (`--dns-update rfc2136://SERVER:PORT/ZONE --dns-update-key FILE`) by
//! RFC 2136 dynamic updates signed with TSIG.
//!
//! `dns_sync::publish` offers every view it installs to a [`Link`] (a watch
//! channel: the newest view replaces an unsent older one, never the other
//! way round) and returns; it never waits for the external server. One loop,
//! [`run`], sends what changed since the last confirmed publish: per changed
//! name, its A RRset deleted and the new addresses added, all in one message
//! (split when large). On failure it retries with backoff, then (and after a
//! restart, and every [`FULL_RESYNC_INTERVAL`]) replaces every name it owns.
//! The names it may have published are remembered in the store's meta table
//! ([`META_KEY`]) before each send, so names deleted while the control plane
//! was down are removed by the resync after its restart.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pgfleet_core::settings::SettingError;
use pgfleet_dns::update::{send_update, update_messages, NameChange, TsigKey, UpdateError};
use pgfleet_dns::ZoneRecords;
use pgfleet_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;

/// Meta key of the names this control plane may have published.
pub const META_KEY: &str = "dns_update_published";
/// First retry delay after a failed update; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one exchange with the server may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Every name we own is replaced this often, repairing hand edits there.
pub const FULL_RESYNC_INTERVAL: Duration = Duration::from_secs(600);

/// Where to publish: the server, the zone it holds, the key.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: SocketAddr,
    /// The zone in the update's zone section: the fleet's zone or a parent.
    pub zone: String,
    pub key: TsigKey,
}

impl Target {
    /// The target of `--dns-update`/`--dns-update-key`, if set; the error
    /// names the flag at fault. Reads (and checks the mode of) the key file.
    pub fn from_config(config: &ServerConfig) -> Result<Option<Target>, SettingError> {
        let (url, key_file) = match (&config.dns_update, &config.dns_update_key) {
            (None, None) => return Ok(None),
            (Some(url), Some(key_file)) => (url, key_file),
            (Some(url), None) => {
                return Err(SettingError::new(
                    "--dns-update",
                    url,
                    "needs --dns-update-key FILE (a TSIG key in BIND's format)",
                ))
            }
            (None, Some(key_file)) => {
                return Err(SettingError::new(
                    "--dns-update-key",
                    key_file.display(),
                    "only used with --dns-update",
                ))
            }
        };
        let (server, zone) = parse_url(url, &config.zone)
            .map_err(|reason| SettingError::new("--dns-update", url, reason))?;
        let key = TsigKey::load(key_file).map_err(|error| {
            SettingError::new(
                "--dns-update-key",
                key_file.display(),
                pgfleet_core::errors::error_chain(&error),
            )
        })?;
        Ok(Some(Target { server, zone, key }))
    }

    /// `rfc2136://SERVER:PORT/ZONE`
    pub fn url(&self) -> String {
        format!("rfc2136://{}/{}", self.server, self.zone)
    }
}

/// Parses `rfc2136://ADDRESS[:PORT]/ZONE` (port 53 by default). ZONE must be
/// the fleet's zone or a parent of it.
pub fn parse_url(url: &str, fleet_zone: &str) -> Result<(SocketAddr, String), String> {
    let Some(rest) = url.strip_prefix("rfc2136://") else {
        return Err("expected rfc2136://SERVER:PORT/ZONE".into());
    };
    let Some((authority, zone)) = rest.split_once('/') else {
        return Err("no zone: expected rfc2136://SERVER:PORT/ZONE".into());
    };
    let server = match authority.parse::<SocketAddr>() {
        Ok(server) => server,
        Err(_) => match authority.parse::<IpAddr>() {
            Ok(address) => SocketAddr::new(address, 53),
            Err(_) => {
                return Err(format!(
                    "server {authority:?} is not an IP address with an optional port (names are not resolved)"
                ))
            }
        },
    };
    let zone = pgfleet_dns::zone::normalize(zone);
    let fleet_zone = pgfleet_dns::zone::normalize(fleet_zone);
    if zone.is_empty() {
        return Err("no zone: expected rfc2136://SERVER:PORT/ZONE".into());
    }
    if zone != fleet_zone && !fleet_zone.ends_with(&format!(".{zone}")) {
        return Err(format!(
            "zone {zone} is neither the fleet's zone ({fleet_zone}) nor a parent of it"
        ));
    }
    Ok((server, zone))
}

/// The outcome of the last publish, as `GET /api/v1/dns` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsUpdateState {
    /// Nothing sent yet since the start.
    Pending,
    Ok,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DnsUpdateStatus {
    /// `rfc2136://SERVER:PORT/ZONE`
    pub target: String,
    /// Name of the TSIG key (never its secret).
    pub key_name: String,
    pub state: DnsUpdateState,
    /// Why the last attempt failed (state `error`), with the server's RCODE.
    pub error: Option<String>,
    /// When the last attempt ended (RFC 3339).
    pub at: Option<String>,
    /// Zone serial (generation) of the view last attempted.
    pub serial: Option<u64>,
    /// Zone serial of the view the server last confirmed.
    pub published_serial: Option<u64>,
    /// Names whose A records the server carries from us.
    pub names: usize,
    /// Failed attempts since the last success.
    pub failures: u32,
}

/// Between `dns_sync::publish` (offers views) and [`run`] (sends them).
pub struct Link {
    views: watch::Sender<Option<Arc<ZoneRecords>>>,
    status: Mutex<DnsUpdateStatus>,
}

impl Link {
    pub fn new(target: &Target) -> Link {
        Link {
            views: watch::Sender::new(None),
            status: Mutex::new(DnsUpdateStatus {
                target: target.url(),
                key_name: target.key.name().to_string(),
                state: DnsUpdateState::Pending,
                error: None,
                at: None,
                serial: None,
                published_serial: None,
                names: 0,
                failures: 0,
            }),
        }
    }

    /// Hands `records` to the loop; never waits.
    pub fn offer(&self, records: ZoneRecords) {
        self.views.send_replace(Some(Arc::new(records)));
    }

    pub fn status(&self) -> DnsUpdateStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, update: impl FnOnce(&mut DnsUpdateStatus)) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        update(&mut status);
        status.at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .ok();
    }
}

/// Names and addresses, addresses sorted.
pub type Owned = BTreeMap<String, Vec<Ipv4Addr>>;

/// The records of `view` we publish: names under `fleet_zone`.
pub fn desired(view: &ZoneRecords, fleet_zone: &str) -> Owned {
    let suffix = format!(".{fleet_zone}");
    let mut records = Owned::new();
    for (name, addresses) in &view.a {
        if !name.ends_with(&suffix) {
            continue;
        }
        let mut sorted = addresses.clone();
        sorted.sort();
        sorted.dedup();
        records.insert(name.clone(), sorted);
    }
    records
}

/// What to send to make the server hold `desired` where it holds `owned`:
/// the names that differ, or with `full` every name of either.
pub fn changes(owned: &Owned, desired: &Owned, full: bool) -> Vec<NameChange> {
    let names: BTreeSet<&String> = owned.keys().chain(desired.keys()).collect();
    let mut changes = Vec::new();
    for name in names {
        let wanted = desired.get(name);
        if !full && owned.get(name) == wanted {
            continue;
        }
        changes.push(NameChange {
            name: name.clone(),
            addresses: wanted.cloned().unwrap_or_default(),
        });
    }
    changes
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("remembering the names to publish in the store failed")]
    Store(#[source] pgfleet_store::StoreError),
    #[error("building the update failed")]
    Build(#[source] pgfleet_dns::DnsError),
    #[error("update {index} of {count} to {server} was not applied")]
    Update {
        index: usize,
        count: usize,
        server: SocketAddr,
        #[source]
        source: UpdateError,
    },
}

/// The loop: sends each new view's changes until `cancel` fires.
pub async fn run(
    link: Arc<Link>,
    target: Target,
    fleet_zone: String,
    ttl: u32,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
) {
    let mut views = link.views.subscribe();
    let mut owned = loop {
        match load_owned(store.as_ref()).await {
            Ok(owned) => break owned,
            Err(error) => {
                tracing::warn!(error = %pgfleet_core::errors::error_chain(&error), "dns update: reading the published names failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(MIN_BACKOFF) => {}
                }
            }
        }
    };
    link.status
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .names = owned.len();
    // The first publish after a start replaces every name we own.
    let mut in_sync = false;
    let mut backoff = MIN_BACKOFF;
    let mut next_full_resync = tokio::time::Instant::now() + FULL_RESYNC_INTERVAL;
    loop {
        if in_sync || views.borrow().is_none() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = views.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(next_full_resync) => in_sync = false,
            }
        }
        let Some(view) = views.borrow_and_update().clone() else {
            continue;
        };
        let full = !in_sync;
        let wanted = desired(&view, &fleet_zone);
        let to_send = changes(&owned, &wanted, full);
        if full {
            next_full_resync = tokio::time::Instant::now() + FULL_RESYNC_INTERVAL;
        }
        if to_send.is_empty() {
            in_sync = true;
            continue;
        }
        let serial = view.generation;
        // Shutdown does not wait for a slow server.
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = publish(&target, store.as_ref(), &owned, &wanted, &to_send, ttl) => outcome,
        };
        match outcome {
            Ok(()) => {
                tracing::info!(server = %target.server, zone = %target.zone, serial, names = to_send.len(), full, "dns update published");
                owned = wanted;
                in_sync = true;
                backoff = MIN_BACKOFF;
                link.record(|status| {
                    status.state = DnsUpdateState::Ok;
                    status.error = None;
                    status.serial = Some(serial);
                    status.published_serial = Some(serial);
                    status.names = owned.len();
                    status.failures = 0;
                });
            }
            Err(error) => {
                let cause = pgfleet_core::errors::error_chain(&error);
                tracing::warn!(server = %target.server, zone = %target.zone, key = %target.key.name(), serial, error = %cause, retry_in_ms = backoff.as_millis() as u64, "dns update failed");
                // The server's state is unknown now: the next attempt replaces everything.
                in_sync = false;
                link.record(|status| {
                    status.state = DnsUpdateState::Error;
                    status.error = Some(cause);
                    status.serial = Some(serial);
                    status.failures += 1;
                });
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Remembers every name we may publish, sends `to_send`, then remembers
/// `wanted` only.
async fn publish(
    target: &Target,
    store: &dyn Store,
    owned: &Owned,
    wanted: &Owned,
    to_send: &[NameChange],
    ttl: u32,
) -> Result<(), PublishError> {
    if wanted.keys().any(|name| !owned.contains_key(name)) {
        let mut may_publish = owned.clone();
        for (name, addresses) in wanted {
            may_publish
                .entry(name.clone())
                .or_insert_with(|| addresses.clone());
        }
        save_owned(store, &may_publish)
            .await
            .map_err(PublishError::Store)?;
    }
    let messages = update_messages(&target.zone, to_send, ttl).map_err(PublishError::Build)?;
    let count = messages.len();
    for (index, message) in messages.into_iter().enumerate() {
        send_update(target.server, message, &target.key, EXCHANGE_TIMEOUT)
            .await
            .map_err(|source| PublishError::Update {
                index: index + 1,
                count,
                server: target.server,
                source,
            })?;
    }
    if let Err(error) = save_owned(store, wanted).await {
        // A superset is remembered: the next resync deletes a few names twice.
        tracing::warn!(error = %pgfleet_core::errors::error_chain(&error), "dns update: remembering the published names failed");
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Remembered {
    names: Owned,
}

async fn load_owned(store: &dyn Store) -> Result<Owned, pgfleet_store::StoreError> {
    let Some(text) = store.get_meta(META_KEY).await? else {
        return Ok(Owned::new());
    };
    match serde_json::from_str::<Remembered>(&text) {
        Ok(remembered) => Ok(remembered.names),
        Err(error) => {
            tracing::warn!(%error, "dns update: the remembered names do not parse; starting from none");
            Ok(Owned::new())
        }
    }
}

async fn save_owned(store: &dyn Store, names: &Owned) -> Result<(), pgfleet_store::StoreError> {
    let text = serde_json::to_string(&Remembered {
        names: names.clone(),
    })
    .expect("names serialize");
    store.put_meta(META_KEY, &text).await
}

#[cfg(test)]
mod tests;
