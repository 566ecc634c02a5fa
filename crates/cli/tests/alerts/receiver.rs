//! The webhook receiver of the alert tests: a real HTTP server on
//! loopback that records what arrives, and the signature check.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

use crate::common::Fleet;

/// What a receiver got: headers, body, when.
pub type Received = Arc<Mutex<Vec<(HeaderMap, Bytes, Instant)>>>;

/// A webhook receiver on loopback that answers 500 to its first `failures`
/// requests, then 200. Returns its URL and what it received.
pub async fn receiver(failures: Arc<AtomicUsize>) -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook/abc-path-credential",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            let failures = failures.clone();
            async move {
                kept.lock().unwrap().push((headers, body, Instant::now()));
                let failing = failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        format!("http://{address}/hook/abc-path-credential"),
        received,
    )
}

pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) {
    let presented = headers["x-pgfleet-signature"].to_str().unwrap();
    let hex = presented.strip_prefix("sha256=").expect("sha256= prefix");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &tag).expect("the signature verifies with the target's secret");
}

pub fn secret_file(fleet: &Fleet, secret: &str) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let path = fleet.dir().join("hook.secret");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, secret.as_bytes()).unwrap();
    path.display().to_string()
}

/// The alerts received so far, parsed.
pub fn alerts(received: &Received) -> Vec<serde_json::Value> {
    let got = received.lock().unwrap().clone();
    got.iter()
        .filter_map(|(_, body, _)| serde_json::from_slice(body).ok())
        .collect()
}

/// The first alert of kind `event` received, checked against `secret`.
pub fn signed_alert(received: &Received, secret: &str, event: &str) -> Option<serde_json::Value> {
    let got = received.lock().unwrap().clone();
    got.iter().find_map(|(headers, body, _)| {
        let alert: serde_json::Value = serde_json::from_slice(body).ok()?;
        if alert["event"] != event {
            return None;
        }
        verify(secret, headers, body);
        Some(alert)
    })
}
