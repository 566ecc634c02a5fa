//! `GET /api/v1/dns` and the `--dns-update` flags on a real control plane:
//! admin tokens only; an unreachable server is reported with its cause while
//! the built-in zone is served; a key file others can read stops the start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::ControlPlane;

const KEY: &str = "key \"pgfleet-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"3Cj9pusJ1exLdP1RYKSaTGwIIbLG5cVY+RyzSUEhJyU=\";\n};\n";

#[tokio::test]
async fn the_dns_status_is_for_admins_and_shows_no_publisher_by_default() {
    let plane = ControlPlane::start(|_| {}).await;
    let client = plane.http1();
    let view: serde_json::Value = client
        .get(plane.url("/api/v1/dns"))
        .bearer_auth(&plane.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["zone"], "pgfleet.internal");
    assert!(view["dns_update"].is_null(), "{view}");
    let created: serde_json::Value = client
        .post(plane.url("/api/v1/tokens"))
        .bearer_auth(&plane.admin_token)
        .json(&serde_json::json!({"name": "watcher", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer = created["token"].as_str().unwrap();
    let refused = client
        .get(plane.url("/api/v1/dns"))
        .bearer_auth(viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    plane.stop().await;
}

#[tokio::test]
async fn an_unreachable_dns_server_is_reported_with_its_cause() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("update.key");
    std::fs::write(&key_file, KEY).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A port nobody listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let key_path = key_file.clone();
    let plane = ControlPlane::start(move |config| {
        config.dns_update = Some(format!("rfc2136://{closed}/pgfleet.internal"));
        config.dns_update_key = Some(key_path);
    })
    .await;
    // A database to publish.
    let state = plane.running.as_ref().unwrap().state.clone();
    state
        .store
        .insert_database(&database("x", "127.0.0.9"))
        .await
        .unwrap();
    pgfleet_server::dns_sync::publish(&state).await.unwrap();
    let built_in = pgfleet_dns::query_a(
        plane.running.as_ref().unwrap().dns_addr,
        "primary.x.pgfleet.internal",
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(
        built_in.0,
        [std::net::Ipv4Addr::new(127, 0, 0, 9)],
        "the built-in DNS serves"
    );
    let client = plane.http1();
    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let view: serde_json::Value = client
            .get(plane.url("/api/v1/dns"))
            .bearer_auth(&plane.admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["dns_update"]["state"] == "error" {
            break view;
        }
        assert!(Instant::now() < deadline, "no error reported: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let update = &view["dns_update"];
    assert_eq!(
        update["target"],
        format!("rfc2136://{closed}/pgfleet.internal")
    );
    assert_eq!(update["key_name"], "pgfleet-update");
    let error = update["error"].as_str().unwrap();
    assert!(
        error.contains("connecting") && error.contains(&closed.to_string()),
        "{error}"
    );
    assert!(
        !view.to_string().contains("3Cj9pus"),
        "the secret is never shown"
    );
    plane.stop().await;
}

fn database(name: &str, primary_address: &str) -> pgfleet_core::Database {
    use pgfleet_core::Database;
    let mut db = Database::fixture(name);
    db.nodes[0].address = primary_address.into();
    db
}

#[tokio::test]
async fn a_key_file_others_can_read_stops_the_start() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("update.key");
    std::fs::write(&key_file, KEY).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = pgfleet_server::ServerConfig::local(dir.path().join("fleet"));
    config.api_addr = "127.0.0.1:0".parse().unwrap();
    config.dns_addr = "127.0.0.1:0".parse().unwrap();
    config.dns_update = Some("rfc2136://127.0.0.1:53/pgfleet.internal".into());
    config.dns_update_key = Some(key_file);
    let error = pgfleet_server::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .err()
        .expect("the start is refused");
    let error = format!("{error:#}");
    assert!(
        error.contains("--dns-update-key") && error.contains("chmod 600"),
        "{error}"
    );
    assert!(!error.contains("3Cj9pus"), "{error}");
}
