//! Human-readable tables, JSON output, and the task progress bar (waiting
//! for a task).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pgfleet_core::api::{DatabaseView, HostView};
use pgfleet_core::{Task, TaskState};

use crate::client::Client;

pub fn lower<T: std::fmt::Debug>(value: &T) -> String {
    let text = format!("{value:?}");
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:width$}", c, width = widths[i]))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| h.to_string()).collect(), &mut out);
    for row in rows {
        line(row.clone(), &mut out);
    }
    out
}

pub fn databases(dbs: &[DatabaseView]) -> String {
    let rows: Vec<Vec<String>> = dbs
        .iter()
        .map(|db| {
            vec![
                db.name.clone(),
                lower(&db.status),
                lower(&db.ha_status),
                db.primary.clone().unwrap_or_default(),
                db.nodes
                    .iter()
                    .filter(|n| n.role == pgfleet_core::NodeRole::Replica)
                    .count()
                    .to_string(),
                if db.health.degraded {
                    "degraded".into()
                } else {
                    "ok".into()
                },
                db.primary_fqdn.clone(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATUS",
            "HA",
            "PRIMARY",
            "REPLICAS",
            "HEALTH",
            "PRIMARY FQDN",
        ],
        &rows,
    )
}

pub fn database(db: &DatabaseView) -> String {
    let mut out = String::new();
    out.push_str(&format!("name:          {}\n", db.name));
    out.push_str(&format!("status:        {}\n", lower(&db.status)));
    out.push_str(&format!("ha status:     {}\n", lower(&db.ha_status)));
    let health = if db.health.degraded {
        format!("degraded ({})", db.health.reasons.join("; "))
    } else {
        "ok".into()
    };
    out.push_str(&format!("health:        {health}\n"));
    out.push_str(&format!("replication:   {}\n", db.health.sync_mode));
    out.push_str(&format!("fqdn:          {}\n", db.fqdn));
    if !db.dns_servers.is_empty() {
        out.push_str(&format!("dns servers:   {}\n", db.dns_servers.join(" ")));
    }
    out.push_str(&format!("primary fqdn:  {}\n", db.primary_fqdn));
    out.push_str(&format!("port:          {}\n", db.port));
    out.push_str(&format!("version:       {}\n", db.version));
    out.push_str(&format!("admin user:    {}\n", db.admin_user));
    if let Some(password) = &db.admin_password {
        out.push_str(&format!("password:      {password}\n"));
    }
    out.push_str(&format!(
        "anti-affinity: {} ({})\n",
        if db.anti_affinity.holds {
            "holds"
        } else {
            "VIOLATED"
        },
        db.anti_affinity.rule
    ));
    if let Some(error) = &db.error {
        out.push_str(&format!("error:         {error}\n"));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = db
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                lower(&n.role),
                n.host.clone(),
                n.address.clone(),
                lower(&n.status),
                n.replication_status.as_ref().map(lower).unwrap_or_default(),
                n.lag_bytes.map(|b| b.to_string()).unwrap_or_default(),
                n.ha_state.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "NODE",
            "ROLE",
            "HOST",
            "ADDRESS",
            "STATUS",
            "REPLICATION",
            "LAG BYTES",
            "HA STATE",
        ],
        &rows,
    ));
    out
}

pub fn hosts(hosts: &[HostView]) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.address.clone(),
                h.failure_domain.clone(),
                lower(&h.status),
                h.instances.len().to_string(),
                h.certificate_expires_at_ms
                    .map(|ms| {
                        format!(
                            "{}d",
                            (ms - pgfleet_core::time::now_ms()).max(0) / 86_400_000
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                h.instances.join(","),
            ]
        })
        .collect();
    table(
        &[
            "HOST",
            "ADDRESS",
            "FAILURE DOMAIN",
            "STATUS",
            "INSTANCES",
            "CERT DAYS",
            "NODES",
        ],
        &rows,
    )
}

pub fn tasks(tasks: &[Task]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                format!("{:?}", t.kind),
                t.target.clone(),
                lower(&t.state),
                format!("{}%", t.progress),
                t.error
                    .clone()
                    .or_else(|| t.message.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["ID", "KIND", "TARGET", "STATE", "PROGRESS", "MESSAGE"],
        &rows,
    )
}

pub fn task(task: &Task) -> String {
    let mut out = format!(
        "task {} {:?} on {}: {} ({}%)\n",
        task.id,
        task.kind,
        task.target,
        lower(&task.state),
        task.progress
    );
    for step in &task.steps {
        out.push_str(&format!("  [{}] {}\n", lower(&step.state), step.name));
    }
    if let Some(error) = &task.error {
        out.push_str(&format!("error: {error}\n"));
    }
    out
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(100);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos:>3}% {msg}").expect("template"));
    bar
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Waits for a task with a progress bar; fails with the task's error.
pub(crate) async fn wait(client: &Client, task_id: i64) -> anyhow::Result<()> {
    let bar = progress_bar();
    let task = client
        .wait_task(task_id, Duration::from_secs(600), |task| {
            bar.set_position(task.progress as u64);
            if let Some(message) = &task.message {
                bar.set_message(message.clone());
            }
        })
        .await?;
    bar.finish_and_clear();
    if task.state == TaskState::Failed {
        anyhow::bail!(
            "task {} failed: {}",
            task.id,
            task.error.unwrap_or_default()
        );
    }
    Ok(())
}
