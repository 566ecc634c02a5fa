//! The host agent: registers the host, heartbeats its observations to the
//! control plane, and reconciles the PostgreSQL servers (and monitors) the
//! control plane intends for this host.
//!
//! Loops: the heartbeat loop (`heartbeat`), one reconcile actor per instance
//! (`instance`), one per monitor (`monitor`), and the agent's HTTP endpoint
//! (`http`) where keepers report to monitors and monitors' hosts push
//! primary changes to the agent's DNS server (`dns`).

pub mod config;
pub mod dns;
pub mod dns_push;
pub mod fence;
pub mod heartbeat;
pub mod http;
pub mod identity;
pub mod instance;
pub mod keeper;
pub mod monitor;
pub mod monitor_clock;
pub mod monitor_rebuild;
pub mod pg;
pub mod runtime;
pub mod supervisor;
pub mod wake;

pub use config::AgentConfig;

use tokio_util::sync::CancellationToken;

/// Runs the agent until `cancel` fires, then stops every PostgreSQL server.
pub async fn run(mut config: AgentConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)?;
    let identity = identity::obtain(&config).await?;
    config.credential = identity.credential.clone();
    let runtime = runtime::AgentRuntime::new(config, identity)?;
    runtime.dns.start();
    let supervisor = supervisor::Supervisor::new(runtime.clone());
    let http = http::start(supervisor.clone(), cancel.clone()).await?;
    dns_push::resume(&runtime);
    heartbeat::run(supervisor.clone(), cancel.clone()).await;
    supervisor.shutdown().await;
    let _ = http.await;
    Ok(())
}
