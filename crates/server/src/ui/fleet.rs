//! Fleet-wide pages: *Hosts* (status, address, failure domain, heartbeat,
//! instances, failure domains shared by a database's nodes) and the *HA
//! overview* (which databases are unconfigured, incomplete, degraded,
//! asynchronous or break anti-affinity). Both update live.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use pgfleet_core::api::DatabaseView;
use pgfleet_core::time::now_ms;
use pgfleet_core::HaStatus;

use super::cluster::shared_domains;
use super::render::{self, page, Badge, Layout, Viewer};
use crate::error::ApiError;
use crate::state::AppState;

pub struct HostRow {
    pub name: String,
    pub status: Badge,
    pub address: String,
    pub failure_domain: String,
    pub last_heartbeat: String,
    pub pg_version: String,
    pub certificate: String,
    pub instances: Vec<String>,
}

/// A join token just created: shown on this answer only, with the command
/// that starts an agent with it (the token in the environment, not on the
/// command line).
pub struct JoinCard {
    pub token: String,
    pub valid_until: String,
    pub command: String,
}

pub struct SharedDomain {
    pub db: String,
    pub domains: Vec<String>,
}

#[derive(Template)]
#[template(path = "hosts.html", blocks = ["live"])]
struct HostsPage {
    layout: Layout,
    hosts: Vec<HostRow>,
    connected: usize,
    shared: Vec<SharedDomain>,
    join: Option<JoinCard>,
}

async fn hosts_page(state: &AppState, layout: Layout) -> Result<HostsPage, ApiError> {
    let Json(hosts) = crate::api::hosts::list(State(state.clone())).await?;
    let Json(databases) = crate::api::databases::list(State(state.clone())).await?;
    let now = now_ms();
    let rows: Vec<HostRow> = hosts
        .into_iter()
        .map(|host| HostRow {
            status: render::host_status(host.status),
            last_heartbeat: host
                .last_heartbeat_ms
                .map(|ms| render::ago(ms, now))
                .unwrap_or_else(|| "never".into()),
            pg_version: host
                .pg_version
                .map(|v| format!("PostgreSQL {v}"))
                .unwrap_or_else(|| "—".into()),
            certificate: match host.certificate_expires_at_ms {
                Some(ms) if ms > now => format!("expires in {}", render::duration_ms(ms - now)),
                Some(_) => "expired".into(),
                None => "none".into(),
            },
            name: host.name,
            address: host.address,
            failure_domain: host.failure_domain,
            instances: host.instances,
        })
        .collect();
    let mut shared = Vec::new();
    for db in &databases {
        let domains = shared_domains(db);
        if !domains.is_empty() {
            shared.push(SharedDomain {
                db: db.name.clone(),
                domains,
            });
        }
    }
    Ok(HostsPage {
        layout,
        connected: rows.iter().filter(|h| h.status.text == "Connected").count(),
        hosts: rows,
        shared,
        join: None,
    })
}

/// How long a join token made on the Hosts page stays valid.
const UI_JOIN_TOKEN_SECS: u64 = 3600;

/// *Add a host*: a one-time join token (an hour) and the agent command.
pub async fn create_join_token(
    State(state): State<AppState>,
    super::session::Protected { session, form }: super::session::Protected<super::login::Empty>,
) -> Response {
    let super::login::Empty {} = form;
    let created = state
        .identities
        .create_join_token(state.store.as_ref(), UI_JOIN_TOKEN_SECS)
        .await;
    let layout = Layout::new(&session, "hosts");
    let result = match created {
        Ok((token, expires_at_ms)) => hosts_page(&state, layout).await.map(|mut page| {
            let scheme = if state.config.tls { "https" } else { "http" };
            let command = format!(
                "PGFLEET_JOIN_TOKEN={token} pgfleet agent --name HOST-NAME --address HOST-ADDRESS \\\n  \
                 --failure-domain fd-1 --data-dir /var/lib/pgfleet-agent \\\n  \
                 --server {scheme}://{} --ca-file {}",
                state.config.api_addr,
                state.config.data_dir.join("ca.crt").display()
            );
            page.join = Some(JoinCard {
                token,
                valid_until: render::timestamp(expires_at_ms),
                command,
            });
            page
        }),
        Err(error) => Err(error),
    };
    match result {
        Ok(hosts) => page(&hosts),
        Err(error) => render::error_page(&session, error),
    }
}

