//! Hostile input, derived from the OpenAPI document: every route is called
//! without a token, with a viewer token, and with malformed bodies. The
//! answers are 401 / 403 / 400 (or 404/409/413) — never a server error.

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
            let reveals = path.ends_with("/uri");
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
