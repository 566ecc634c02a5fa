//! The fleet's health picture on the HA overview: every database, host and
//! alert target needing attention, worst first, each line saying what is
//! wrong and linking to the page to act on it. Pure: it reads the same API
//! views the API answers with (`views::database_view`, the hosts' list) and
//! the alert targets' delivery records; no rule of its own decides whether
//! a node or archive is healthy.

use pgfleet_core::api::{DatabaseView, HostView, ReplicationStatus};
use pgfleet_core::{HaStatus, HostStatus, NodeRole};

use crate::actions::CATCHUP_LAG_BYTES;

/// A replica this far behind in replay (seconds) is shown lagging.
pub const LAG_SECONDS_SHOWN: f64 = 10.0;
/// Certificates expiring sooner than this are shown.
pub const CERTIFICATE_WARNING_MS: i64 = 14 * 24 * 3600 * 1000;

/// How bad a line is; lines sort by it, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Critical,
    Warning,
}

impl Severity {
    pub fn tone(self) -> &'static str {
        match self {
            Severity::Critical => "bad",
            Severity::Warning => "warn",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Severity::Critical => "Critical",
            Severity::Warning => "Warning",
        }
    }
}

/// One line of the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthItem {
    pub severity: Severity,
    /// Short label (`Host lost`, `Replica lagging`, …).
    pub kind: &'static str,
    /// What it is about: a database, `db/node`, a host or an alert target.
    pub subject: String,
    /// What is wrong, in a sentence.
    pub detail: String,
    /// The page to act on it.
    pub link: String,
    pub action: &'static str,
}

/// An alert target whose last delivery failed.
pub struct FailingTarget {
    pub name: String,
    pub error: String,
    pub pending: u64,
}

/// Reasons of a database's health that are about its WAL archive (the
/// ones `backup::health_reasons` gives).
fn is_archive_reason(reason: &str) -> bool {
    reason.starts_with("WAL archiving") || reason.starts_with("backups are not set up")
}

fn database_items(view: &DatabaseView, items: &mut Vec<HealthItem>) {
    let db = &view.name;
    let cluster = crate::ui::render::db_path(db, "/cluster");
    let item = |severity, kind, subject: String, detail: String, link: &str, action| HealthItem {
        severity,
        kind,
        subject,
        detail,
        link: link.to_string(),
        action,
    };
    if view.ha_status != HaStatus::Complete || view.health.degraded {
        let (severity, detail) = match view.ha_status {
            HaStatus::Unconfigured => (
                Severity::Warning,
                "no replica: the loss of its node loses the database until it is restored".into(),
            ),
            HaStatus::Incomplete => (
                Severity::Warning,
                "one replica and no monitor quorum yet: create one more replica".into(),
            ),
            HaStatus::Complete => (
                Severity::Critical,
                format!(
                    "degraded, it may not survive a node loss: {}",
                    view.health.reasons.join("; ")
                ),
            ),
        };
        items.push(item(
            severity,
            "Would not survive a node loss",
            db.clone(),
            detail,
            &cluster,
            "Open cluster",
        ));
    }
    if view.health.failover_paused {
        let monitor_host = view
            .nodes
            .iter()
            .find(|n| n.role == NodeRole::Monitor)
            .map_or("?", |n| n.host.as_str());
        items.push(item(
            Severity::Critical,
            "Monitor on a lost host",
            db.clone(),
            format!("its monitor's host {monitor_host} is unreachable: automatic failover is paused until the monitor is replaced"),
            &cluster,
            "Open cluster",
        ));
    }
    for node in view.nodes.iter().filter(|n| n.role == NodeRole::Replica) {
        let subject = format!("{db}/{}", node.name);
        if matches!(node.replication_status, Some(ReplicationStatus::Stopped)) {
            items.push(item(
                Severity::Critical,
                "Replica not streaming",
                subject,
                format!(
                    "replica on host {} is {:?} and receives no WAL",
                    node.host, node.status
                )
                .to_lowercase(),
                &cluster,
                "Open cluster",
            ));
            continue;
        }
        let lag_bytes = node.lag_bytes.unwrap_or(0);
        let lag_seconds = node.lag_seconds.unwrap_or(0.0);
        if lag_bytes > CATCHUP_LAG_BYTES || lag_seconds > LAG_SECONDS_SHOWN {
            items.push(item(
                Severity::Warning,
                "Replica lagging",
                subject,
                format!(
                    "{} behind, {lag_seconds:.1} s of replay",
                    crate::ui::render::bytes(lag_bytes)
                ),
                &cluster,
                "Open cluster",
            ));
        }
    }
    for reason in view.health.reasons.iter().filter(|r| is_archive_reason(r)) {
        items.push(item(
            Severity::Critical,
            "Archive failing",
            db.clone(),
            reason.clone(),
            &crate::ui::render::db_path(db, "/backups"),
            "Open backups",
        ));
    }
}

/// Every line needing attention, worst first (then by kind and subject).
pub fn health_items(
    databases: &[DatabaseView],
    hosts: &[HostView],
    failing_targets: &[FailingTarget],
    now_ms: i64,
) -> Vec<HealthItem> {
    let mut items = Vec::new();
    for view in databases {
        database_items(view, &mut items);
    }
    for host in hosts {
        if host.status == HostStatus::Lost {
            items.push(HealthItem {
                severity: Severity::Critical,
                kind: "Host lost",
                subject: host.name.clone(),
                detail: format!(
                    "no heartbeat from {} ({} nodes placed on it)",
                    host.address,
                    host.instances.len()
                ),
                link: "/hosts".into(),
                action: "Open hosts",
            });
        }
        if let Some(expires) = host.certificate_expires_at_ms {
            let left_ms = expires - now_ms;
            if left_ms < CERTIFICATE_WARNING_MS {
                items.push(HealthItem {
                    severity: if left_ms < 86_400_000 {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    kind: "Certificate expiring",
                    subject: host.name.clone(),
                    detail: format!(
                        "the host's certificate expires in {:.1} days (its agent renews it when it beats)",
                        left_ms as f64 / 86_400_000.0
                    ),
                    link: "/hosts".into(),
                    action: "Open hosts",
                });
            }
        }
    }
    for target in failing_targets {
        items.push(HealthItem {
            severity: Severity::Warning,
            kind: "Alert target failing",
            subject: target.name.clone(),
            detail: format!(
                "last delivery failed: {} ({} alerts waiting); check it with `pgfleet alert-target test {}`",
                target.error, target.pending, target.name
            ),
            link: String::new(),
            action: "pgfleet alert-target list",
        });
    }
    items.sort_by(|a, b| (a.severity, a.kind, &a.subject).cmp(&(b.severity, b.kind, &b.subject)));
    items
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