pub async fn hosts(State(state): State<AppState>, viewer: Viewer) -> Response {
    match hosts_page(&state, viewer.layout("hosts")).await {
        Ok(hosts) if viewer.fragment.is_some() => page(&hosts.as_live()),
        Ok(hosts) => page(&hosts),
        Err(error) => render::error_page(&viewer.session, error),
    }
}

pub struct HaRow {
    pub name: String,
    pub status: Badge,
    pub ha: Badge,
    /// Short labels of what is wrong, as badges.
    pub issues: Vec<Badge>,
    pub reasons: Vec<String>,
}

/// How many databases fall into each category of the overview.
#[derive(Default)]
pub struct HaCounts {
    pub total: usize,
    pub healthy: usize,
    pub unconfigured: usize,
    pub incomplete: usize,
    pub degraded: usize,
    pub asynchronous: usize,
    pub anti_affinity: usize,
}

fn classify(view: &DatabaseView, counts: &mut HaCounts) -> HaRow {
    let mut issues = Vec::new();
    counts.total += 1;
    match view.ha_status {
        HaStatus::Unconfigured => {
            counts.unconfigured += 1;
            issues.push(Badge {
                text: "Unconfigured",
                tone: "muted",
            });
        }
        HaStatus::Incomplete => {
            counts.incomplete += 1;
            issues.push(Badge {
                text: "Incomplete",
                tone: "warn",
            });
        }
        HaStatus::Complete => {}
    }
    if view.health.degraded {
        counts.degraded += 1;
        issues.push(Badge {
            text: "Degraded",
            tone: "bad",
        });
    }
    if view.health.sync_mode == "async_fallback" {
        counts.asynchronous += 1;
        issues.push(Badge {
            text: "Asynchronous",
            tone: "warn",
        });
    }
    if !view.anti_affinity.holds {
        counts.anti_affinity += 1;
        issues.push(Badge {
            text: "Anti-affinity broken",
            tone: "bad",
        });
    }
    if issues.is_empty() {
        counts.healthy += 1;
    }
    HaRow {
        name: view.name.clone(),
        status: render::db_status(view.status),
        ha: render::ha_status(view.ha_status),
        issues,
        reasons: view.health.reasons.clone(),
    }
}

#[derive(Template)]
#[template(path = "ha.html", blocks = ["live"])]
struct HaPage {
    layout: Layout,
    counts: HaCounts,
    /// Databases with something to fix, worst first.
    attention: Vec<HaRow>,
    healthy: Vec<HaRow>,
    /// Everything needing attention, worst first (`health::health_items`).
    health: Vec<super::health::HealthItem>,
}

pub async fn ha(State(state): State<AppState>, viewer: Viewer) -> Response {
    let databases = match crate::api::databases::list(State(state.clone())).await {
        Ok(Json(databases)) => databases,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let health = match fleet_health(&state, &databases).await {
        Ok(health) => health,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let mut counts = HaCounts::default();
    let mut attention = Vec::new();
    let mut healthy = Vec::new();
    for db in &databases {
        let row = classify(db, &mut counts);
        if row.issues.is_empty() {
            healthy.push(row);
        } else {
            attention.push(row);
        }
    }
    let severity = |row: &HaRow| row.issues.iter().filter(|b| b.tone == "bad").count();
    attention.sort_by(|a, b| severity(b).cmp(&severity(a)).then(a.name.cmp(&b.name)));
    let ha_page = HaPage {
        layout: viewer.layout("ha"),
        counts,
        attention,
        healthy,
        health,
    };
    if viewer.fragment.is_some() {
        return page(&ha_page.as_live());
    }
    page(&ha_page)
}

/// The health picture from the same views the API answers with.
async fn fleet_health(
    state: &AppState,
    databases: &[DatabaseView],
) -> Result<Vec<super::health::HealthItem>, ApiError> {
    let Json(hosts) = crate::api::hosts::list(State(state.clone())).await?;
    let failing = crate::alerts::failing_targets(state)
        .await?
        .into_iter()
        .map(|(name, error, pending)| super::health::FailingTarget {
            name,
            error,
            pending,
        })
        .collect::<Vec<_>>();
    Ok(super::health::health_items(
        databases,
        &hosts,
        &failing,
        now_ms(),
    ))
}
