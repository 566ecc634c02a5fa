//! `pgfleet alert-target create|list|test|delete`: where alerts go
//! (webhooks), and whether they arrive. The signing secret is read from a
//! file (never a command-line argument) and never shown again.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Client, Result};
use crate::globals::Globals;
use crate::output;

#[derive(Subcommand, Debug)]
pub enum AlertTargetCommand {
    /// Send alerts to a webhook (https://, or http:// to a loopback address).
    Create {
        name: String,
        #[arg(long)]
        webhook: String,
        /// File holding the secret that signs every body (HMAC-SHA256 in
        /// `X-Pgfleet-Signature: sha256=<hex>`).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Comma-separated kinds to receive (all when absent): failover,
        /// switchover, degraded, recovered, host_lost, host_back,
        /// task_failed, certificate_expiring, replica_not_streaming,
        /// replica_streaming, archive_failing, archive_recovered.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// Targets with their last delivery, last error and pending alerts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Send a test alert and wait (up to 15 s) for its delivery.
    Test {
        name: String,
    },
    Delete {
        name: String,
    },
}

impl Client {
    pub async fn alert_targets(&self) -> Result<Vec<Value>> {
        self.send(self.http.get(self.url("/alert-targets"))).await
    }
    pub async fn create_alert_target(&self, body: &Value) -> Result<Value> {
        self.send(self.http.post(self.url("/alert-targets")).json(body))
            .await
    }
    pub async fn test_alert_target(&self, name: &str) -> Result<Value> {
        self.send(
            self.http
                .post(self.url(&format!("/alert-targets/{name}/test"))),
        )
        .await
    }
    pub async fn delete_alert_target(&self, name: &str) -> Result<()> {
        self.send_no_content(
            self.http
                .delete(self.url(&format!("/alert-targets/{name}"))),
        )
        .await
    }
}

fn when(value: &Value) -> String {
    match value.as_i64() {
        Some(ms) => {
            let ago = (pgfleet_core::time::now_ms() - ms).max(0) / 1000;
            format!("{ago}s ago")
        }
        None => "-".into(),
    }
}

pub async fn run(globals: &Globals, command: &AlertTargetCommand) -> anyhow::Result<()> {
    let client = crate::globals::client(globals)?;
    match command {
        AlertTargetCommand::Create {
            name,
            webhook,
            secret_file,
            events,
        } => {
            let secret = match secret_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading the secret file {}", path.display()))?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let body = serde_json::json!({
                "name": name, "webhook": webhook, "secret": secret, "events": events,
            });
            let created = client.create_alert_target(&body).await?;
            println!(
                "alert target {name} created ({}, {})",
                created["webhook"].as_str().unwrap_or_default(),
                if created["signed"] == true {
                    "signed"
                } else {
                    "unsigned"
                }
            );
        }
        AlertTargetCommand::List { json } => {
            let targets = client.alert_targets().await?;
            if *json {
                crate::output::print_json(&targets)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = targets
                .iter()
                .map(|t| {
                    let events: Vec<&str> = t["events"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    vec![
                        t["name"].as_str().unwrap_or("").to_string(),
                        t["webhook"].as_str().unwrap_or("").to_string(),
                        if events.is_empty() {
                            "all".into()
                        } else {
                            events.join(",")
                        },
                        when(&t["last_success_ms"]),
                        t["pending"].to_string(),
                        t["last_error"].as_str().unwrap_or("-").to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &[
                        "NAME",
                        "WEBHOOK",
                        "EVENTS",
                        "LAST DELIVERY",
                        "PENDING",
                        "LAST ERROR"
                    ],
                    &rows
                )
            );
        }
        AlertTargetCommand::Test { name } => {
            let before = target(&client, name).await?;
            client.test_alert_target(name).await?;
            let delivered_before = before["delivered"].as_u64().unwrap_or(0);
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                let now = target(&client, name).await?;
                if now["delivered"].as_u64().unwrap_or(0) > delivered_before {
                    println!("test alert delivered to {name}");
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    let error = now["last_error"].as_str().unwrap_or("no answer yet");
                    anyhow::bail!(
                        "test alert not delivered to {name} yet (it is retried): {error}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        AlertTargetCommand::Delete { name } => {
            client.delete_alert_target(name).await?;
            println!("alert target {name} deleted");
        }
    }
    Ok(())
}

async fn target(client: &Client, name: &str) -> anyhow::Result<Value> {
    let targets = client.alert_targets().await?;
    targets
        .into_iter()
        .find(|t| t["name"] == name)
        .with_context(|| format!("alert target {name:?} not found"))
}
