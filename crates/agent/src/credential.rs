//! The host's credential: read from `DATA_DIR/agent.credential` (mode
//! 0600), or obtained once by spending a one-time join token.

use std::path::Path;

use crate::config::AgentConfig;

pub async fn obtain(config: &AgentConfig) -> anyhow::Result<String> {
    let path = config.data_dir.join("agent.credential");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let credential = text.trim().to_string();
        if !credential.is_empty() {
            return Ok(credential);
        }
    }
    let Some(join_token) = &config.join_token else {
        anyhow::bail!("host {} has no credential yet: start the agent with a join token (`pgfleet host join-token`)", config.name);
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
    if let Some(pem) = &config.ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    let client = builder.build()?;
    let url = format!(
        "{}/api/v1/agents/join",
        config.server_url.trim_end_matches('/')
    );
    let body = serde_json::json!({"host": config.name, "join_token": join_token});
    let mut last_error = String::new();
    // The control plane may still be starting: retry for a while.
    for _ in 0..50 {
        match client.post(&url).json(&body).send().await {
            Ok(response) if response.status().is_success() => {
                let answer: serde_json::Value = response.json().await?;
                let credential = answer["credential"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                write_private(&path, &credential)?;
                tracing::info!(host = %config.name, "joined the fleet");
                return Ok(credential);
            }
            Ok(response) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                anyhow::bail!("the join token was refused (used, expired or unknown): ask for a new one with `pgfleet host join-token`");
            }
            Ok(response) => last_error = format!("HTTP {}", response.status()),
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("cannot join the control plane at {url}: {last_error}")
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value.as_bytes())
}
