//! Host identity over mutual TLS, on a real fleet: an agent is a credential
//! *and* the client certificate the fleet CA issued for its own key; keepers
//! and the control plane reach a monitor only with a certificate that
//! monitor admits, plus the database's monitor token; renewing or removing
//! a host revokes its old certificate.

mod common;

use std::time::Duration;

use common::Fleet;
use pgfleet_core::NodeRole;

/// An HTTP client presenting `host`'s certificate (or none) and trusting the CA.
fn client_as(fleet: &Fleet, host: Option<&str>) -> reqwest::Client {
    let pair = host.map(|host| {
        let dir = fleet.dir().join("hosts").join(host);
        (
            std::fs::read_to_string(dir.join("agent.crt")).unwrap(),
            std::fs::read_to_string(dir.join("agent.key")).unwrap(),
        )
    });
    client_with(fleet, pair)
}

fn client_with(fleet: &Fleet, cert_and_key: Option<(String, String)>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = fleet.ca().unwrap();
    // The API's certificate comes from the fleet CA, monitors' from the host CA.
    let host_ca = std::fs::read_to_string(fleet.dir().join("host-ca.crt")).unwrap();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(host_ca.as_bytes()).unwrap());
    if let Some((cert, key)) = cert_and_key {
        let identity = pgfleet_tls::client_identity_pem(&cert, &key);
        builder = builder.identity(reqwest::Identity::from_pem(&identity).unwrap());
    }
    builder.build().unwrap()
}

fn credential(fleet: &Fleet, host: &str) -> String {
    std::fs::read_to_string(
        fleet
            .dir()
            .join("hosts")
            .join(host)
            .join("agent.credential"),
    )
    .unwrap()
    .trim()
    .to_string()
}

fn beat(host: &str, address: &str) -> serde_json::Value {
    serde_json::json!({"host": {"name": host, "address": address, "failure_domain": "fd", "agent_port": 7071}, "pg_version": 15, "instances": []})
}

