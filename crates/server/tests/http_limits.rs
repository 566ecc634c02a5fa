//! Slow, idle and greedy clients, tried as an attacker would: a half-sent
//! request and an idle connection are closed within their timeouts, a
//! 200 kB header is answered with 431, and connections beyond the limit are
//! closed at once. Before, all of them were held open indefinitely.

mod common;

use std::time::{Duration, Instant};

use common::ControlPlane;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until the server closes the connection; `None` if it is still open
/// at the deadline.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + deadline).into(), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn short_timeouts(config: &mut pgfleet_server::ServerConfig) {
    config.http.header_read_timeout = Duration::from_secs(1);
    config.http.idle_timeout = Duration::from_secs(2);
}

#[tokio::test]
async fn a_half_sent_request_is_closed_within_the_header_timeout() {
    let plane = ControlPlane::start(|config| {
        config.http.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = plane.connect(&[b"http/1.1"]).await.unwrap();
    stream
        .write_all(b"POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "a half-sent request still open after 10 s"
    );
    plane.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_within_the_idle_timeout() {
    let plane = ControlPlane::start(short_timeouts).await;
    // A TLS connection that never sends a request.
    let mut silent = plane.connect(&[b"h2", b"http/1.1"]).await.unwrap();
    let closed = closed_within(&mut silent, Duration::from_secs(15)).await;
    assert!(
        closed.is_some(),
        "a silent TLS connection still open after 15 s"
    );

    // An HTTP/2 connection that made one request and then went quiet.
    let stream = plane.connect(&[b"h2"]).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let health = axum::http::Request::get(plane.url("/api/v1/health"))
        .body(())
        .unwrap();
    let (answer, _) = client.send_request(health, true).unwrap();
    assert_eq!(answer.await.unwrap().status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(15), connection).await;
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection still open after 15 s"
    );
    plane.stop().await;
}

#[tokio::test]
async fn a_header_too_large_is_answered_with_431() {
    let plane = ControlPlane::start(|_| {}).await;
    let big = "a".repeat(200 * 1024);
    for attempt in 0..5 {
        let answer = plane
            .http1()
            .get(plane.url("/api/v1/health"))
            .header("x-big", &big)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .unwrap_or_else(|error| panic!("attempt {attempt}: no answer: {error:?}"));
        assert_eq!(answer.status(), 431, "attempt {attempt}");
    }
    // HTTP/2: refused at once (h2 answers 431 and refuses the stream).
    let refused = plane
        .http2()
        .get(plane.url("/api/v1/health"))
        .header("x-big", &big)
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    match refused {
        Ok(answer) => assert_eq!(answer.status(), 431),
        Err(error) => assert!(!error.is_timeout(), "{error:?}"),
    }
    plane.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let plane = ControlPlane::start(|config| config.http.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(plane.connect(&[b"http/1.1"]).await.unwrap());
    }
    let refused = tokio::time::timeout(Duration::from_secs(5), plane.connect(&[b"http/1.1"])).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a fourth connection was not refused at once: {refused:?}"
    );
    // A slot frees when a held connection closes.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = plane
            .http1()
            .get(plane.url("/api/v1/health"))
            .send()
            .await
            .map(|answer| answer.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    plane.stop().await;
}
