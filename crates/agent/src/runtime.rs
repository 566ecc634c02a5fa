//! The agent's shared state: settings, PostgreSQL binaries and user, its
//! identity and HTTP clients, its DNS server, and the handles of the
//! instance actors (which the monitors' keeper wakes reach). Below every
//! actor: the actors themselves are started and stopped by `supervisor`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use pgfleet_core::protocol::{InstanceObserved, InstanceSpec};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::pg::bin::PgBin;
use crate::pg::user::PgUser;

pub struct InstanceHandle {
    pub spec: watch::Sender<InstanceSpec>,
    pub observed: Arc<Mutex<InstanceObserved>>,
    /// Makes the actor run its next step now (its monitor has news).
    pub wake: Arc<tokio::sync::Notify>,
    pub task: tokio::task::JoinHandle<()>,
}

pub struct Inner {
    pub config: AgentConfig,
    pub bin: PgBin,
    pub user: PgUser,
    pub host_dir: PathBuf,
    /// Credential, key and certificate (replaced on renewal).
    identity: RwLock<crate::identity::HostIdentity>,
    /// For the control plane: presents the current certificate; replaced
    /// with it.
    http: RwLock<reqwest::Client>,
    /// For other agents' endpoints (monitors), likewise.
    peer_http: RwLock<reqwest::Client>,
    /// The agent endpoint's server certificate (the host certificate).
    pub server_cert: Arc<pgfleet_tls::ReloadableCert>,
    pub instances: Mutex<HashMap<String, InstanceHandle>>,
    /// Cancelled at shutdown: actors stop their servers and exit.
    pub stopping: CancellationToken,
    /// The agent's DNS server for the zone.
    pub dns: crate::dns::AgentDns,
    /// Rung when an instance's phase changed: the heartbeat loop beats at
    /// once (a task step waits on that observation) instead of at its
    /// next interval.
    pub beat_now: tokio::sync::Notify,
}

#[derive(Clone)]
pub struct AgentRuntime {
    inner: Arc<Inner>,
}

impl std::ops::Deref for AgentRuntime {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AgentRuntime {
    pub fn new(
        config: AgentConfig,
        identity: crate::identity::HostIdentity,
    ) -> anyhow::Result<AgentRuntime> {
        let bin = PgBin::find(config.pg_bin.as_deref())?;
        let user = PgUser::detect()?;
        let host_dir = config.data_dir.clone();
        std::fs::create_dir_all(host_dir.join("pg"))?;
        std::fs::create_dir_all(host_dir.join("monitors"))?;
        let host_dir = host_dir.canonicalize()?;
        user.check_reachable(&host_dir.join("pg"))?;
        let http = crate::identity::client(&identity)?;
        let peer_http = crate::identity::peer_client(&identity)?;
        let server_cert = pgfleet_tls::ReloadableCert::new(&identity.cert_pem, &identity.key_pem)?;
        let stopping = CancellationToken::new();
        let dns = crate::dns::AgentDns::load(&config, stopping.child_token());
        Ok(AgentRuntime {
            inner: Arc::new(Inner {
                config,
                bin,
                user,
                host_dir,
                identity: RwLock::new(identity),
                http: RwLock::new(http),
                peer_http: RwLock::new(peer_http),
                server_cert,
                instances: Mutex::new(HashMap::new()),
                stopping,
                dns,
                beat_now: tokio::sync::Notify::new(),
            }),
        })
    }

    /// The HTTP client for the control plane.
    pub fn http(&self) -> reqwest::Client {
        self.http.read().expect("http lock").clone()
    }

    /// The HTTP client for other agents' endpoints (monitors).
    pub fn peer_http(&self) -> reqwest::Client {
        self.peer_http.read().expect("http lock").clone()
    }

    pub fn identity(&self) -> crate::identity::HostIdentity {
        self.identity.read().expect("identity lock").clone()
    }

    /// Switches to a renewed certificate: new connections present it.
    pub fn set_identity(&self, identity: crate::identity::HostIdentity) -> anyhow::Result<()> {
        let http = crate::identity::client(&identity)?;
        let peer_http = crate::identity::peer_client(&identity)?;
        self.server_cert
            .replace(&identity.cert_pem, &identity.key_pem)?;
        *self.http.write().expect("http lock") = http;
        *self.peer_http.write().expect("http lock") = peer_http;
        *self.identity.write().expect("identity lock") = identity;
        Ok(())
    }
}
