//! Hostile input, derived from the OpenAPI document: every route is called
//! without a token, with a viewer token, and with malformed bodies. The
//! answers are 401 / 403 / 400 (or 404/409/413) — never a server error.
//! And a holder of a join token: it never buys the control plane's address
//! nor a certificate the CLI would take for the control plane's; a host is
//! bound to the address and failure domain it joined with; hosts that
//! joined but never beat are listed, removable and expire. A local user
//! reads no secret from the store's files.

mod common;

use common::Fleet;

fn routes() -> Vec<(String, String)> {
    let document = pgfleet_server::openapi::document();
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

fn concrete(path: &str) -> String {
    path.replace("{db}", "sec-db")
        .replace("{node}", "sec-db")
        .replace("{id}", "1")
        .replace("{name}", "nobody")
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&'static str>,
) -> u16 {
    let url = format!("{base}{path}");
    let mut request = http.request(method.parse().unwrap(), &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_strangers_viewers_and_garbage_without_server_errors() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "sec-db"]);
    let viewer = fleet
        .cli_ok(&["token", "create", "--role", "viewer", "--name", "reader"])
        .trim()
        .to_string();
    let admin = fleet.token();
    let http =
        pgfleet::client::http_client(fleet.ca().as_deref(), std::time::Duration::from_secs(10));
    let open = ["/api/v1/health", "/api/v1/openapi.json"];
    // Open, but useless without a one-time join token in its body.
    let join_route = "/api/v1/agents/join";
    for (method, path) in routes() {
        let target = concrete(&path);
        let agent_route = path.starts_with("/api/v1/agents/");
        // No token.
        let status = call(&http, &fleet.api, &method, &target, None, None).await;
        if open.contains(&path.as_str()) {
            assert_eq!(status, 200, "{method} {path} is open");
            continue;
        }
        if path == join_route {
            assert_eq!(status, 400, "{method} {path} without a body");
            let status = call(
                &http,
                &fleet.api,
                &method,
                &target,
                None,
                Some("{\"host\": \"h\", \"join_token\": \"guess\"}"),
            )
            .await;
            assert_eq!(status, 401, "a guessed join token");
            continue;
        }
        assert_eq!(status, 401, "{method} {path} without a token");
        // A viewer token.
        let status = call(&http, &fleet.api, &method, &target, Some(&viewer), None).await;
        if agent_route {
            assert_eq!(
                status, 401,
                "{method} {path}: API tokens are not agent credentials"
            );
        } else if method == "GET" {
            // Where alerts go, and the external DNS server pgfleet feeds
            // (its address, zone and errors), are for admins only.
            let reveals =
                path.ends_with("/uri") || path == "/api/v1/alert-targets" || path == "/api/v1/dns";
            assert!(
                if reveals {
                    status == 403
                } else {
                    status < 500 && status != 401 && status != 403
                },
                "{method} {path} as viewer: {status}"
            );
        } else {
            assert_eq!(status, 403, "{method} {path} as viewer");
        }
        // Malformed bodies with an admin token.
        if method == "POST" && !agent_route {
            for body in [
                "{not json",
                "[]",
                "{\"name\": 12}",
                "{\"name\": \"x\", \"unknown\": true}",
                "null",
            ] {
                let status = call(
                    &http,
                    &fleet.api,
                    &method,
                    &target,
                    Some(&admin),
                    Some(body),
                )
                .await;
                assert!(
                    (400..500).contains(&status),
                    "{method} {path} with {body:?}: {status}"
                );
            }
        }
    }
    // Oversized bodies are refused: a 413, or (when the server answers and
    // closes before the client finished sending) a connection cut mid-body.
    // Its own clients: the server closes that connection, and a pooled
    // connection must not carry the refusal into the next request.
    let once =
        || pgfleet::client::http_client(fleet.ca().as_deref(), std::time::Duration::from_secs(10));
    let huge = "x".repeat(2 * 1024 * 1024);
    let sent = once()
        .post(format!("{}/api/v1/databases", fleet.api))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    match sent {
        Ok(response) => assert_eq!(response.status().as_u16(), 413),
        Err(error) => assert!(error.is_request() || error.is_body(), "{error:?}"),
    }
    let health = once()
        .get(format!("{}/api/v1/health", fleet.api))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "the server is fine after it");
    // Viewers read, but never see passwords; revoked tokens stop working.
    let reader = pgfleet::client::Client::with_ca(&fleet.api, &viewer, fleet.ca().as_deref());
    assert!(reader.database("sec-db", false).await.is_ok());
    assert_eq!(
        reader.database("sec-db", true).await.unwrap_err().status,
        Some(403)
    );
    assert_eq!(
        reader.uri("sec-db", false).await.unwrap_err().status,
        Some(403)
    );
    fleet.cli_ok(&["token", "revoke", "reader"]);
    assert_eq!(reader.list_databases().await.unwrap_err().status, Some(401));
    // The API speaks TLS with a certificate from the fleet CA: a client that
    // does not trust that CA cannot talk to it.
    assert!(fleet.api.starts_with("https://"));
    let untrusting = pgfleet::client::Client::new(&fleet.api, &admin);
    assert_eq!(untrusting.list_databases().await.unwrap_err().status, None);
    // Stored tokens are hashed, and the token file is private.
    let mode = std::fs::metadata(fleet.dir().join("admin.token"))
        .unwrap()
        .permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0);
}

