//! The host's identity: its credential (`DATA_DIR/agent.credential`), its
//! private key (`agent.key`, made here, never sent anywhere) and the
//! certificate the host CA issued for it (`agent.crt`). All 0600. The
//! control plane is trusted only with the fleet CA (`ca.crt`); other
//! agents' endpoints with the host CA (`host-ca.crt`, and the fleet CA for
//! hosts whose certificate predates the host CA). An agent whose directory
//! has no `host-ca.crt` yet (an older version joined it) renews its
//! certificate at start, which brings both.
//!
//! A new host spends a one-time join token for a credential and, with a
//! signing request in the same call, its certificate. A host that has a
//! credential but no certificate asks for one. The heartbeat answer says
//! when the certificate is due for renewal (`renew`).

use std::path::Path;

use crate::config::AgentConfig;

/// What the agent presents: a bearer credential and a client certificate.
#[derive(Clone)]
pub struct HostIdentity {
    pub credential: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The fleet CA: the only CA trusted for the control plane.
    pub ca_pem: String,
    /// The host CA (empty until the control plane sent it): trusted, with
    /// the fleet CA, for other agents' endpoints.
    pub host_ca_pem: String,
}

impl HostIdentity {
    /// The CAs trusted for agent endpoints (and their clients), PEM.
    pub fn peer_cas_pem(&self) -> String {
        if self.host_ca_pem.is_empty() {
            return self.ca_pem.clone();
        }
        format!("{}\n{}", self.host_ca_pem.trim_end(), self.ca_pem)
    }
}