async fn heartbeat(
    fleet: &Fleet,
    as_host: Option<&str>,
    credential: &str,
    body: &serde_json::Value,
) -> u16 {
    client_as(fleet, as_host)
        .post(format!("{}/api/v1/agents/heartbeat", fleet.api))
        .bearer_auth(credential)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn private(path: &std::path::Path) -> bool {
    let mode = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077 == 0
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_are_certificates_and_monitors_admit_only_their_nodes() {
    let fleet = Fleet::up(4);
    fleet.cli_ok(&["db", "create", "mtls-db"]);
    fleet.cli_ok(&["replica", "create", "mtls-db", "--name", "r1"]);
    let api = fleet.client();
    let view = api.database("mtls-db", false).await.unwrap();
    let node_host = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap()
        .host
        .clone();
    let monitor = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Monitor)
        .unwrap()
        .clone();
    let used: Vec<&str> = view.nodes.iter().map(|n| n.host.as_str()).collect();
    let stranger = ["host-1", "host-2", "host-3", "host-4"]
        .into_iter()
        .find(|h| !used.contains(h))
        .unwrap();
    let stranger_record = api
        .hosts()
        .await
        .unwrap()
        .into_iter()
        .find(|h| h.name == stranger)
        .unwrap();
    let stranger_address = stranger_record.address.clone();

    // Every host has a certificate for 90 days (the API and CLI show when
    // it expires).
    let day = 86_400_000;
    let now = pgfleet_core::time::now_ms();
    for host in api.hosts().await.unwrap() {
        let expires = host.certificate_expires_at_ms.expect("a certificate");
        assert!(
            expires > now + 89 * day && expires <= now + 90 * day,
            "{host:?}"
        );
    }
    assert!(fleet.cli_ok(&["host", "list"]).contains("CERT DAYS"));

    // Keys, certificates and credentials are private files; the CA's key
    // is a private file too, and not in the metadata store.
    for host in ["host-1", "host-4"] {
        let dir = fleet.dir().join("hosts").join(host);
        for file in ["agent.key", "agent.crt", "agent.credential"] {
            assert!(private(&dir.join(file)), "{host}/{file} is 0600");
        }
    }
    assert!(private(&fleet.dir().join("ca.key")));
    // Secrets in the store are sealed: open it with the fleet's key.
    let store = pgfleet_store::open_sealed(
        &format!("sqlite:{}", fleet.dir().join("pgfleet.db").display()),
        &pgfleet_store::sealed::key_path(fleet.dir()),
    )
    .await
    .unwrap();
    assert!(store
        .get_meta("ca_key")
        .await
        .unwrap()
        .is_none_or(|k| k.is_empty()));
    // Nor are the PostgreSQL servers' and clients' keys.
    let primary_node = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap();
    for key in [
        format!("tls/pg-client/{node_host}"),
        format!("tls/mtls-db/{}/{}", primary_node.name, primary_node.address),
    ] {
        assert!(
            store.get_meta(&key).await.unwrap().is_none(),
            "{key} in the store"
        );
    }

    // The control plane: a credential without its certificate is refused;
    // a certificate cannot lend itself to another host's credential; a
    // host speaks only for itself.
    let own = beat(&node_host, &view.nodes[0].address);
    assert_eq!(
        heartbeat(&fleet, None, &credential(&fleet, &node_host), &own).await,
        401
    );
    assert_eq!(
        heartbeat(
            &fleet,
            Some(stranger),
            &credential(&fleet, &node_host),
            &own
        )
        .await,
        401,
        "another host's certificate"
    );
    assert_eq!(
        heartbeat(
            &fleet,
            Some(stranger),
            &credential(&fleet, stranger),
            &beat("host-9", "127.0.9.9")
        )
        .await,
        403,
        "a host speaks only for itself"
    );

    // The monitor's endpoint: no certificate, no connection; a certificate
    // of a host that carries no node of the database, or without the
    // token, is refused; a node's host with the token is admitted.
    let db = store.get_database("mtls-db").await.unwrap().unwrap();
    let state_url = format!("https://{}:7071/monitor/mtls-db/state", monitor.address);
    let call = |host: Option<&'static str>, token: &str| {
        let request = client_as(&fleet, host)
            .get(&state_url)
            .bearer_auth(token.to_string());
        async move { request.send().await.map(|r| r.status().as_u16()).ok() }
    };
    let node_host_static: &'static str = Box::leak(node_host.clone().into_boxed_str());
    assert_eq!(
        call(None, &db.monitor_token).await,
        None,
        "no client certificate"
    );
    assert_eq!(
        call(Some(stranger), &db.monitor_token).await,
        Some(403),
        "not a node's host"
    );
    assert_eq!(
        call(Some(node_host_static), "wrong").await,
        Some(401),
        "wrong monitor token"
    );
    assert_eq!(
        call(Some(node_host_static), &db.monitor_token).await,
        Some(200)
    );

    // Join tokens are single-use, and a bad signing request does not spend one.
    let join_token = fleet
        .cli_ok(&["host", "join-token", "--ttl", "60"])
        .trim()
        .to_string();
    let join = |body: serde_json::Value| {
        let request = client_as(&fleet, None)
            .post(format!("{}/api/v1/agents/join", fleet.api))
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let garbage = serde_json::json!({"host": "host-9", "join_token": join_token, "address": "127.0.9.9", "csr_pem": "garbage"});
    assert_eq!(join(garbage).await.0, 400);
    let taken = serde_json::json!({"host": "host-9", "join_token": join_token, "address": stranger_address, "csr_pem": pgfleet_tls::key_and_csr("host-9").unwrap().1});
    assert_eq!(join(taken).await.0, 409, "another host's address");
    let (key9, csr9) = pgfleet_tls::key_and_csr("host-9").unwrap();
    let good = serde_json::json!({"host": "host-9", "join_token": join_token, "address": "127.0.9.9", "csr_pem": csr9});
    let (status, joined) = join(good.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(join(good).await.0, 401, "join tokens are single-use");
    // A join token never takes over a host that has joined (its databases'
    // secrets come with the name), and the refusal does not spend it.
    let fresh = fleet
        .cli_ok(&["host", "join-token", "--ttl", "60"])
        .trim()
        .to_string();
    let takeover = serde_json::json!({"host": node_host, "join_token": fresh, "address": "127.0.9.8", "csr_pem": pgfleet_tls::key_and_csr("x").unwrap().1});
    assert_eq!(join(takeover).await.0, 409, "an existing host's name");
    let other = serde_json::json!({"host": "host-8", "join_token": fresh, "address": "127.0.9.8", "csr_pem": pgfleet_tls::key_and_csr("host-8").unwrap().1});
    assert_eq!(join(other).await.0, 200, "the token was not spent");
    let cert9 = joined["certificate_pem"].as_str().unwrap().to_string();
    let credential9 = joined["credential"].as_str().unwrap().to_string();
    let host9 = client_with(&fleet, Some((cert9, key9)));
    let beat9 = |client: &reqwest::Client| {
        let request = client
            .post(format!("{}/api/v1/agents/heartbeat", fleet.api))
            .bearer_auth(&credential9)
            .json(&beat("host-9", "127.0.9.9"));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(beat9(&host9).await, 200, "a new host with its certificate");

    // Renewal needs the current certificate. It is two-phase: the old
    // certificate keeps working until the renewed one is first used (a
    // renewal whose answer is lost must not lock the host out); then the
    // old one is dead.
    let (new_key, new_csr) = pgfleet_tls::key_and_csr(stranger).unwrap();
    let renew_body = serde_json::json!({"address": stranger_address, "csr_pem": new_csr});
    let renew = |host: Option<&'static str>| {
        let request = client_as(&fleet, host)
            .post(format!("{}/api/v1/agents/certificate", fleet.api))
            .bearer_auth(credential(&fleet, stranger))
            .json(&renew_body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    assert_eq!(
        renew(None).await.0,
        401,
        "renewal without the current certificate"
    );
    let old_client = client_as(&fleet, Some(stranger));
    let (status, answer) = renew(Some(stranger)).await;
    assert_eq!(status, 200);
    let mut own = beat(stranger, &stranger_address);
    own["host"]["failure_domain"] = stranger_record.failure_domain.clone().into();
    let beat_with = |client: &reqwest::Client| {
        let request = client
            .post(format!("{}/api/v1/agents/heartbeat", fleet.api))
            .bearer_auth(credential(&fleet, stranger))
            .json(&own);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        beat_with(&old_client).await,
        200,
        "the current certificate works until the renewed one is used"
    );
    let new_client = client_with(
        &fleet,
        Some((
            answer["certificate_pem"].as_str().unwrap().to_string(),
            new_key,
        )),
    );
    assert_eq!(beat_with(&new_client).await, 200, "the renewed certificate");
    assert_eq!(
        beat_with(&old_client).await,
        401,
        "a replaced certificate is revoked"
    );

    // A host carrying a node cannot be removed; a removed host cannot come
    // back with its old identity.
    let busy = fleet.cli(&["host", "remove", &node_host]);
    assert!(String::from_utf8_lossy(&busy.stderr).contains("carries node"));
    fleet.cli_ok(&["host", "remove", "host-9"]);
    assert_eq!(beat9(&host9).await, 401, "a removed host's old identity");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_speaks_tls_only_and_internal_roles_need_client_certificates() {
    let fleet = Fleet::up(3);
    fleet.cli_ok(&["db", "create", "pgtls-db"]);
    fleet.cli_ok(&["replica", "create", "pgtls-db", "--name", "r1"]);
    let view = fleet.client().database("pgtls-db", false).await.unwrap();
    let primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap()
        .clone();
    let uri = fleet
        .cli_ok(&["db", "uri", "pgtls-db", "--resolved"])
        .trim()
        .to_string();

    // The user's role over TLS works; plain TCP is refused.
    let _db = fleet.connect(&uri).await;
    let plain = tokio_postgres::connect(&uri, tokio_postgres::NoTls).await;
    let error = format!("{:?}", plain.err().expect("plain TCP is refused"));
    assert!(
        error.contains("no encryption") || error.contains("pg_hba"),
        "{error}"
    );

    // `pgfleet` from a node's address: its password alone is not enough,
    // the host's client certificate is needed too.
    // Secrets in the store are sealed: open it with the fleet's key.
    let store = pgfleet_store::open_sealed(
        &format!("sqlite:{}", fleet.dir().join("pgfleet.db").display()),
        &pgfleet_store::sealed::key_path(fleet.dir()),
    )
    .await
    .unwrap();
    let record = store.get_database("pgtls-db").await.unwrap().unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host(&primary.address)
        .port(primary.port)
        .user("pgfleet")
        .password(record.superuser_password.clone())
        .dbname("postgres")
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let without = config.connect(fleet.pg_tls()).await;
    assert!(without.is_err(), "pgfleet without a client certificate");
    let tls_dir = fleet
        .dir()
        .join("hosts")
        .join(&primary.host)
        .join("pg")
        .join(format!("{}.{}", "pgtls-db", primary.name))
        .join("tls");
    let read = |name: &str| std::fs::read_to_string(tls_dir.join(name)).unwrap();
    assert!(private(&tls_dir.join("pgfleet.key")) && private(&tls_dir.join("replication.key")));
    let with_cert = pgfleet_tls::postgres_tls(
        &fleet.ca().unwrap(),
        Some((&read("pgfleet.crt"), &read("pgfleet.key"))),
    )
    .unwrap();
    let (client, connection) = config
        .connect(with_cert)
        .await
        .expect("pgfleet with its certificate");
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.unwrap();
    // The replica streams over TLS.
    common::eventually(Duration::from_secs(20), "the replica streams over TLS", || {
        let db = &client;
        async move {
            let row = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE s.ssl AND r.state = 'streaming'",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        }
    })
    .await;

    // A certificate for another role does not pass for `pgfleet`.
    let wrong = pgfleet_tls::postgres_tls(
        &fleet.ca().unwrap(),
        Some((&read("replication.crt"), &read("replication.key"))),
    )
    .unwrap();
    assert!(
        config.connect(wrong).await.is_err(),
        "a replication certificate is not pgfleet's"
    );
}

fn cert_fingerprint(fleet: &Fleet, host: &str) -> String {
    let pem =
        std::fs::read_to_string(fleet.dir().join("hosts").join(host).join("agent.crt")).unwrap();
    pgfleet_tls::pem_fingerprint(&pem).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_renew_their_certificates_without_disturbing_their_databases() {
    // Certificates live 18 s here, so every host renews about every 12 s.
    let fleet = Fleet::up_with(3, &["--host-cert-validity-secs", "18"]);
    fleet.cli_ok(&["db", "create", "renew-db"]);
    fleet.cli_ok(&["replica", "create", "renew-db", "--name", "r1"]);
    let hosts = ["host-1", "host-2", "host-3"];
    let mut seen: Vec<std::collections::HashSet<String>> = hosts
        .iter()
        .map(|h| [cert_fingerprint(&fleet, h)].into_iter().collect())
        .collect();
    common::eventually(Duration::from_secs(90), "every host renewed twice", || {
        for (set, host) in seen.iter_mut().zip(hosts) {
            set.insert(cert_fingerprint(&fleet, host));
        }
        let done = seen.iter().all(|s| s.len() >= 3);
        async move { done.then_some(()) }
    })
    .await;
    let api = fleet.client();
    // Hosts stayed connected with their renewed certificates, the replica
    // streams, no failover happened, and a switchover (control plane →
    // monitor → keepers, all on renewed certificates) works.
    common::eventually(
        Duration::from_secs(10),
        "hosts connected, replica active",
        || {
            let api = &api;
            async move {
                let hosts = api.hosts().await.ok()?;
                let connected = hosts
                    .iter()
                    .all(|h| h.status == pgfleet_core::HostStatus::Connected);
                let view = api.database("renew-db", false).await.ok()?;
                let active = view.nodes.iter().any(|n| {
                    matches!(
                        n.replication_status,
                        Some(pgfleet_core::api::ReplicationStatus::Active)
                    )
                });
                (connected && active).then_some(())
            }
        },
    )
    .await;
    let events = api.events("renew-db").await.unwrap();
    assert!(events.is_empty(), "no failover: {events:?}");
    fleet.cli_ok(&["replica", "promote", "renew-db", "r1"]);
    let view = api.database("renew-db", false).await.unwrap();
    let primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap();
    assert_eq!(primary.name, "r1");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_plain_http_api_agents_and_monitors_still_use_mutual_tls() {
    let fleet = Fleet::up_with(3, &["--insecure-http"]);
    assert!(fleet.api.starts_with("http://"));
    fleet.cli_ok(&["db", "create", "plain-db"]);
    fleet.cli_ok(&["replica", "create", "plain-db", "--name", "r1"]);
    let api = fleet.client();
    common::eventually(Duration::from_secs(20), "the replica streams", || {
        let api = &api;
        async move {
            let view = api.database("plain-db", false).await.ok()?;
            view.nodes
                .iter()
                .any(|n| {
                    matches!(
                        n.replication_status,
                        Some(pgfleet_core::api::ReplicationStatus::Active)
                    )
                })
                .then_some(())
        }
    })
    .await;
    // Hosts still got certificates, and the monitor endpoint still refuses
    // a client without one.
    let view = api.database("plain-db", false).await.unwrap();
    let monitor = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Monitor)
        .unwrap();
    assert!(fleet.dir().join("hosts/host-1/agent.crt").exists());
    let bare = client_as(&fleet, None)
        .get(format!(
            "https://{}:7071/monitor/plain-db/state",
            monitor.address
        ))
        .send()
        .await;
    assert!(bare.is_err(), "no client certificate, no TLS session");
}
