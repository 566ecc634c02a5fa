//! The monitor's loop: while a replacement monitor collects the keepers'
//! reports it waits for them; otherwise at every keeper interval (or a new
//! spec) it syncs the nodes, ticks the core, probes every data node's
//! PostgreSQL in parallel and feeds the results in; a deleted monitor
//! removes its state file and stops.

use std::sync::Arc;
use std::time::Duration;

use pgfleet_core::protocol::MonitorSpec;
use pgfleet_core::Desired;
use pgfleet_ha::Event;
use tokio::sync::watch;

use super::MonitorShared;
use crate::monitor_clock::now_ms;
use crate::runtime::AgentRuntime;

pub(super) async fn run(
    runtime: AgentRuntime,
    monitor: Arc<MonitorShared>,
    mut rx: watch::Receiver<MonitorSpec>,
) {
    let interval = Duration::from_millis(runtime.config.keeper_interval_ms);
    loop {
        let spec = rx.borrow_and_update().clone();
        if monitor.core.lock().await.collecting.is_some() {
            let actions = {
                let mut core = monitor.core.lock().await;
                core.spec = spec.clone();
                let actions = core.finish_rebuild();
                *monitor.observed.lock().expect("monitor lock") = Some(core.observation());
                actions
            };
            monitor.execute(actions);
        }
        if spec.desired != Desired::Deleted && monitor.core.lock().await.collecting.is_some() {
            tokio::select! {
                _ = runtime.stopping.cancelled() => return,
                changed = rx.changed() => { if changed.is_err() { return; } }
                _ = tokio::time::sleep(interval) => {}
            }
            continue;
        }
        if spec.desired == Desired::Deleted {
            let core = monitor.core.lock().await;
            monitor
                .deleted
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = std::fs::remove_file(&core.path);
            *monitor.observed.lock().expect("monitor lock") = None;
            tracing::info!(db = %spec.db, "monitor removed");
            return;
        }
        let actions = {
            let mut core = monitor.core.lock().await;
            core.spec = spec.clone();
            let mut actions = core.sync_nodes();
            actions.extend(core.apply(Event::Tick { now_ms: now_ms() }));
            *monitor.observed.lock().expect("monitor lock") = Some(core.observation());
            actions
        };
        monitor.execute(actions);
        // PostgreSQL-level health checks of every data node, in parallel.
        let mut checks = Vec::new();
        for peer in spec.nodes.clone() {
            let password = spec.superuser_password.clone();
            let pg_tls = spec.pg_tls.clone();
            checks.push(tokio::spawn(async move {
                let (ok, refused) = match crate::pg::sql::connect_tcp(
                    &peer.address,
                    peer.port,
                    &password,
                    pg_tls.as_ref(),
                    Duration::from_millis(500),
                )
                .await
                {
                    Ok(client) => (client.simple_query("SELECT 1").await.is_ok(), false),
                    Err(error) => (false, refused(&error)),
                };
                (peer.node, ok, refused)
            }));
        }
        let mut results = Vec::new();
        for check in checks {
            if let Ok(result) = check.await {
                results.push(result);
            }
        }
        let actions = {
            let mut core = monitor.core.lock().await;
            let mut actions = Vec::new();
            for (node, ok, refused) in results {
                if core.state.nodes.contains_key(&node) {
                    actions.extend(core.apply(Event::HealthCheck {
                        node,
                        ok,
                        refused,
                        now_ms: now_ms(),
                    }));
                }
            }
            actions
        };
        monitor.execute(actions);
        tokio::select! {
            _ = runtime.stopping.cancelled() => return,
            changed = rx.changed() => { if changed.is_err() { return; } }
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Whether a failed probe's connection was actively refused (TCP reset:
/// nothing listens on the port), the evidence the HA core's fast detection
/// needs. A timeout, an unreachable network, a failed handshake or query is
/// not a refusal.
fn refused(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's own error tells a port nothing listens on (refused: the
    /// fast detection's evidence) from one that accepts and never answers
    /// (a frozen server: a timeout, no evidence).
    #[tokio::test]
    async fn a_refused_probe_is_told_from_one_that_times_out() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let Err(error) =
            crate::pg::sql::connect_tcp("127.0.0.1", port, "x", None, Duration::from_millis(500))
                .await
        else {
            panic!("nothing listens");
        };
        assert!(refused(&error), "{error:#}");

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let Err(error) =
            crate::pg::sql::connect_tcp("127.0.0.1", port, "x", None, Duration::from_millis(200))
                .await
        else {
            panic!("nothing answers");
        };
        assert!(!refused(&error), "{error:#}");
    }
}
