//! Early answers (401, 403, 413, and 400 for a missing content type: refused before the handler reads the
//! body) reach HTTP/2 and HTTP/1.1 clients whole, whatever the size of the
//! body the client is still sending. Before, HTTP/2 clients saw "stream
//! error" about 3 times in 4 and HTTP/1.1 clients a reset connection.

mod common;

use common::ControlPlane;

const TOKEN_REQUEST: &str = r#"{"name":"x","role":"admin"}"#;

/// A body of `size` bytes (JSON when it fits the shape, padding otherwise).
fn body_of(size: usize) -> Vec<u8> {
    if size <= TOKEN_REQUEST.len() {
        return TOKEN_REQUEST.as_bytes()[..size].to_vec();
    }
    let mut body = br#"{"name":"x","role":"admin","pad":""#.to_vec();
    body.resize(size - 2, b'a');
    body.extend_from_slice(b"\"}");
    body
}

/// Sends `body` to `path` and returns the status and the error code of the
/// JSON body, failing on anything that is not a whole answer.
async fn answer(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = client.post(url).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("no answer from {url}: {error:?}"));
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .unwrap_or_else(|error| panic!("answer {status} from {url} cut off: {error:?}"));
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("answer {status} not whole JSON ({error}): {text:?}"));
    (
        status,
        json["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_http2_and_http1_clients_whole_whatever_the_body() {
    let plane = ControlPlane::start(|_| {}).await;
    let url = plane.url("/api/v1/tokens");
    let viewer: serde_json::Value = plane
        .http1()
        .post(&url)
        .bearer_auth(&plane.admin_token)
        .json(&serde_json::json!({"name": "watcher", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer = viewer["token"].as_str().unwrap().to_string();
    for (protocol, client) in [("h2", plane.http2()), ("http/1.1", plane.http1())] {
        for size in [27, 4 * 1024, 64 * 1024, 100 * 1024] {
            for attempt in 0..50 {
                let got =
                    answer(&client, &url, None, Some("application/json"), body_of(size)).await;
                assert_eq!(
                    got,
                    (401, "unauthorized".to_string()),
                    "{protocol}, {size} bytes without a token, attempt {attempt}"
                );
            }
            for attempt in 0..10 {
                let got = answer(
                    &client,
                    &url,
                    Some(&viewer),
                    Some("application/json"),
                    body_of(size),
                )
                .await;
                assert_eq!(
                    got.0, 403,
                    "{protocol}, {size} bytes with a viewer token, attempt {attempt}"
                );
                let got =
                    answer(&client, &url, Some(&plane.admin_token), None, body_of(size)).await;
                assert_eq!(
                    got,
                    (400, "invalid_request".to_string()),
                    "{protocol}, {size} bytes without a content type, attempt {attempt}"
                );
            }
        }
        for size in [300 * 1024, 1024 * 1024] {
            for attempt in 0..10 {
                let got = answer(
                    &client,
                    &url,
                    Some(&plane.admin_token),
                    Some("application/json"),
                    body_of(size),
                )
                .await;
                assert_eq!(
                    got,
                    (413, "too_large".to_string()),
                    "{protocol}, {size} bytes with the admin token, attempt {attempt}"
                );
            }
        }
        // The connection is still good for a normal request.
        let status = client
            .get(plane.url("/api/v1/tokens"))
            .bearer_auth(&plane.admin_token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{protocol}");
    }
    plane.stop().await;
}

/// Like curl over HTTP/2: the client keeps sending its body while the
/// answer (401, no token) comes back. The stream must not be reset under
/// it (curl then fails with "Stream error in the HTTP/2 framing layer").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_still_sending_its_body_is_not_reset_after_an_early_answer() {
    let plane = ControlPlane::start(|_| {}).await;
    let stream = plane.connect(&[b"h2"]).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let url = plane.url("/api/v1/tokens");
    for attempt in 0..20 {
        let request = axum::http::Request::post(&url)
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (response, mut sending) = client.send_request(request, false).unwrap();
        let body = body_of(200 * 1024);
        let chunks: Vec<&[u8]> = body.chunks(16 * 1024).collect();
        let last = chunks.len() - 1;
        for (index, chunk) in chunks.into_iter().enumerate() {
            sending
                .send_data(axum::body::Bytes::copy_from_slice(chunk), index == last)
                .unwrap_or_else(|error| {
                    panic!("attempt {attempt}: the body could not be sent: {error}")
                });
            tokio::task::yield_now().await;
        }
        let response = response.await.unwrap();
        assert_eq!(response.status(), 401, "attempt {attempt}");
        let mut answer = response.into_body();
        let mut text = Vec::new();
        while let Some(data) = answer.data().await {
            let data =
                data.unwrap_or_else(|error| panic!("attempt {attempt}: answer cut off: {error}"));
            let _ = answer.flow_control().release_capacity(data.len());
            text.extend_from_slice(&data);
        }
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(json["error"]["code"], "unauthorized", "attempt {attempt}");
        // One more round trip on the connection: a reset the server sent
        // for the first stream has arrived by the time this answer has.
        let health = axum::http::Request::get(plane.url("/api/v1/health"))
            .body(())
            .unwrap();
        let (health, _) = client.send_request(health, true).unwrap();
        assert_eq!(health.await.unwrap().status(), 200);
        let reset = std::future::poll_fn(|cx| match sending.poll_reset(cx) {
            std::task::Poll::Ready(reason) => std::task::Poll::Ready(Some(reason)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await;
        assert!(
            reset.is_none(),
            "attempt {attempt}: the server reset the stream: {reset:?}"
        );
    }
    plane.stop().await;
}
