//! A control plane over HTTPS on a loopback port with a SQLite store in a
//! temporary folder, and clients that trust its CA.

#![allow(dead_code)]

use pgfleet_server::ServerConfig;
use tokio_util::sync::CancellationToken;

pub struct ControlPlane {
    pub running: Option<pgfleet_server::RunningServer>,
    pub cancel: CancellationToken,
    pub dir: tempfile::TempDir,
    pub admin_token: String,
    pub ca_pem: String,
}

impl ControlPlane {
    pub async fn start(adjust: impl FnOnce(&mut ServerConfig)) -> ControlPlane {
        pgfleet_tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::local(dir.path().join("fleet"));
        config.api_addr = "127.0.0.1:0".parse().unwrap();
        config.dns_addr = "127.0.0.1:0".parse().unwrap();
        config.tls = true;
        adjust(&mut config);
        let cancel = CancellationToken::new();
        let running = pgfleet_server::start(config, cancel.clone()).await.unwrap();
        let admin_token = running.state.tokens.admin.clone();
        let ca_pem = running.state.ca.cert_pem.clone();
        ControlPlane {
            running: Some(running),
            cancel,
            dir,
            admin_token,
            ca_pem,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().api_addr
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.running.as_ref().unwrap().state.config.tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}{path}", self.addr().port())
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .redirect(reqwest::redirect::Policy::none())
    }

    /// HTTP/2, as curl and browsers speak it over TLS (ALPN h2).
    pub fn http2(&self) -> reqwest::Client {
        self.builder().http2_prior_knowledge().build().unwrap()
    }

    pub fn http1(&self) -> reqwest::Client {
        self.builder().http1_only().build().unwrap()
    }

    /// An HTTP/1.1 client whose connections come from `source` (a loopback
    /// address other than 127.0.0.1 stands for another machine).
    pub fn http1_from(&self, source: &str) -> reqwest::Client {
        let source: std::net::IpAddr = source.parse().unwrap();
        self.builder()
            .http1_only()
            .local_address(source)
            .build()
            .unwrap()
    }

    /// A rustls client configuration trusting the fleet CA, for raw sockets.
    pub fn tls_client(&self) -> std::sync::Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in pgfleet_tls::certificates(&self.ca_pem).unwrap() {
            roots.add(cert).unwrap();
        }
        std::sync::Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A TLS connection to the API offering `alpn` (e.g. `h2`, `http/1.1`).
    pub async fn connect(
        &self,
        alpn: &[&[u8]],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut tls = (*self.tls_client()).clone();
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
        let tcp = tokio::net::TcpStream::connect(self.addr()).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await
    }

    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running.join().await;
        }
    }
}