/// Joins `host` over the API with `join_token`; the status and answer.
async fn join(
    fleet: &Fleet,
    host: &str,
    join_token: &str,
    address: Option<&str>,
) -> (u16, serde_json::Value) {
    let http =
        pgfleet::client::http_client(fleet.ca().as_deref(), std::time::Duration::from_secs(10));
    let mut body = serde_json::json!({"host": host, "join_token": join_token});
    if let Some(address) = address {
        body["address"] = address.into();
        body["csr_pem"] = pgfleet_tls::key_and_csr(host).unwrap().1.into();
    }
    let response = http
        .post(format!("{}/api/v1/agents/join", fleet.api))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

fn join_token(fleet: &Fleet) -> String {
    fleet
        .cli_ok(&["host", "join-token", "--ttl", "60"])
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_token_buys_neither_the_control_planes_address_nor_its_certificate() {
    let fleet = Fleet::up(1);
    let token = join_token(&fleet);
    let api_ip = fleet
        .api
        .trim_start_matches("https://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let host_1 = fleet.host_address(1);
    let reserved = fleet.host_address(40);
    let (status, _) = join(&fleet, "early", &token, Some(&reserved)).await;
    assert_eq!(status, 200, "a first join reserves its address");
    let token = join_token(&fleet);
    for (address, expected) in [
        (api_ip.as_str(), 409),
        ("0.0.0.0", 400),
        ("224.0.0.1", 400),
        ("255.255.255.255", 400),
        (host_1.as_str(), 409),
        (reserved.as_str(), 409),
    ] {
        let (status, answer) = join(&fleet, "evil-1", &token, Some(address)).await;
        assert_eq!(status, expected, "join with {address}: {answer}");
    }
    // None of that spent the token; a host's own address works.
    let own = fleet.host_address(41);
    let (key_pem, csr_pem) = pgfleet_tls::key_and_csr("evil-1").unwrap();
    let http =
        pgfleet::client::http_client(fleet.ca().as_deref(), std::time::Duration::from_secs(10));
    let joined: serde_json::Value = http
        .post(format!("{}/api/v1/agents/join", fleet.api))
        .json(&serde_json::json!({"host": "evil-1", "join_token": token, "address": own, "csr_pem": csr_pem}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    // A TLS server with that fresh host certificate, on the host's address:
    // the CLI's client refuses it and never sends it the admin token.
    let cert_pem = joined["certificate_pem"].as_str().unwrap();
    let host_ca = joined["host_ca_pem"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let tls = pgfleet_tls::server_config(
        cert_pem,
        None,
        &key_pem,
        pgfleet_tls::ClientAuth::Optional(if host_ca.is_empty() {
            fleet.ca().unwrap()
        } else {
            host_ca
        }),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind(format!("{own}:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorder = seen.clone();
    let router = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let recorder = recorder.clone();
        async move {
            let authorization = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or_default().to_string())
                .unwrap_or_default();
            recorder.lock().unwrap().push(authorization);
            axum::Json(Vec::<serde_json::Value>::new())
        }
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(pgfleet_tls::serve(
        listener,
        Some(tls),
        router,
        pgfleet_tls::HttpLimits::default(),
        cancel.clone(),
    ));
    let impostor = pgfleet::client::Client::with_ca(
        &format!("https://{own}:{port}"),
        &fleet.token(),
        fleet.ca().as_deref(),
    );
    let error = impostor.hosts().await.unwrap_err();
    assert_eq!(error.status, None, "refused at the TLS handshake: {error}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the admin token went to the impostor"
    );
    cancel.cancel();
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_are_bound_to_their_join_and_hosts_that_never_beat_are_listed_removed_and_expired() {
    let fleet = Fleet::up_with(1, &["--joined-host-expiry-secs", "8"]);
    let api = fleet.client();
    let host_1 = api.hosts().await.unwrap().remove(0);
    // A host is bound to the address it joined with and the failure domain
    // of its first heartbeat (or of its join, as agents send it): it cannot
    // beat with another host's address or move to another failure domain.
    let address = fleet.host_address(20);
    let (key_pem, csr_pem) = pgfleet_tls::key_and_csr("evil-2").unwrap();
    let http =
        pgfleet::client::http_client(fleet.ca().as_deref(), std::time::Duration::from_secs(10));
    let token = join_token(&fleet);
    let joined: serde_json::Value = http
        .post(format!("{}/api/v1/agents/join", fleet.api))
        .json(&serde_json::json!({"host": "evil-2", "join_token": token, "address": address, "csr_pem": csr_pem}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let identity =
        pgfleet_tls::client_identity_pem(joined["certificate_pem"].as_str().unwrap(), &key_pem);
    let evil = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(fleet.ca().unwrap().as_bytes()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    let credential = joined["credential"].as_str().unwrap().to_string();
    let beat = |address: &str, failure_domain: &str| {
        let request = evil
            .post(format!("{}/api/v1/agents/heartbeat", fleet.api))
            .bearer_auth(&credential)
            .json(&serde_json::json!({"host": {"name": "evil-2", "address": address, "failure_domain": failure_domain, "agent_port": 7071}, "pg_version": 15, "instances": []}));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    // Listed as joined before its first heartbeat.
    let listed = api.hosts().await.unwrap();
    let evil_view = listed
        .iter()
        .find(|h| h.name == "evil-2")
        .expect("evil-2 is listed");
    assert_eq!(evil_view.status, pgfleet_core::HostStatus::Joined);
    assert_eq!(evil_view.address, address);
    let (status, message) = beat(&host_1.address, "fd-evil").await;
    assert_eq!(status, 409, "another host's address: {message}");
    assert!(message.contains("bound to address"), "{message}");
    // Its join named no failure domain: the first heartbeat binds it.
    assert_eq!(beat(&address, "fd-evil").await.0, 200);
    let (status, message) = beat(&address, &host_1.failure_domain).await;
    assert_eq!(status, 409, "another failure domain: {message}");
    assert!(message.contains("bound to failure domain"), "{message}");
    assert_eq!(beat(&address, "fd-evil").await.0, 200);
    let listed = api.hosts().await.unwrap();
    let host_1_now = listed.iter().find(|h| h.name == host_1.name).unwrap();
    assert_eq!(host_1_now.address, host_1.address);
    assert_eq!(
        listed
            .iter()
            .filter(|h| h.address == host_1.address)
            .count(),
        1,
        "{listed:?}"
    );

    // A host that joined but never beat: listed, removable (its reserved
    // address is free again), and forgotten after the expiry.
    let ghost_address = fleet.host_address(21);
    let (status, _) = join(&fleet, "ghost", &join_token(&fleet), Some(&ghost_address)).await;
    assert_eq!(status, 200);
    let out = fleet.cli_ok(&["host", "list"]);
    assert!(out.contains("ghost") && out.contains("joined"), "{out}");
    fleet.cli_ok(&["host", "remove", "ghost"]);
    assert!(!fleet.cli_ok(&["host", "list"]).contains("ghost"));
    let (status, _) = join(&fleet, "ghost-2", &join_token(&fleet), Some(&ghost_address)).await;
    assert_eq!(status, 200, "the removed host's address is free again");
    common::eventually(
        std::time::Duration::from_secs(30),
        "ghost-2 expires",
        || async {
            let hosts = api.hosts().await.unwrap();
            (!hosts.iter().any(|h| h.name == "ghost-2")).then_some(())
        },
    )
    .await;
    assert!(
        api.hosts()
            .await
            .unwrap()
            .iter()
            .any(|h| h.name == "evil-2"),
        "a host that beat stays"
    );
}

fn mode(path: &std::path::Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stores_files_are_private_and_hold_no_database_secret_in_clear() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "sealed-db"]);
    let dir = fleet.dir();
    // What another local user would find: modes and contents, taken before
    // this test opens the store itself.
    let mut files = Vec::new();
    for name in ["pgfleet.db", "pgfleet.db-wal", "pgfleet.db-shm"] {
        let path = dir.join(name);
        if path.exists() {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
            files.push((name, mode(&path), text));
        }
    }
    assert!(files.len() >= 2, "the database and its WAL were read");
    assert_eq!(
        mode(dir) & 0o066,
        0,
        "nobody else lists or writes the data dir"
    );
    // Read the record without changing the store: through the key when
    // there is one (an older version has none and stores clear values).
    let raw = pgfleet_store::open(&format!("sqlite:{}", dir.join("pgfleet.db").display()))
        .await
        .unwrap();
    let store: std::sync::Arc<dyn pgfleet_store::Store> =
        match std::fs::read_to_string(pgfleet_store::sealed::key_path(dir)) {
            Ok(text) => std::sync::Arc::new(pgfleet_store::SealedStore::new(
                raw,
                pgfleet_store::sealed::SecretsKey::parse(&text).unwrap(),
            )),
            Err(_) => raw,
        };
    let db = store.get_database("sealed-db").await.unwrap().unwrap();
    let uri = fleet.cli_ok(&["db", "uri", "sealed-db"]);
    assert!(
        uri.contains(&db.admin_password),
        "the API still gives the password"
    );
    let secrets = [
        ("admin password", &db.admin_password),
        ("replication password", &db.replication_password),
        ("superuser password", &db.superuser_password),
        ("monitor token", &db.monitor_token),
    ];
    for (name, file_mode, text) in &files {
        for (what, secret) in &secrets {
            assert!(secret.len() >= 32, "{what}");
            assert!(
                !text.contains(secret.as_str()),
                "the {what} is in {name} in clear"
            );
        }
        assert_eq!(*file_mode, 0o600, "{name}");
    }
    assert_eq!(mode(&pgfleet_store::sealed::key_path(dir)), 0o600);
}

/// A certificate for `host` at `address` on the host's own key, issued by
/// the fleet CA, as versions before the host CA issued them.
fn fleet_ca_host_certificate(dir: &std::path::Path, host: &str, address: &str) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&read("ca.key")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca.crt"), ca_key).unwrap();
    let host_key = rcgen::KeyPair::from_pem(&read(&format!("hosts/{host}/agent.key"))).unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_string(), address.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(30);
    params.signed_by(&host_key, &issuer).unwrap().pem()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_a_fleet_ca_certificate_keeps_working_and_moves_to_the_host_ca() {
    let mut fleet = Fleet::up(1);
    let address = fleet.host_address(1);
    fleet.stop();
    // host-1 as an older version left it: a fleet-CA certificate (pinned by
    // the control plane) and no host CA in its directory.
    let dir = fleet.dir().to_path_buf();
    let old_cert = fleet_ca_host_certificate(&dir, "host-1", &address);
    let old_fingerprint = pgfleet_tls::pem_fingerprint(&old_cert).unwrap();
    std::fs::write(dir.join("hosts/host-1/agent.crt"), &old_cert).unwrap();
    std::fs::remove_file(dir.join("hosts/host-1/host-ca.crt")).unwrap();
    {
        let store = pgfleet_store::open(&format!("sqlite:{}", dir.join("pgfleet.db").display()))
            .await
            .unwrap();
        let text = store.get_meta("host_identities").await.unwrap().unwrap();
        let mut identities: serde_json::Value = serde_json::from_str(&text).unwrap();
        identities["certificates"]["host-1"]["fingerprint"] = old_fingerprint.clone().into();
        store
            .put_meta("host_identities", &identities.to_string())
            .await
            .unwrap();
    }
    // The control plane still takes the old certificate (the agent renews
    // with it at start) and the host comes back with one from the host CA.
    fleet.start();
    let new_cert = std::fs::read_to_string(dir.join("hosts/host-1/agent.crt")).unwrap();
    assert_ne!(
        pgfleet_tls::pem_fingerprint(&new_cert).unwrap(),
        old_fingerprint
    );
    let der = pgfleet_tls::first_certificate(&new_cert).unwrap();
    assert!(
        String::from_utf8_lossy(der.as_ref()).contains("pgfleet host CA"),
        "the renewed certificate comes from the host CA"
    );
    assert!(dir.join("hosts/host-1/host-ca.crt").exists());
    let hosts = fleet.client().hosts().await.unwrap();
    assert_eq!(hosts[0].status, pgfleet_core::HostStatus::Connected);
}
