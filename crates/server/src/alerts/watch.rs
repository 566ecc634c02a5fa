//! The alert watcher: every 2 s compares the fleet's state with what it saw
//! before and raises degraded/recovered (a database degraded for 10 s, and
//! healthy again after such an alert), host lost/back, and host
//! certificates expiring within 14 days (once per certificate and process),
//! and the WAL stream checks of `streams.rs` (replicas not streaming for
//! `--alert-not-streaming-secs`, archiving failing).
//! What it knows is kept in memory: a host change is alerted only from a
//! status it saw (not from `unknown` after a restart), while a database
//! still degraded after a restart is alerted again once its grace passed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pgfleet_core::{DbStatus, HostStatus};
use tokio_util::sync::CancellationToken;

use super::streams::StreamConditions;
use super::{raise, Alert};
use crate::state::AppState;
use crate::views::{database_view, ViewContext};

const EVERY: Duration = Duration::from_secs(2);
/// A database must stay degraded this long before it is alerted (a
/// failover or a replica being made is degraded for a moment).
const DEGRADED_GRACE: Duration = Duration::from_secs(10);
const CERTIFICATE_WARNING_MS: i64 = 14 * 24 * 3600 * 1000;

#[derive(Default)]
struct Seen {
    degraded_since: HashMap<String, Instant>,
    alerted_degraded: HashSet<String>,
    hosts: HashMap<String, HostStatus>,
    /// (host, expiry) already alerted.
    certificates: HashSet<(String, i64)>,
    streams: StreamConditions,
}

async fn pass(state: &AppState, seen: &mut Seen) -> Result<(), pgfleet_store::StoreError> {
    let hosts = state.store.list_hosts().await?;
    let databases = state.store.list_databases().await?;
    let unfinished = state.store.unfinished_tasks().await?;
    let mut alerts = Vec::new();
    let now = Instant::now();
    {
        let observed = state.observed.lock().expect("observed lock");
        let zone = state.zone.zone();
        let ctx = ViewContext {
            observed: &observed,
            hosts: &hosts,
            host_timeout: state.host_timeout(),
            zone: &zone,
            unfinished: &unfinished,
        };
        let mut present = HashSet::new();
        let not_streaming_grace = Duration::from_secs(state.config.alert_not_streaming_secs);
        seen.streams.begin();
        for db in databases
            .iter()
            .filter(|db| db.status != DbStatus::Deleting)
        {
            present.insert(db.name.clone());
            let view = database_view(db, &ctx, false);
            if db.status != DbStatus::Creating {
                seen.streams
                    .check_replicas(&view, now, not_streaming_grace, &mut alerts);
                let archive = db
                    .backup
                    .policy
                    .as_ref()
                    .and_then(|_| db.primary())
                    .filter(|p| {
                        observed.host_status(&p.host, state.host_timeout()) == HostStatus::Connected
                    })
                    .and_then(|p| observed.instance(&p.host, &db.name, &p.name))
                    .and_then(|i| i.backup.as_ref());
                seen.streams
                    .check_archive(&db.name, archive, now, &mut alerts);
            }
            let degraded = view.health.degraded && db.status != DbStatus::Creating;
            if !degraded {
                seen.degraded_since.remove(&db.name);
                if seen.alerted_degraded.remove(&db.name) {
                    alerts.push(
                        Alert::new(
                            "recovered",
                            format!("database {} is healthy again", db.name),
                        )
                        .db(&db.name),
                    );
                }
                continue;
            }
            let since = *seen.degraded_since.entry(db.name.clone()).or_insert(now);
            if now - since >= DEGRADED_GRACE && seen.alerted_degraded.insert(db.name.clone()) {
                let reasons = view.health.reasons.join("; ");
                alerts.push(
                    Alert::new(
                        "degraded",
                        format!("database {} is degraded: {reasons}", db.name),
                    )
                    .db(&db.name)
                    .details(serde_json::json!({"reasons": view.health.reasons})),
                );
            }
        }
        seen.streams.finish();
        seen.degraded_since.retain(|name, _| present.contains(name));
        seen.alerted_degraded.retain(|name| present.contains(name));
        for host in &hosts {
            let status = observed.host_status(&host.name, state.host_timeout());
            let before = seen.hosts.insert(host.name.clone(), status);
            match (before, status) {
                (Some(HostStatus::Connected), HostStatus::Lost) => alerts.push(
                    Alert::new(
                        "host_lost",
                        format!(
                            "host {} is lost: no heartbeat for {} ms",
                            host.name, state.config.host_timeout_ms
                        ),
                    )
                    .host(&host.name),
                ),
                (Some(HostStatus::Lost), HostStatus::Connected) => alerts.push(
                    Alert::new(
                        "host_back",
                        format!("host {} is connected again", host.name),
                    )
                    .host(&host.name),
                ),
                _ => {}
            }
        }
    }
    let now_ms = pgfleet_core::time::now_ms();
    for host in &hosts {
        let Some(certificate) = state.identities.certificate(&host.name) else {
            continue;
        };
        let left_ms = certificate.expires_at_ms - now_ms;
        if left_ms < CERTIFICATE_WARNING_MS
            && seen
                .certificates
                .insert((host.name.clone(), certificate.expires_at_ms))
        {
            let days = left_ms as f64 / 86_400_000.0;
            alerts.push(
                Alert::new(
                    "certificate_expiring",
                    format!(
                        "the certificate of host {} expires in {days:.1} days",
                        host.name
                    ),
                )
                .host(&host.name)
                .details(serde_json::json!({"expires_at_ms": certificate.expires_at_ms})),
            );
        }
    }
    for alert in alerts {
        raise(state, alert).await;
    }
    Ok(())
}

/// Runs until `cancel` fires.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let mut seen = Seen::default();
    loop {
        if let Err(error) = pass(&state, &mut seen).await {
            tracing::warn!(error = %crate::error::error_chain(&error), "alert watch pass failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