fn read_secret(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A client for the control plane before the host has a certificate.
fn bootstrap_client(ca_pem: Option<&str>) -> anyhow::Result<reqwest::Client> {
    pgfleet_tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    Ok(builder.build()?)
}

/// An HTTP client for the control plane: trusts the fleet CA only (a host
/// certificate never passes as the control plane) and presents the host's
/// certificate.
pub fn client(identity: &HostIdentity) -> anyhow::Result<reqwest::Client> {
    client_trusting(identity, &identity.ca_pem)
}

/// An HTTP client for other agents' endpoints (monitors): trusts the host
/// CA (and the fleet CA, for certificates older than the host CA) and
/// presents the host's certificate.
pub fn peer_client(identity: &HostIdentity) -> anyhow::Result<reqwest::Client> {
    client_trusting(identity, &identity.peer_cas_pem())
}

fn client_trusting(identity: &HostIdentity, roots_pem: &str) -> anyhow::Result<reqwest::Client> {
    pgfleet_tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .connect_timeout(std::time::Duration::from_millis(500));
    // Only these roots: not the system's, which could vouch for an address
    // of ours.
    let roots = reqwest::Certificate::from_pem_bundle(roots_pem.as_bytes())?;
    builder = builder.tls_certs_only(roots);
    Ok(builder
        .identity(reqwest::Identity::from_pem(
            &pgfleet_tls::client_identity_pem(&identity.cert_pem, &identity.key_pem),
        )?)
        .build()?)
}

fn url(config: &AgentConfig, path: &str) -> String {
    format!("{}{path}", config.server_url.trim_end_matches('/'))
}

/// Posts `body`, retrying while the control plane is still starting.
async fn post(
    client: &reqwest::Client,
    url: &str,
    credential: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut last_error = String::new();
    for _ in 0..50 {
        let mut request = client.post(url).json(body);
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(response.json().await?),
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let answer: serde_json::Value = response.json().await.unwrap_or_default();
                let message = answer["message"].as_str().unwrap_or("refused").to_string();
                anyhow::bail!("the control plane refused ({status}): {message}");
            }
            Ok(response) => last_error = format!("HTTP {}", response.status()),
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("cannot reach the control plane at {url}: {last_error}")
}

/// Reads the identity from `DATA_DIR`, joining or asking for a certificate
/// when something is missing.
pub async fn obtain(config: &AgentConfig) -> anyhow::Result<HostIdentity> {
    let dir = &config.data_dir;
    finish_pending_pair(dir)?;
    let mut ca_pem = config
        .ca_pem
        .clone()
        .or_else(|| read_secret(&dir.join("ca.crt")));
    let client = bootstrap_client(ca_pem.as_deref())?;
    let credential = match read_secret(&dir.join("agent.credential")) {
        Some(credential) => credential,
        None => {
            let Some(join_token) = &config.join_token else {
                anyhow::bail!("host {} has no credential yet: start the agent with a join token (`pgfleet host join-token`)", config.name);
            };
            let (key_pem, csr_pem) = pgfleet_tls::key_and_csr(&config.name)?;
            let body = serde_json::json!({
                "host": config.name, "join_token": join_token,
                "address": config.address, "csr_pem": csr_pem,
                "failure_domain": config.failure_domain,
            });
            let answer = post(&client, &url(config, "/api/v1/agents/join"), None, &body)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("{e} (a used, expired or unknown join token is refused: ask for a new one with `pgfleet host join-token`)")
                })?;
            let credential = answer["credential"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            pgfleet_tls::write_private(&dir.join("agent.credential"), &credential)?;
            save_certificate(dir, &answer, &key_pem, &mut ca_pem)?;
            tracing::info!(host = %config.name, "joined the fleet");
            credential
        }
    };
    if read_secret(&dir.join("agent.key")).is_none()
        || read_secret(&dir.join("agent.crt")).is_none()
    {
        let (key_pem, csr_pem) = pgfleet_tls::key_and_csr(&config.name)?;
        let body = serde_json::json!({"address": config.address, "csr_pem": csr_pem});
        let answer = post(
            &client,
            &url(config, "/api/v1/agents/certificate"),
            Some(&credential),
            &body,
        )
        .await?;
        save_certificate(dir, &answer, &key_pem, &mut ca_pem)?;
        tracing::info!(host = %config.name, "obtained a host certificate");
    }
    let ca_pem =
        ca_pem.ok_or_else(|| anyhow::anyhow!("no fleet CA: start the agent with --ca-file"))?;
    let cert_pem = read_secret(&dir.join("agent.crt")).unwrap_or_default();
    if let Some(expired_at) = expired_at(&cert_pem, pgfleet_core::time::now_ms())? {
        anyhow::bail!(
            "the certificate of host {} expired {} s ago (the agent was down longer than a \
             third of its lifetime): remove the host (`pgfleet host remove {}`), delete {}, \
             and join it again with a new join token",
            config.name,
            (pgfleet_core::time::now_ms() - expired_at) / 1000,
            config.name,
            dir.display()
        );
    }
    let identity = HostIdentity {
        credential,
        cert_pem,
        key_pem: read_secret(&dir.join("agent.key")).unwrap_or_default(),
        ca_pem,
        host_ca_pem: read_secret(&dir.join("host-ca.crt")).unwrap_or_default(),
    };
    if identity.host_ca_pem.is_empty() {
        // Joined by an older version: its certificate came from the fleet
        // CA. A renewal brings one from the host CA, and the host CA.
        let renewed = renew(config, &identity).await.map_err(|e| {
            anyhow::anyhow!(
                "renewing the certificate of host {} for the host CA: {e:#}",
                config.name
            )
        })?;
        tracing::info!(host = %config.name, "host certificate renewed from the host CA");
        return Ok(renewed);
    }
    Ok(identity)
}

/// When the certificate in `pem` expired (ms since the epoch), if it has.
fn expired_at(pem: &str, now_ms: i64) -> anyhow::Result<Option<i64>> {
    let der = pgfleet_tls::first_certificate(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| anyhow::anyhow!("the host certificate cannot be read: {e}"))?;
    let not_after = cert.validity().not_after.timestamp() * 1000;
    Ok((not_after <= now_ms).then_some(not_after))
}

/// Keeps the certificate of a join or certificate answer (and the CA, if
/// the agent was not given one).
fn save_certificate(
    dir: &Path,
    answer: &serde_json::Value,
    key_pem: &str,
    ca_pem: &mut Option<String>,
) -> anyhow::Result<()> {
    let Some(cert_pem) = answer["certificate_pem"].as_str() else {
        anyhow::bail!("the control plane issued no certificate");
    };
    install_pair(dir, key_pem, cert_pem)?;
    if let Some(host_ca) = answer["host_ca_pem"].as_str().filter(|p| !p.is_empty()) {
        std::fs::write(dir.join("host-ca.crt"), host_ca)?;
    }
    if ca_pem.is_none() {
        if let Some(ca) = answer["ca_pem"].as_str() {
            std::fs::write(dir.join("ca.crt"), ca)?;
            *ca_pem = Some(ca.to_string());
        }
    }
    Ok(())
}

/// The file that makes replacing `agent.key` and `agent.crt` atomic: both
/// are written here first (one file, renamed into place), then installed;
/// a crash in between is finished at the next start.
const PENDING_PAIR: &str = "agent.pair.pending";

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyPair {
    key_pem: String,
    cert_pem: String,
}

