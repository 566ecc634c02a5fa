//! The typed API client the CLI (and tests, benchmarks) use.

use std::time::Duration;

use pgfleet_core::api::{
    CreateDatabaseRequest, CreateReplicaRequest, DatabaseView, ErrorBody, HostView, TaskRef,
    UriView,
};
use pgfleet_core::Task;
use serde::de::DeserializeOwned;

mod backup;

#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    pub(crate) http: reqwest::Client,
}

/// An error answer from the API, or a transport failure.
#[derive(Debug)]
pub struct ClientError {
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

pub type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// A client that trusts the system's roots (plain HTTP needs nothing).
    pub fn new(base: &str, token: &str) -> Client {
        Self::with_ca(base, token, None)
    }

    /// A client that also trusts the fleet CA (PEM), as HTTPS to the control
    /// plane needs.
    pub fn with_ca(base: &str, token: &str, ca_pem: Option<&str>) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: http_client(ca_pem, Duration::from_secs(30)),
        }
    }
}

/// An HTTP client (rustls with ring) trusting `ca_pem` in addition.
pub fn http_client(ca_pem: Option<&str>, timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(pem) = ca_pem {
        if let Ok(cert) = reqwest::Certificate::from_pem(pem.as_bytes()) {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().expect("http client")
}

impl Client {
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError {
                status: None,
                code: "unreachable".into(),
                message: format!("cannot reach the control plane at {}: {e}", self.base),
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ClientError {
            status: Some(status.as_u16()),
            code: "io".into(),
            message: e.to_string(),
        })?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => (body.error.code, body.error.message),
                Err(_) => (
                    "http".into(),
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
                ),
            };
            return Err(ClientError {
                status: Some(status.as_u16()),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError {
            status: Some(status.as_u16()),
            code: "decode".into(),
            message: format!("bad answer: {e}"),
        })
    }

    /// For answers without a body (204): only the error case is decoded.
    pub(crate) async fn send_no_content(&self, request: reqwest::RequestBuilder) -> Result<()> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError {
                status: None,
                code: "unreachable".into(),
                message: format!("cannot reach the control plane at {}: {e}", self.base),
            })?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status().as_u16();
        let body: ErrorBody = response.json().await.map_err(|e| ClientError {
            status: Some(status),
            code: "decode".into(),
            message: e.to_string(),
        })?;
        Err(ClientError {
            status: Some(status),
            code: body.error.code,
            message: body.error.message,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub async fn create_database(&self, request: &CreateDatabaseRequest) -> Result<TaskRef> {
        self.send(self.http.post(self.url("/databases")).json(request))
            .await
    }
    pub async fn list_databases(&self) -> Result<Vec<DatabaseView>> {
        self.send(self.http.get(self.url("/databases"))).await
    }
    pub async fn database(&self, name: &str, show_password: bool) -> Result<DatabaseView> {
        self.send(
            self.http
                .get(self.url(&format!("/databases/{name}?show_password={show_password}"))),
        )
        .await
    }
    pub async fn uri(&self, name: &str, resolved: bool) -> Result<UriView> {
        self.send(
            self.http
                .get(self.url(&format!("/databases/{name}/uri?resolved={resolved}"))),
        )
        .await
    }
    pub async fn delete_database(&self, name: &str) -> Result<TaskRef> {
        self.send(self.http.delete(self.url(&format!("/databases/{name}"))))
            .await
    }
    pub async fn create_replica(
        &self,
        db: &str,
        request: &CreateReplicaRequest,
    ) -> Result<TaskRef> {
        self.send(
            self.http
                .post(self.url(&format!("/databases/{db}/replicas")))
                .json(request),
        )
        .await
    }
    pub async fn promote(&self, db: &str, node: &str) -> Result<TaskRef> {
        self.send(
            self.http
                .post(self.url(&format!("/databases/{db}/nodes/{node}/promote"))),
        )
        .await
    }
    pub async fn delete_replica(&self, db: &str, node: &str) -> Result<TaskRef> {
        self.send(
            self.http
                .delete(self.url(&format!("/databases/{db}/replicas/{node}"))),
        )
        .await
    }
    pub async fn set_maintenance(&self, db: &str, node: &str, on: bool) -> Result<TaskRef> {
        let body = pgfleet_core::api::MaintenanceRequest { on };
        self.send(
            self.http
                .post(self.url(&format!("/databases/{db}/nodes/{node}/maintenance")))
                .json(&body),
        )
        .await
    }
    pub async fn create_token(&self, name: &str, role: &str) -> Result<serde_json::Value> {
        let body = serde_json::json!({"name": name, "role": role});
        self.send(self.http.post(self.url("/tokens")).json(&body))
            .await
    }
    pub async fn tokens(&self) -> Result<Vec<serde_json::Value>> {
        self.send(self.http.get(self.url("/tokens"))).await
    }
    pub async fn revoke_token(&self, name: &str) -> Result<()> {
        self.send_no_content(self.http.delete(self.url(&format!("/tokens/{name}"))))
            .await
    }
    /// A one-time join token and its expiry (ms since epoch).
    pub async fn create_join_token(&self, ttl_secs: u64) -> Result<(String, i64)> {
        let body = serde_json::json!({"ttl_secs": ttl_secs});
        let answer: serde_json::Value = self
            .send(self.http.post(self.url("/hosts/join-tokens")).json(&body))
            .await?;
        Ok((
            answer["token"].as_str().unwrap_or_default().to_string(),
            answer["expires_at_ms"].as_i64().unwrap_or(0),
        ))
    }
    pub async fn remove_host(&self, name: &str) -> Result<()> {
        self.send_no_content(self.http.delete(self.url(&format!("/hosts/{name}"))))
            .await
    }
    pub async fn events(&self, db: &str) -> Result<Vec<serde_json::Value>> {
        self.send(self.http.get(self.url(&format!("/databases/{db}/events"))))
            .await
    }
    pub async fn hosts(&self) -> Result<Vec<HostView>> {
        self.send(self.http.get(self.url("/hosts"))).await
    }
    /// `GET /api/v1/dns`: the zone and the RFC 2136 publisher's status.
    pub async fn dns(&self) -> Result<serde_json::Value> {
        self.send(self.http.get(self.url("/dns"))).await
    }
    pub async fn tasks(&self) -> Result<Vec<Task>> {
        self.send(self.http.get(self.url("/tasks"))).await
    }
    pub async fn task(&self, id: i64) -> Result<Task> {
        self.send(self.http.get(self.url(&format!("/tasks/{id}"))))
            .await
    }

    /// Polls a task until it finishes; `on_progress` sees every state.
    pub async fn wait_task(
        &self,
        id: i64,
        timeout: Duration,
        mut on_progress: impl FnMut(&Task),
    ) -> Result<Task> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let task = self.task(id).await?;
            on_progress(&task);
            if task.state.is_finished() {
                return Ok(task);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError {
                    status: None,
                    code: "timeout".into(),
                    message: format!("task {id} did not finish within {}s", timeout.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
