//! The heartbeat loop: observation out, intent in. A failed beat is retried
//! at the next interval; the agent keeps running its servers meanwhile.

use std::time::Duration;

use pgfleet_core::errors::error_chain;
use pgfleet_core::protocol::{HeartbeatRequest, HeartbeatResponse, HostRegistration};
use tokio_util::sync::CancellationToken;

use crate::runtime::AgentRuntime;
use crate::supervisor::Supervisor;

/// The shortest time between two beats when beats are asked for early
/// (an observation changed, the control plane has new intent).
const MIN_SPACING: Duration = Duration::from_millis(20);

pub async fn run(supervisor: Supervisor, cancel: CancellationToken) {
    let runtime = &supervisor.runtime;
    let url = format!(
        "{}/api/v1/agents/heartbeat",
        runtime.config.server_url.trim_end_matches('/')
    );
    let mut interval = Duration::from_millis(200);
    let mut failures = 0u32;
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        let beat = HeartbeatRequest {
            host: HostRegistration {
                name: runtime.config.name.clone(),
                address: runtime.config.address.clone(),
                failure_domain: runtime.config.failure_domain.clone(),
                agent_port: runtime.config.agent_port,
                dns_port: runtime.config.dns_port,
            },
            pg_version: runtime.bin.version,
            instances: supervisor.observed_instances(),
            monitors: supervisor.observed_monitors(),
            zone_digest: runtime.dns.digest(),
        };
        let result = runtime
            .http()
            .post(&url)
            .bearer_auth(&runtime.config.credential)
            .json(&beat)
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                match response.json::<HeartbeatResponse>().await {
                    Ok(intent) => {
                        if failures > 0 {
                            tracing::info!(host = %runtime.config.name, "control plane reachable again");
                        }
                        failures = 0;
                        interval =
                            Duration::from_millis(intent.heartbeat_interval_ms.clamp(50, 10_000));
                        supervisor.apply_intent(intent.instances, intent.monitors);
                        if let Some(zone) = intent.zone {
                            runtime.dns.apply_snapshot(zone);
                        }
                        if intent.renew_certificate {
                            renew_certificate(runtime, &mut last_renewal).await;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "bad heartbeat answer")
                    }
                }
            }
            Ok(response) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(status = %response.status(), "control plane refused the heartbeat");
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %error_chain(&error), "control plane unreachable");
                }
            }
        }
        let beaten = tokio::time::Instant::now();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = runtime.beat_now.notified() => {
                // However often it is asked, at most one beat per MIN_SPACING.
                tokio::time::sleep_until(beaten + MIN_SPACING).await;
            }
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Renews the host certificate (at most every 5 s while the control plane
/// keeps asking).
async fn renew_certificate(runtime: &AgentRuntime, last: &mut Option<tokio::time::Instant>) {
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
        return;
    }
    *last = Some(tokio::time::Instant::now());
    let renewed = crate::identity::renew(&runtime.config, &runtime.identity()).await;
    match renewed.and_then(|identity| runtime.set_identity(identity)) {
        Ok(()) => tracing::info!(host = %runtime.config.name, "host certificate renewed"),
        Err(error) => {
            tracing::warn!(error = %format_args!("{error:#}"), "cannot renew the host certificate")
        }
    }
}