/// Replaces the key and certificate together: a crash leaves either the
/// old pair or the new one, never a key with another key's certificate.
fn install_pair(dir: &Path, key_pem: &str, cert_pem: &str) -> anyhow::Result<()> {
    let pending = dir.join(PENDING_PAIR);
    let pair = KeyPair {
        key_pem: key_pem.to_string(),
        cert_pem: cert_pem.to_string(),
    };
    pgfleet_tls::write_private(&pending, &serde_json::to_string(&pair)?)?;
    finish_pending_pair(dir)
}

/// Installs a key pair whose replacement was interrupted, if any.
fn finish_pending_pair(dir: &Path) -> anyhow::Result<()> {
    let pending = dir.join(PENDING_PAIR);
    let Ok(text) = std::fs::read_to_string(&pending) else {
        return Ok(());
    };
    // A pending file that cannot be read was never renamed into place
    // whole (write_private renames only complete files): not possible,
    // but a broken one must not replace a working pair.
    let Ok(pair) = serde_json::from_str::<KeyPair>(&text) else {
        std::fs::remove_file(&pending)?;
        return Ok(());
    };
    pgfleet_tls::write_private(&dir.join("agent.key"), &pair.key_pem)?;
    pgfleet_tls::write_private(&dir.join("agent.crt"), &pair.cert_pem)?;
    std::fs::remove_file(&pending)?;
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(())
}

/// A new key and certificate, asked for with the current one; the old
/// certificate keeps working at the control plane until the new one is
/// first presented, so a lost answer is retried with it.
pub async fn renew(config: &AgentConfig, current: &HostIdentity) -> anyhow::Result<HostIdentity> {
    let (key_pem, csr_pem) = pgfleet_tls::key_and_csr(&config.name)?;
    let body = serde_json::json!({"address": config.address, "csr_pem": csr_pem});
    // A generous timeout: a renewal the control plane made but whose answer
    // was lost would leave the agent with a replaced certificate.
    let answer = client(current)?
        .post(url(config, "/api/v1/agents/certificate"))
        .timeout(std::time::Duration::from_secs(15))
        .bearer_auth(&current.credential)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json::<serde_json::Value>()
        .await?;
    let mut ca = Some(current.ca_pem.clone());
    save_certificate(&config.data_dir, &answer, &key_pem, &mut ca)?;
    Ok(HostIdentity {
        credential: current.credential.clone(),
        cert_pem: answer["certificate_pem"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        key_pem,
        ca_pem: current.ca_pem.clone(),
        host_ca_pem: answer["host_ca_pem"]
            .as_str()
            .filter(|p| !p.is_empty())
            .map(String::from)
            .unwrap_or_else(|| current.host_ca_pem.clone()),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_interrupted_key_replacement_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        pgfleet_tls::write_private(&path.join("agent.key"), "old key").unwrap();
        pgfleet_tls::write_private(&path.join("agent.crt"), "old cert").unwrap();
        // The agent stopped after the new pair was saved, before it was
        // installed: the files still hold the old pair.
        let pair = super::KeyPair {
            key_pem: "new key".into(),
            cert_pem: "new cert".into(),
        };
        pgfleet_tls::write_private(
            &path.join(super::PENDING_PAIR),
            &serde_json::to_string(&pair).unwrap(),
        )
        .unwrap();
        super::finish_pending_pair(path).unwrap();
        let read = |name: &str| std::fs::read_to_string(path.join(name)).unwrap();
        assert_eq!(
            (read("agent.key"), read("agent.crt")),
            ("new key".into(), "new cert".into())
        );
        assert!(!path.join(super::PENDING_PAIR).exists());
        // Nothing pending: nothing changes.
        super::finish_pending_pair(path).unwrap();
        assert_eq!(read("agent.key"), "new key");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key stays private");
    }

    #[test]
    fn an_expired_certificate_is_recognised() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["host-1".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        let old = params.self_signed(&key).unwrap().pem();
        let now = pgfleet_core::time::now_ms();
        assert_eq!(super::expired_at(&old, now).unwrap(), Some(978_307_200_000));
        let fresh = rcgen::CertificateParams::new(vec!["host-1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        assert_eq!(super::expired_at(&fresh, now).unwrap(), None);
        assert!(super::expired_at("garbage", now).is_err());
    }
}
