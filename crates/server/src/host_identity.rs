//! Host identities. An agent joins with a one-time, expiring join token
//! (created by an admin, or by `pgfleet up` for its own hosts) and receives a
//! credential bound to its host name; heartbeats must present it and may
//! only speak for that host. Removing a host deletes its credential: it
//! cannot come back with its old identity. Only SHA-256 hashes are stored.
//!
//! A join binds the host's address (reserved at once, so a second join with
//! it is refused before the first host ever beats) and, when the join names
//! it, its failure domain; otherwise the first heartbeat binds them. A
//! heartbeat that differs is refused. A host that joined but never beat is
//! listed as `joined` and forgotten after `--joined-host-expiry-secs`.

use std::collections::BTreeMap;
use std::sync::RwLock;

use pgfleet_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

const META_KEY: &str = "host_identities";

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct JoinToken {
    sha256: String,
    expires_at_ms: i64,
    used: bool,
}

fn address_taken(address: &str, owner: &str) -> ApiError {
    ApiError::conflict(format!("address {address} belongs to host {owner:?}"))
}

/// The certificate the CA last issued to a host: the only one accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    pub fingerprint: String,
    pub address: String,
    #[serde(default)]
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

impl CertRecord {
    /// Less than a third of its lifetime left: the agent should renew.
    pub fn due_for_renewal(&self, now_ms: i64) -> bool {
        let lifetime = self.expires_at_ms - self.issued_at_ms;
        self.expires_at_ms - now_ms < lifetime / 3
    }
}

/// How a presented certificate relates to a host's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Current,
    /// The renewed certificate, not used before.
    Renewed,
    Refused,
}

/// What a join (or, for what it left open, the first heartbeat) bound to a
/// host: a heartbeat must say the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub failure_domain: Option<String>,
    /// When the host joined (for hosts that joined before bindings existed:
    /// when this control plane first loaded them).
    pub joined_at_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    /// host name → hash of its credential
    credentials: BTreeMap<String, String>,
    /// host name → its current certificate
    #[serde(default)]
    certificates: BTreeMap<String, CertRecord>,
    /// host name → a renewed certificate issued but not yet used: it
    /// becomes the current one (and the old one is revoked) with the first
    /// request that presents it. Until then both work, so a renewal whose
    /// answer was lost leaves the host with a working certificate.
    #[serde(default)]
    renewals: BTreeMap<String, CertRecord>,
    join_tokens: Vec<JoinToken>,
    /// host name → what its join bound
    #[serde(default)]
    bindings: BTreeMap<String, Binding>,
}

impl Persisted {
    /// The host (other than `host`) whose binding holds `address`.
    fn address_owner(&self, address: &str, host: &str) -> Option<String> {
        self.bindings
            .iter()
            .find(|(name, b)| b.address.as_deref() == Some(address) && name.as_str() != host)
            .map(|(name, _)| name.clone())
    }
}

pub struct HostIdentities {
    data: RwLock<Persisted>,
    /// Serialises change + store write, so the stored copy is never older
    /// than the last change (two joins at once must both be kept).
    writer: tokio::sync::Mutex<()>,
}

