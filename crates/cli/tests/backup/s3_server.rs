//! A real S3-protocol server for the backup tests: moto's server
//! (`moto_server`, installed by `scripts/install-deps --test` into a venv
//! under `~/.cache/pgfleet/s3-server`) on a loopback address, behind a
//! small TLS-terminating proxy of the kit's own, whose certificate is made
//! here by a CA of the test's own (for the address both as an IP and as a
//! DNS name: pgBackRest matches DNS names only). moto's own TLS (werkzeug)
//! closes connections without a TLS close_notify, which pgBackRest's
//! OpenSSL 3 takes as an error ("unexpected eof while reading") now and
//! then; the proxy ends each connection properly. IAM
//! authentication is on: the first four requests (a user, its access key,
//! its policy, the bucket) are the only unsigned ones it accepts; every
//! later request must be signed with that key.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub ca_pem: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub dir: tempfile::TempDir,
    child: Child,
    stop_proxy: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Serves TLS on `listener` and passes each connection's bytes to and from
/// `backend` (plain TCP), on a runtime of its own until `stop` fires.
fn start_proxy(
    listener: TcpListener,
    backend: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            loop {
                let accepted = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
    });
    stop
}

/// Where `moto_server` is: `PGFLEET_MOTO_SERVER`, the venv install-deps
/// makes, or the PATH.
fn moto_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PGFLEET_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    let venv = cache.join("pgfleet/s3-server/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
}

/// A TLS certificate for `address` signed by a new CA: (CA PEM, cert PEM, key PEM).
fn certificates(address: Ipv4Addr) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pgfleet test S3 CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![address.to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::DnsName(
        address.to_string().try_into().unwrap(),
    ));
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        let mut out = String::new();
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    };
    let pairs: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect();
    pairs.join("&")
}

fn field(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let (_, rest) = xml
        .split_once(&open)
        .unwrap_or_else(|| panic!("{name} in {xml}"));
    rest.split_once(&close).unwrap().0.to_string()
}

impl S3Server {
    /// Starts the server with bucket `bucket`, or says why it cannot.
    pub async fn start(bucket: &str) -> Result<S3Server, String> {
        let Some(binary) = moto_server() else {
            return Err(
                "moto_server is not installed (scripts/install-deps --test installs it)".into(),
            );
        };
        let address = Ipv4Addr::LOCALHOST;
        let proxy = TcpListener::bind((address, 0)).unwrap();
        let port = proxy.local_addr().unwrap().port();
        let moto_port = TcpListener::bind((address, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, cert_pem, key_pem) = certificates(address);
        std::fs::write(dir.path().join("ca.crt"), &ca_pem).unwrap();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let child = Command::new(&binary)
            .args(["-H", &address.to_string(), "-p", &moto_port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{} cannot start: {e}", binary.display()))?;
        let mut server = S3Server {
            endpoint: format!("https://{address}:{port}"),
            bucket: bucket.to_string(),
            ca_pem,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            dir,
            child,
            stop_proxy: None,
        };
        let socket = SocketAddr::from((address, moto_port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&socket, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "moto_server exited ({status}): {}",
                    std::fs::read_to_string(server.dir.path().join("moto.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "moto_server listens within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        pgfleet_tls::install_crypto_provider();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                pgfleet_tls::certificates(&cert_pem).unwrap(),
                pgfleet_tls::private_key(&key_pem).unwrap(),
            )
            .unwrap();
        server.stop_proxy = Some(start_proxy(proxy, socket, Arc::new(config)));
        server.set_up().await;
        Ok(server)
    }

    /// The four unsigned requests: a user, its access key, a policy that
    /// allows everything, the bucket.
    async fn set_up(&mut self) {
        pgfleet_tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        // Unchecked while requests remain unauthenticated; the scope names
        // the service moto routes to.
        let unsigned = |service: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=SETUP/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
            )
        };
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        let mut key_xml = String::new();
        for form in [
            vec![("Action", "CreateUser"), ("UserName", "pgfleet")],
            vec![("Action", "CreateAccessKey"), ("UserName", "pgfleet")],
            vec![
                ("Action", "PutUserPolicy"),
                ("UserName", "pgfleet"),
                ("PolicyName", "all"),
                ("PolicyDocument", policy),
            ],
        ] {
            let mut form = form;
            form.push(("Version", "2010-05-08"));
            let answer = http
                .post(format!("{}/", self.endpoint))
                .header("authorization", unsigned("iam"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_body(&form))
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "{form:?}: {answer:?}");
            let text = answer.text().await.unwrap();
            if form[0].1 == "CreateAccessKey" {
                key_xml = text;
            }
        }
        self.access_key_id = field(&key_xml, "AccessKeyId");
        self.secret_access_key = field(&key_xml, "SecretAccessKey");
        let answer = http
            .put(format!("{}/{}", self.endpoint, self.bucket))
            .header("authorization", unsigned("s3"))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "bucket: {answer:?}");
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A key file (0600) with this access key, or with `secret` instead of
    /// its secret.
    pub fn key_file(&self, name: &str, secret: Option<&str>) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        let secret = secret.unwrap_or(&self.secret_access_key);
        std::fs::write(&path, format!("{}\n{secret}\n", self.access_key_id)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_proxy.take() {
            let _ = stop.send(());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
