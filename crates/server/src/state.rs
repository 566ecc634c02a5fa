//! Shared state of the control plane's loops and handlers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgfleet_core::{Database, HostStatus};
use pgfleet_store::Store;
use tokio::sync::Notify;

use crate::auth::Tokens;
use crate::config::ServerConfig;
use crate::observed::Observed;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub zone: pgfleet_dns::ZoneHandle,
    /// Serialises DNS publishes (`dns_sync::publish`).
    pub dns_publisher: crate::dns_sync::DnsPublisher,
    pub tokens: Tokens,
    /// Agents' identities (join tokens, host credentials).
    pub identities: crate::host_identity::HostIdentities,
    /// The fleet CA: API and PostgreSQL server certificates.
    pub ca: Arc<crate::tls::FleetCa>,
    /// The host CA: host certificates only (never trusted for the API).
    pub host_ca: Arc<crate::tls::FleetCa>,
    pub observed: Mutex<Observed>,
    /// Wakes the task engine when a task is queued.
    pub task_wakeup: Notify,
    /// Wakes tasks waiting for an agent observation.
    pub observation_changed: Notify,
    /// Serialises read-modify-write cycles of database records.
    pub db_lock: tokio::sync::Mutex<()>,
    pub running_tasks: Mutex<HashSet<i64>>,
    /// Client for calls to agents (the monitor's switchover endpoint): trusts
    /// only the host CA (and the fleet CA, which signed the certificates of hosts
    /// that have not renewed since the host CA came) and presents the
    /// control plane's client certificate.
    pub http: reqwest::Client,
    /// Fingerprint of that client certificate (monitors accept it).
    pub client_fingerprint: String,
    /// PostgreSQL certificates issued since start, by node or host. Kept in
    /// memory only (private keys never go to the store); after a restart
    /// nodes get new ones and reload them.
    pub pg_certificates: Mutex<std::collections::HashMap<String, String>>,
    /// Failed token checks and sign-ins per source address (lockout).
    pub attempts: crate::auth::attempts::FailedAttempts,
    /// The control plane's own instruments (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Alert targets' outbox lock and the delivery loop's wakeup.
    pub alerts: crate::alerts::Alerts,
    /// The databases' last hour in memory (`history::run` feeds it).
    pub history: crate::history::History,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(
        config: ServerConfig,
        store: Arc<dyn Store>,
        zone: pgfleet_dns::ZoneHandle,
        tokens: Tokens,
        ca: crate::tls::FleetCa,
        host_ca: crate::tls::FleetCa,
        identities: crate::host_identity::HostIdentities,
    ) -> anyhow::Result<AppState> {
        crate::tls::install_crypto_provider();
        let client_cert = ca.issue_client("pgfleet control plane")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .tls_certs_only([
                reqwest::Certificate::from_pem(host_ca.cert_pem.as_bytes())?,
                reqwest::Certificate::from_pem(ca.cert_pem.as_bytes())?,
            ])
            .identity(reqwest::Identity::from_pem(
                &pgfleet_tls::client_identity_pem(&client_cert.cert_pem, &client_cert.key_pem),
            )?)
            .build()?;
        let client_fingerprint = pgfleet_tls::pem_fingerprint(&client_cert.cert_pem)?;
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                store,
                zone,
                dns_publisher: Default::default(),
                tokens,
                ca: Arc::new(ca),
                host_ca: Arc::new(host_ca),
                identities,
                observed: Mutex::new(Observed::default()),
                task_wakeup: Notify::new(),
                observation_changed: Notify::new(),
                db_lock: tokio::sync::Mutex::new(()),
                running_tasks: Mutex::new(HashSet::new()),
                http,
                client_fingerprint,
                pg_certificates: Mutex::new(Default::default()),
                attempts: Default::default(),
                metrics: Default::default(),
                alerts: Default::default(),
                history: Default::default(),
            }),
        })
    }

    /// The CAs whose certificates agents may present: the host CA, and the
    /// fleet CA for hosts not yet renewed since the host CA came (pinned by
    /// fingerprint either way).
    pub fn agent_client_cas_pem(&self) -> String {
        format!("{}\n{}", self.host_ca.cert_pem.trim_end(), self.ca.cert_pem)
    }

    pub fn host_timeout(&self) -> Duration {
        Duration::from_millis(self.config.host_timeout_ms)
    }

    /// The PostgreSQL major versions connected hosts run, most common first.
    pub fn connected_versions(&self) -> Vec<u32> {
        let observed = self.observed.lock().expect("observed lock");
        let mut counts: std::collections::BTreeMap<u32, usize> = Default::default();
        for name in observed.hosts.keys() {
            if observed.host_status(name, self.host_timeout()) == HostStatus::Connected {
                *counts.entry(observed.hosts[name].pg_version).or_default() += 1;
            }
        }
        let mut versions: Vec<(u32, usize)> = counts.into_iter().collect();
        versions.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        versions.into_iter().map(|(v, _)| v).collect()
    }

    pub fn pg_version_of(&self, host: &str) -> Option<u32> {
        let observed = self.observed.lock().expect("observed lock");
        observed.hosts.get(host).map(|h| h.pg_version)
    }

    pub fn host_status(&self, host: &str) -> HostStatus {
        self.observed
            .lock()
            .expect("observed lock")
            .host_status(host, self.host_timeout())
    }

    /// Applies `change` to the stored database under the database lock, bumps
    /// its generation, stores it, and republishes DNS. Returns the new record.
    pub async fn update_database<F>(
        &self,
        name: &str,
        change: F,
    ) -> Result<Option<Database>, pgfleet_store::StoreError>
    where
        F: FnOnce(&mut Database),
    {
        let guard = self.db_lock.lock().await;
        let Some(mut db) = self.store.get_database(name).await? else {
            return Ok(None);
        };
        let mut hosts: Vec<String> = db.nodes.iter().map(|n| n.host.clone()).collect();
        change(&mut db);
        db.generation += 1;
        self.store.put_database(&db).await?;
        drop(guard);
        hosts.extend(db.nodes.iter().map(|n| n.host.clone()));
        hosts.sort();
        hosts.dedup();
        crate::nudge::hosts(self, &hosts).await;
        if let Err(error) = crate::dns_sync::publish(self).await {
            tracing::error!(error = %crate::error::error_chain(&error), "dns publish failed");
        }
        Ok(Some(db))
    }
}