impl HostIdentities {
    pub async fn load(store: &dyn Store) -> anyhow::Result<HostIdentities> {
        let mut data: Persisted = match store.get_meta(META_KEY).await? {
            Some(text) => serde_json::from_str(&text)?,
            None => Persisted::default(),
        };
        // Hosts that joined before bindings existed: their address and
        // failure domain are bound by their stored record or next beat.
        let now = pgfleet_core::time::now_ms();
        let names: Vec<String> = data.credentials.keys().cloned().collect();
        for name in names {
            data.bindings.entry(name).or_insert(Binding {
                address: None,
                failure_domain: None,
                joined_at_ms: now,
            });
        }
        Ok(HostIdentities {
            data: RwLock::new(data),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    async fn save(&self, store: &dyn Store) -> Result<(), ApiError> {
        let text = serde_json::to_string(&*self.data.read().expect("identities lock"))
            .map_err(ApiError::internal)?;
        store.put_meta(META_KEY, &text).await?;
        Ok(())
    }

    /// A new one-time join token valid for `ttl_secs`.
    pub async fn create_join_token(
        &self,
        store: &dyn Store,
        ttl_secs: u64,
    ) -> Result<(String, i64), ApiError> {
        let _writer = self.writer.lock().await;
        let token = pgfleet_core::secrets::random_token(40);
        let expires_at_ms = pgfleet_core::time::now_ms() + (ttl_secs as i64) * 1000;
        {
            let mut data = self.data.write().expect("identities lock");
            let now = pgfleet_core::time::now_ms();
            data.join_tokens
                .retain(|t| !t.used && t.expires_at_ms > now);
            data.join_tokens.push(JoinToken {
                sha256: hash(&token),
                expires_at_ms,
                used: false,
            });
        }
        self.save(store).await?;
        Ok((token, expires_at_ms))
    }

    /// Spends a join token and returns a new credential for `host`, binding
    /// `address` and `failure_domain` to it. Refused (token not spent) when
    /// the address belongs to another joined host or to one of
    /// `stored_hosts`.
    pub async fn redeem(
        &self,
        store: &dyn Store,
        host: &str,
        join_token: &str,
        binding: Binding,
        stored_hosts: &[pgfleet_core::Host],
    ) -> Result<String, ApiError> {
        let _writer = self.writer.lock().await;
        let credential = pgfleet_core::secrets::random_token(48);
        {
            let mut data = self.data.write().expect("identities lock");
            let digest = hash(join_token);
            let now = pgfleet_core::time::now_ms();
            let Some(index) = data.join_tokens.iter().position(|t| t.sha256 == digest) else {
                return Err(ApiError::unauthorized());
            };
            let token = &data.join_tokens[index];
            if token.used || token.expires_at_ms <= now {
                return Err(ApiError::unauthorized());
            }
            // A join token makes a new host; it never takes over the name
            // (and so the databases) of a host that has joined. The token
            // is not spent by this refusal.
            if data.credentials.contains_key(host) {
                return Err(ApiError::conflict(format!(
                    "host {host:?} has already joined: remove it first (`pgfleet host remove {host}`) to join it again"
                )));
            }
            if let Some(address) = &binding.address {
                let stored = stored_hosts
                    .iter()
                    .find(|h| &h.address == address && h.name != host)
                    .map(|h| h.name.clone());
                if let Some(owner) = data.address_owner(address, host).or(stored) {
                    return Err(address_taken(address, &owner));
                }
            }
            data.join_tokens[index].used = true;
            data.credentials.insert(host.to_string(), hash(&credential));
            data.bindings.insert(host.to_string(), binding);
        }
        self.save(store).await?;
        Ok(credential)
    }

    /// The host a credential belongs to.
    pub fn verify(&self, credential: &str) -> Option<String> {
        let digest = hash(credential);
        let data = self.data.read().expect("identities lock");
        data.credentials
            .iter()
            .find(|(_, h)| **h == digest)
            .map(|(host, _)| host.clone())
    }

    /// Forgets `host`'s credential and certificate.
    pub async fn remove(&self, store: &dyn Store, host: &str) -> Result<(), ApiError> {
        let _writer = self.writer.lock().await;
        {
            let mut data = self.data.write().expect("identities lock");
            data.credentials.remove(host);
            data.certificates.remove(host);
            data.renewals.remove(host);
            data.bindings.remove(host);
        }
        self.save(store).await
    }

    /// What `host`'s join bound, if it has joined.
    pub fn binding(&self, host: &str) -> Option<Binding> {
        let data = self.data.read().expect("identities lock");
        data.bindings.get(host).cloned()
    }

    /// The joined host (other than `host`) that holds `address`.
    pub fn address_owner(&self, address: &str, host: &str) -> Option<String> {
        let data = self.data.read().expect("identities lock");
        data.address_owner(address, host)
    }

    /// Binds what `host`'s join left open (its first heartbeat): refused
    /// when another host holds the address.
    pub async fn bind(
        &self,
        store: &dyn Store,
        host: &str,
        address: &str,
        failure_domain: &str,
    ) -> Result<(), ApiError> {
        let _writer = self.writer.lock().await;
        {
            let mut data = self.data.write().expect("identities lock");
            if let Some(owner) = data.address_owner(address, host) {
                return Err(address_taken(address, &owner));
            }
            let Some(binding) = data.bindings.get_mut(host) else {
                return Err(ApiError::not_found("host", host));
            };
            binding.address.get_or_insert_with(|| address.to_string());
            binding
                .failure_domain
                .get_or_insert_with(|| failure_domain.to_string());
        }
        self.save(store).await
    }

    /// Hosts that joined but have no stored record (never beat), with
    /// their bindings, by name.
    pub fn joined_only(&self, stored_hosts: &[pgfleet_core::Host]) -> Vec<(String, Binding)> {
        let data = self.data.read().expect("identities lock");
        data.bindings
            .iter()
            .filter(|(name, _)| !stored_hosts.iter().any(|h| &h.name == *name))
            .map(|(name, binding)| (name.clone(), binding.clone()))
            .collect()
    }

    /// Forgets hosts that joined before `cutoff_ms` and never beat (no
    /// stored record): their credentials, certificates and addresses.
    /// Returns their names.
    pub async fn expire_unseen(
        &self,
        store: &dyn Store,
        stored_hosts: &[pgfleet_core::Host],
        cutoff_ms: i64,
    ) -> Result<Vec<String>, ApiError> {
        let _writer = self.writer.lock().await;
        let expired: Vec<String> = {
            let mut data = self.data.write().expect("identities lock");
            let expired: Vec<String> = data
                .bindings
                .iter()
                .filter(|(name, b)| {
                    b.joined_at_ms < cutoff_ms && !stored_hosts.iter().any(|h| &h.name == *name)
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in &expired {
                data.credentials.remove(name);
                data.certificates.remove(name);
                data.renewals.remove(name);
                data.bindings.remove(name);
            }
            expired
        };
        if !expired.is_empty() {
            self.save(store).await?;
        }
        Ok(expired)
    }

    /// Records `record` as `host`'s only valid certificate (the previous one
    /// and any pending renewal are revoked by that).
    pub async fn set_certificate(
        &self,
        store: &dyn Store,
        host: &str,
        record: CertRecord,
    ) -> Result<(), ApiError> {
        let _writer = self.writer.lock().await;
        {
            let mut data = self.data.write().expect("identities lock");
            data.renewals.remove(host);
            data.certificates.insert(host.to_string(), record);
        }
        self.save(store).await
    }

    /// Records `record` as `host`'s renewed certificate: valid beside the
    /// current one until it is first presented (`confirm_renewal`). A newer
    /// renewal replaces an unconfirmed one.
    pub async fn offer_renewal(
        &self,
        store: &dyn Store,
        host: &str,
        record: CertRecord,
    ) -> Result<(), ApiError> {
        let _writer = self.writer.lock().await;
        self.data
            .write()
            .expect("identities lock")
            .renewals
            .insert(host.to_string(), record);
        self.save(store).await
    }

    /// Whether `fingerprint` is `host`'s current or renewed certificate.
    pub fn admits(&self, host: &str, fingerprint: &str) -> Admission {
        let data = self.data.read().expect("identities lock");
        if data
            .certificates
            .get(host)
            .is_some_and(|c| c.fingerprint == fingerprint)
        {
            return Admission::Current;
        }
        if data
            .renewals
            .get(host)
            .is_some_and(|c| c.fingerprint == fingerprint)
        {
            return Admission::Renewed;
        }
        Admission::Refused
    }

    /// Whether `presented` is `host`'s certificate: the current one, or the
    /// renewed one, whose first use makes it current (and revokes the old).
    pub async fn accept_presented(
        &self,
        store: &dyn Store,
        host: &str,
        presented: Option<&str>,
    ) -> Result<bool, ApiError> {
        let Some(given) = presented else {
            return Ok(false);
        };
        match self.admits(host, given) {
            Admission::Current => Ok(true),
            Admission::Renewed => {
                self.confirm_renewal(store, host, given).await?;
                Ok(true)
            }
            Admission::Refused => Ok(false),
        }
    }

    /// The host presented its renewed certificate: it becomes the current
    /// one and the previous one is revoked.
    pub async fn confirm_renewal(
        &self,
        store: &dyn Store,
        host: &str,
        fingerprint: &str,
    ) -> Result<(), ApiError> {
        let _writer = self.writer.lock().await;
        {
            let mut data = self.data.write().expect("identities lock");
            if data
                .renewals
                .get(host)
                .is_none_or(|c| c.fingerprint != fingerprint)
            {
                return Ok(());
            }
            let renewed = data.renewals.remove(host).expect("checked above");
            data.certificates.insert(host.to_string(), renewed);
        }
        tracing::info!(
            host,
            "renewed host certificate in use; the previous one is revoked"
        );
        self.save(store).await
    }

    /// Every fingerprint `host` may present now (current, then renewed).
    pub fn fingerprints(&self, host: &str) -> Vec<String> {
        let data = self.data.read().expect("identities lock");
        [data.certificates.get(host), data.renewals.get(host)]
            .into_iter()
            .flatten()
            .map(|c| c.fingerprint.clone())
            .collect()
    }

    /// The certificate `host` must present, if it has one.
    pub fn certificate(&self, host: &str) -> Option<CertRecord> {
        let data = self.data.read().expect("identities lock");
        data.certificates.get(host).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fingerprint: &str) -> CertRecord {
        CertRecord {
            fingerprint: fingerprint.into(),
            address: "127.0.0.2".into(),
            issued_at_ms: 0,
            expires_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn a_renewal_replaces_the_certificate_only_once_it_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        let store = pgfleet_store::open(&url).await.unwrap();
        let identities = HostIdentities::load(store.as_ref()).await.unwrap();
        identities
            .set_certificate(store.as_ref(), "host-1", record("old"))
            .await
            .unwrap();
        identities
            .offer_renewal(store.as_ref(), "host-1", record("lost"))
            .await
            .unwrap();
        // The answer was lost; the host asks again with its current one.
        identities
            .offer_renewal(store.as_ref(), "host-1", record("new"))
            .await
            .unwrap();
        assert_eq!(identities.admits("host-1", "old"), Admission::Current);
        assert_eq!(identities.admits("host-1", "lost"), Admission::Refused);
        assert_eq!(identities.admits("host-1", "new"), Admission::Renewed);
        assert_eq!(identities.fingerprints("host-1"), ["old", "new"]);
        identities
            .confirm_renewal(store.as_ref(), "host-1", "new")
            .await
            .unwrap();
        assert_eq!(identities.admits("host-1", "new"), Admission::Current);
        assert_eq!(identities.admits("host-1", "old"), Admission::Refused);
        // Survives a restart of the control plane.
        let reloaded = HostIdentities::load(store.as_ref()).await.unwrap();
        assert_eq!(reloaded.fingerprints("host-1"), ["new"]);
    }
}
