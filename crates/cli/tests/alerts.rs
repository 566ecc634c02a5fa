//! Alerts to webhooks against a live fleet and a real HTTP receiver on
//! loopback: only admins manage targets, bodies are signed, a receiver that
//! fails first gets the alert again, an alert survives a control-plane
//! restart, and a failover is alerted.

mod common;
#[path = "alerts/receiver.rs"]
mod receiver;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, Fleet};
use receiver::{receiver, secret_file, verify, Received};

async fn status(fleet: &Fleet, method: &str, path: &str, token: Option<&str>) -> u16 {
    let http = pgfleet::client::http_client(fleet.ca().as_deref(), Duration::from_secs(30));
    let url = format!("{}{path}", fleet.api);
    let mut request = match method {
        "POST" => http.post(url).json(&serde_json::json!({
            "name": "sneaky", "webhook": "https://attacker.example/x"
        })),
        "DELETE" => http.delete(url),
        _ => http.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_targets_are_admin_only_and_alerts_are_signed_retried_and_durable() {
    let mut fleet = Fleet::up(1);
    let failures = Arc::new(AtomicUsize::new(1));
    let (url, received) = receiver(failures.clone()).await;
    let secret = "a-long-signing-secret-9f8e7d";
    let file = secret_file(&fleet, secret);

    // Strangers and viewers cannot manage targets; bad webhooks are refused.
    let viewer = fleet
        .client()
        .create_token("looker", "viewer")
        .await
        .unwrap();
    let viewer = viewer["token"].as_str().unwrap().to_string();
    assert_eq!(
        status(&fleet, "POST", "/api/v1/alert-targets", None).await,
        401
    );
    assert_eq!(
        status(&fleet, "POST", "/api/v1/alert-targets", Some(&viewer)).await,
        403
    );
    assert_eq!(
        status(&fleet, "GET", "/api/v1/alert-targets", Some(&viewer)).await,
        403
    );
    let refused = fleet.cli(&[
        "alert-target",
        "create",
        "lan",
        "--webhook",
        "http://10.1.2.3/x",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("webhooks must use https://"), "{stderr}");

    fleet.cli_ok(&[
        "alert-target",
        "create",
        "pager",
        "--webhook",
        &url,
        "--secret-file",
        &file,
    ]);
    assert_eq!(
        status(
            &fleet,
            "DELETE",
            "/api/v1/alert-targets/pager",
            Some(&viewer)
        )
        .await,
        403
    );
    let listed = fleet.cli_ok(&["alert-target", "list", "--json"]);
    assert!(!listed.contains(secret), "the secret is listed: {listed}");
    assert!(
        !listed.contains("abc-path-credential"),
        "the webhook path is listed: {listed}"
    );

    // The receiver fails once; the test alert arrives again, signed.
    let tested = fleet.cli_ok(&["alert-target", "test", "pager"]);
    assert!(tested.contains("delivered"), "{tested}");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one failed attempt, one retry");
    assert_eq!(got[0].1, got[1].1, "the retry sends the same body");
    for (headers, body, _) in &got {
        verify(secret, headers, body);
    }
    let alert: serde_json::Value = serde_json::from_slice(&got[1].1).unwrap();
    assert_eq!(alert["event"], "test");
    assert!(
        alert["text"].as_str().unwrap().contains("test alert"),
        "{alert}"
    );
    assert!(alert["id"].as_str().is_some_and(|id| !id.is_empty()));
    let targets = fleet.client().alert_targets().await.unwrap();
    assert_eq!(targets[0]["delivered"], 1);
    assert_eq!(targets[0]["pending"], 0);
    assert!(targets[0]["last_error"].is_null(), "{}", targets[0]);

    // An alert queued while the receiver fails survives a restart of the
    // control plane and arrives afterwards.
    failures.store(usize::MAX, Ordering::SeqCst);
    fleet.client().test_alert_target("pager").await.unwrap();
    let client = fleet.client();
    eventually(Duration::from_secs(20), "a failed attempt recorded", || {
        let client = &client;
        async move {
            let targets = client.alert_targets().await.ok()?;
            let target = &targets[0];
            (target["pending"] == 1 && target["last_error"].as_str()?.contains("HTTP 500"))
                .then_some(())
        }
    })
    .await;
    let shown = fleet.cli_ok(&["alert-target", "list"]);
    assert!(
        shown.contains("HTTP 500"),
        "the failing target is visible: {shown}"
    );
    fleet.kill_server();
    failures.store(0, Ordering::SeqCst);
    let before_restart = received.lock().unwrap().len();
    fleet.start_server();
    let client = fleet.client();
    eventually(
        Duration::from_secs(30),
        "the queued alert delivered after restart",
        || {
            let client = &client;
            async move {
                let targets = client.alert_targets().await.ok()?;
                (targets[0]["pending"] == 0 && targets[0]["delivered"] == 2).then_some(())
            }
        },
    )
    .await;
    let got = received.lock().unwrap().clone();
    assert!(got.len() > before_restart);
    let (headers, body, _) = got.last().unwrap();
    verify(secret, headers, body);
    fleet.cli_ok(&["alert-target", "delete", "pager"]);
    assert!(fleet.client().alert_targets().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_a_lost_host_and_a_degraded_database_are_alerted() {
    let fleet = Fleet::up(4);
    let (url, received) = receiver(Arc::new(AtomicUsize::new(0))).await;
    fleet.cli_ok(&[
        "alert-target",
        "create",
        "oncall",
        "--webhook",
        &url,
        "--events",
        "failover,switchover",
    ]);
    let (ops_url, ops_received) = receiver(Arc::new(AtomicUsize::new(0))).await;
    fleet.cli_ok(&[
        "alert-target",
        "create",
        "ops",
        "--webhook",
        &ops_url,
        "--events",
        "host_lost,degraded",
    ]);
    fleet.cli_ok(&["db", "create", "alert-db"]);
    fleet.cli_ok(&["replica", "create", "alert-db", "--name", "r1"]);
    fleet.cli_ok(&["replica", "create", "alert-db", "--name", "r2"]);
    let primary = common::wait_ha_settled(&fleet, "alert-db", Duration::from_secs(90)).await;
    let view = fleet.client().database("alert-db", false).await.unwrap();
    let host = view
        .nodes
        .iter()
        .find(|n| n.name == primary)
        .unwrap()
        .host
        .clone();
    let killed_at = Instant::now();
    assert!(fleet.kill_host(&host) > 0);
    let (body, arrived) = eventually(Duration::from_secs(60), "a failover alert", || {
        let received = received.clone();
        async move {
            let got = received.lock().unwrap().clone();
            got.into_iter().find_map(|(_, body, at)| {
                let alert: serde_json::Value = serde_json::from_slice(&body).ok()?;
                (alert["event"] == "failover").then_some((alert, at))
            })
        }
    })
    .await;
    assert_eq!(body["db"], "alert-db");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("failover of database alert-db"), "{text}");
    assert!(text.contains(&format!("(was {primary})")), "{text}");
    assert!(
        body["details"]["detected_at_ms"].as_i64().is_some(),
        "{body}"
    );
    let unsigned = received.lock().unwrap()[0]
        .0
        .get("x-pgfleet-signature")
        .is_none();
    assert!(unsigned, "a target without a secret sends no signature");
    // The other target hears of the lost host and, once it stayed so, the
    // degraded database; neither hears what it did not subscribe to.
    let events = |received: &Received| -> Vec<serde_json::Value> {
        let got = received.lock().unwrap().clone();
        got.iter()
            .filter_map(|(_, body, _)| serde_json::from_slice(body).ok())
            .collect()
    };
    eventually(
        Duration::from_secs(40),
        "host lost and degraded alerts",
        || {
            let got = events(&ops_received);
            let host = host.clone();
            let old_primary = format!("node {primary} is offline");
            async move {
                let lost = got
                    .iter()
                    .any(|a| a["event"] == "host_lost" && a["host"] == host.as_str());
                let degraded = got.iter().any(|a| {
                    a["event"] == "degraded"
                        && a["db"] == "alert-db"
                        && a["text"].as_str().is_some_and(|t| t.contains(&old_primary))
                });
                (lost && degraded).then_some(())
            }
        },
    )
    .await;
    assert!(events(&ops_received)
        .iter()
        .all(|a| a["event"] != "failover"));
    assert!(events(&received)
        .iter()
        .all(|a| a["event"] == "failover" || a["event"] == "switchover"));
    let dns_ms = body["details"]["dns_switched_at_ms"].as_i64().unwrap();
    let received_ms = pgfleet_core::time::now_ms() - arrived.elapsed().as_millis() as i64;
    println!(
        "alert latency: host killed → webhook received {} ms; DNS switched → received {} ms",
        arrived.duration_since(killed_at).as_millis(),
        received_ms - dns_ms
    );
}
