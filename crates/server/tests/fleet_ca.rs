//! The fleet CA (and the host CA, kept the same way): its key lives in a private file, never in the metadata
//! store (older fleets' keys move out at start); a lost key stops the start
//! instead of silently making a new CA; a user's own CA and API certificate
//! are used as given.

use pgfleet_server::tls::{CaFiles, FleetCa};
use pgfleet_server::ServerConfig;
use tokio_util::sync::CancellationToken;

fn mode(path: &std::path::Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

#[tokio::test]
async fn the_ca_key_is_a_private_file_and_moves_out_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = pgfleet_store::open(&format!("sqlite:{}", dir.path().join("m.db").display()))
        .await
        .unwrap();
    let first = FleetCa::load_or_create(store.as_ref(), dir.path(), &CaFiles::default())
        .await
        .unwrap();
    let key_path = dir.path().join("ca.key");
    assert_eq!(mode(&key_path), 0o600);
    assert!(store.get_meta("ca_key").await.unwrap().is_none());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
        first.cert_pem
    );

    // An older fleet kept the key in the store: it moves to the file.
    let key = std::fs::read_to_string(&key_path).unwrap();
    store.put_meta("ca_key", &key).await.unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let again = FleetCa::load_or_create(store.as_ref(), dir.path(), &CaFiles::default())
        .await
        .unwrap();
    assert_eq!(again.cert_pem, first.cert_pem, "the same CA");
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key);
    assert_eq!(store.get_meta("ca_key").await.unwrap().as_deref(), Some(""));

    // A lost key is an error that says what to do, not a new CA.
    std::fs::remove_file(&key_path).unwrap();
    let error = FleetCa::load_or_create(store.as_ref(), dir.path(), &CaFiles::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("ca.key") && error.contains("missing"),
        "{error}"
    );
}

#[tokio::test]
async fn the_host_ca_is_a_separate_root_kept_like_the_fleet_ca() {
    let dir = tempfile::tempdir().unwrap();
    let store = pgfleet_store::open(&format!("sqlite:{}", dir.path().join("m.db").display()))
        .await
        .unwrap();
    let fleet = FleetCa::load_or_create(store.as_ref(), dir.path(), &CaFiles::default())
        .await
        .unwrap();
    let host = FleetCa::load_or_create_host_ca(store.as_ref(), dir.path())
        .await
        .unwrap();
    assert_ne!(host.cert_pem, fleet.cert_pem, "its own root");
    let key_path = dir.path().join("host-ca.key");
    assert_eq!(mode(&key_path), 0o600);
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert!(
        !key.is_empty()
            && !std::fs::read_to_string(dir.path().join("ca.key"))
                .unwrap()
                .contains(key.trim())
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("host-ca.crt")).unwrap(),
        host.cert_pem
    );
    let again = FleetCa::load_or_create_host_ca(store.as_ref(), dir.path())
        .await
        .unwrap();
    assert_eq!(again.cert_pem, host.cert_pem, "the same host CA");
    // A lost key stops the start with what to do.
    std::fs::remove_file(&key_path).unwrap();
    let error = FleetCa::load_or_create_host_ca(store.as_ref(), dir.path())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("host-ca.key") && error.contains("missing"),
        "{error}"
    );
}

fn user_ca() -> (
    rcgen::Certificate,
    rcgen::Issuer<'static, rcgen::KeyPair>,
    String,
) {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ACME internal CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let key_pem = key.serialize_pem();
    (cert, rcgen::Issuer::new(params, key), key_pem)
}

async fn health_trusting(addr: std::net::SocketAddr, ca_pem: &str) -> Option<u16> {
    pgfleet_tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    client
        .get(format!("https://127.0.0.1:{}/api/v1/health", addr.port()))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn a_users_ca_and_api_certificate_are_used_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, issuer, ca_key) = user_ca();
    std::fs::write(dir.path().join("acme-ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path().join("acme-ca.key"), &ca_key).unwrap();
    let mut config = ServerConfig::local(dir.path().join("fleet"));
    config.api_addr = "127.0.0.1:0".parse().unwrap();
    config.dns_addr = "127.0.0.1:0".parse().unwrap();
    config.tls = true;
    config.ca = CaFiles {
        cert: Some(dir.path().join("acme-ca.pem")),
        key: Some(dir.path().join("acme-ca.key")),
    };
    let cancel = CancellationToken::new();
    let running = pgfleet_server::start(config.clone(), cancel.clone())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fleet/ca.crt")).unwrap(),
        ca_cert.pem(),
        "clients are told to trust the user's CA"
    );
    assert!(
        !dir.path().join("fleet/ca.key").exists(),
        "no CA of our own"
    );
    assert_eq!(
        health_trusting(running.api_addr, &ca_cert.pem()).await,
        Some(200)
    );
    cancel.cancel();
    running.join().await;

    // The user's own API certificate (here issued by their CA).
    let api_key = rcgen::KeyPair::generate().unwrap();
    let api_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&api_key, &issuer)
        .unwrap();
    std::fs::write(dir.path().join("api.pem"), api_cert.pem()).unwrap();
    std::fs::write(dir.path().join("api.key"), api_key.serialize_pem()).unwrap();
    config.tls_cert = Some(dir.path().join("api.pem"));
    config.tls_key = Some(dir.path().join("api.key"));
    let cancel = CancellationToken::new();
    let running = pgfleet_server::start(config, cancel.clone()).await.unwrap();
    assert_eq!(
        health_trusting(running.api_addr, &ca_cert.pem()).await,
        Some(200)
    );
    // A client trusting another CA cannot talk to it.
    let (other, _, _) = user_ca();
    assert_eq!(health_trusting(running.api_addr, &other.pem()).await, None);
    cancel.cancel();
    running.join().await;
}
