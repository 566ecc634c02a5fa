//! The UI's HTTP contract against a real control plane (no agents, no
//! PostgreSQL): sign-in and its cookies, CSRF refusals, readable API errors,
//! htmx fragments, assets, sign-out. The browser tests in `tests/ui` cover
//! the flows end to end.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::ServerConfig;

struct Ui {
    base: String,
    client: reqwest::Client,
    token: String,
    cancel: CancellationToken,
    state: crate::state::AppState,
    _dir: tempfile::TempDir,
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start() -> Ui {
    start_with(|_| {}).await
}

async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Ui {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::local(dir.path().to_path_buf());
    config.api_addr = "127.0.0.1:0".parse().expect("address");
    config.dns_addr = "127.0.0.1:0".parse().expect("address");
    configure(&mut config);
    let cancel = CancellationToken::new();
    let running = crate::start(config, cancel.clone())
        .await
        .expect("control plane starts");
    let token = std::fs::read_to_string(dir.path().join("admin.token"))
        .expect("admin token written")
        .trim()
        .to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Ui {
        base: format!("http://{}", running.api_addr),
        client,
        token,
        cancel,
        state: running.state.clone(),
        _dir: dir,
    }
}

/// The `name=value` part of the response's `Set-Cookie` for `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    for header in response.headers().get_all(SET_COOKIE) {
        let text = header.to_str().ok()?;
        if let Some(rest) = text.strip_prefix(&format!("{name}=")) {
            let value = rest.split(';').next().unwrap_or_default().to_string();
            return Some((value, text.to_string()));
        }
    }
    None
}

/// A URL-encoded form body (reqwest's `form` needs a feature we do not build).
fn form(request: reqwest::RequestBuilder, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = serde_urlencoded::to_string(fields).expect("encodable form");
    request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
}

/// The value of the first hidden `csrf` field in `html`.
fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("page has a csrf field") + marker.len();
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_string()
}

impl Ui {
    /// Signs in with `token`; returns the session cookie header value.
    async fn sign_in(&self, token: &str) -> reqwest::Response {
        let login = self
            .client
            .get(format!("{}/login", self.base))
            .send()
            .await
            .expect("login page");
        assert_eq!(login.status(), StatusCode::OK);
        let (login_cookie, _) = set_cookie(&login, "pgfleet_login").expect("login cookie");
        let html = login.text().await.expect("body");
        assert_eq!(csrf_field(&html), login_cookie, "double-submit value");
        let request = self
            .client
            .post(format!("{}/login", self.base))
            .header(COOKIE, format!("pgfleet_login={login_cookie}"));
        let fields = [
            ("csrf", login_cookie.as_str()),
            ("token", token),
            ("next", "/hosts"),
        ];
        form(request, &fields).send().await.expect("sign-in")
    }

    async fn session(&self) -> String {
        let response = self.sign_in(&self.token.clone()).await;
        let (session, _) = set_cookie(&response, "pgfleet_session").expect("session cookie");
        format!("pgfleet_session={session}")
    }

    async fn get(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .expect("get")
    }
}

#[tokio::test]
async fn pages_need_a_session_and_sign_in_sets_a_strict_http_only_cookie() {
    let ui = start().await;
    let anonymous = ui.get("/databases", "").await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[LOCATION], "/login?next=/databases");

    let refused = ui.sign_in("wrong").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("not a valid API token"));

    let accepted = ui.sign_in(&ui.token.clone()).await;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert_eq!(accepted.headers()[LOCATION], "/hosts", "returns to `next`");
    let (_, attributes) = set_cookie(&accepted, "pgfleet_session").expect("session cookie");
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict"));
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_api_errors_read_as_messages() {
    let ui = start().await;
    let cookie = ui.session().await;
    let page = ui.get("/databases", &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let csrf = csrf_field(&page.text().await.unwrap());

    let post = |fields: &[(&str, &str)]| {
        let request = ui
            .client
            .post(format!("{}/databases", ui.base))
            .header(COOKIE, cookie.clone());
        form(request, fields).send()
    };
    let forged = post(&[("name", "x")]).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let invalid = post(&[("csrf", &csrf), ("name", "Bad_Name")])
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let html = invalid.text().await.unwrap();
    assert!(html.contains("Invalid name &#34;Bad_Name&#34;"), "{html}");
    assert!(
        html.contains("value=\"Bad_Name\""),
        "the form keeps the input"
    );

    let bad_version = post(&[("csrf", &csrf), ("name", "pg-a"), ("version", "x")])
        .await
        .unwrap();
    assert_eq!(bad_version.status(), StatusCode::BAD_REQUEST);
    assert!(bad_version
        .text()
        .await
        .unwrap()
        .contains("Invalid version"));
}

#[tokio::test]
async fn htmx_gets_only_the_fragment_it_targets() {
    let ui = start().await;
    let cookie = ui.session().await;
    let fragment = ui
        .client
        .get(format!("{}/hosts", ui.base))
        .header(COOKIE, &cookie)
        .header("HX-Request", "true")
        .header("HX-Target", "hosts-live")
        .send()
        .await
        .unwrap();
    assert_eq!(fragment.status(), StatusCode::OK);
    let html = fragment.text().await.unwrap();
    assert!(
        html.contains("id=\"hosts-table\"") && !html.contains("<html"),
        "{html}"
    );

    let expired = ui
        .client
        .get(format!("{}/hosts", ui.base))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(expired.headers()["hx-redirect"], "/login");

    let missing = ui.get("/databases/nope/cluster", &cookie).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing
        .text()
        .await
        .unwrap()
        .contains("Database &#34;nope&#34; not found"));
}

#[tokio::test]
async fn assets_are_served_from_the_binary_and_sign_out_ends_the_session() {
    let ui = start().await;
    let htmx = ui.get("/assets/htmx.min.js", "").await;
    assert_eq!(htmx.status(), StatusCode::OK);
    assert!(htmx.text().await.unwrap().contains("htmx"));
    assert_eq!(
        ui.get("/assets/nope.js", "").await.status(),
        StatusCode::NOT_FOUND
    );

    let cookie = ui.session().await;
    let page = ui.get("/tasks", &cookie).await.text().await.unwrap();
    let request = ui
        .client
        .post(format!("{}/logout", ui.base))
        .header(COOKIE, &cookie);
    let signed_out = form(request, &[("csrf", &csrf_field(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        ui.get("/tasks", &cookie).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn unknown_pages_get_a_page_and_unknown_api_paths_json() {
    let ui = start().await;
    let anonymous = ui.get("/nope", "").await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    let cookie = ui.session().await;
    let page = ui.get("/nope/deeper", &cookie).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Page not found") && html.contains("href=\"/databases\""));

    let api = ui.get("/api/v1/nope", "").await;
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// Posts `fields` and the page's CSRF token to `path`.
async fn post_form(
    ui: &Ui,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let page = ui.get("/tokens", cookie).await.text().await.unwrap();
    let csrf = csrf_field(&page);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let request = ui
        .client
        .post(format!("{}{path}", ui.base))
        .header(COOKIE, cookie);
    form(request, &all).send().await.unwrap()
}

#[tokio::test]
async fn tokens_are_created_shown_once_and_revoked() {
    let ui = start().await;
    let cookie = ui.session().await;
    let listed = ui.get("/tokens", &cookie).await.text().await.unwrap();
    assert!(listed.contains("data-token=\"admin\""), "{listed}");

    let last = post_form(&ui, &cookie, "/tokens/admin/revoke", &[]).await;
    assert_eq!(last.status(), StatusCode::SEE_OTHER);
    let refused = ui.get("/tokens", &cookie).await.text().await.unwrap();
    assert!(refused.contains("The last admin token cannot be revoked."));

    let created = post_form(
        &ui,
        &cookie,
        "/tokens",
        &[("name", "ops"), ("role", "admin")],
    )
    .await;
    assert_eq!(created.status(), StatusCode::OK);
    let html = created.text().await.unwrap();
    let marker = "id=\"new-token\" type=\"text\" readonly value=\"";
    let start = html.find(marker).expect("the new token is shown") + marker.len();
    let token = html[start..start + html[start..].find('"').unwrap()].to_string();
    assert!(html.contains("will not be shown again"));

    let viewer = post_form(
        &ui,
        &cookie,
        "/tokens",
        &[("name", "Bad_Name"), ("role", "viewer")],
    )
    .await;
    assert_eq!(viewer.status(), StatusCode::BAD_REQUEST);

    // Revoking the token a session signed in with ends that session.
    let response = ui.sign_in(&token).await;
    let (ops, _) = set_cookie(&response, "pgfleet_session").expect("session cookie");
    let ops = format!("pgfleet_session={ops}");
    let revoked = post_form(&ui, &ops, "/tokens/ops/revoke", &[]).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(revoked.headers()[LOCATION], "/login?revoked=1");
    assert_eq!(
        ui.get("/tokens", &ops).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(ui.get("/tokens", &cookie).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn add_a_host_gives_a_one_time_join_token_that_works_once() {
    let ui = start().await;
    let cookie = ui.session().await;
    let hosts = ui.get("/hosts", &cookie).await.text().await.unwrap();
    assert!(hosts.contains("Create join token"));
    let created = post_form(&ui, &cookie, "/hosts/join-token", &[]).await;
    assert_eq!(created.status(), StatusCode::OK);
    let html = created.text().await.unwrap();
    let marker = "id=\"join-token\" type=\"text\" readonly value=\"";
    let start = html.find(marker).expect("the join token is shown") + marker.len();
    let token = html[start..start + html[start..].find('"').unwrap()].to_string();
    assert!(html.contains(&format!("PGFLEET_JOIN_TOKEN={token} pgfleet agent")));
    // The token joins a host once.
    let (_key, csr) = pgfleet_tls::key_and_csr("host-7").unwrap();
    let body = serde_json::json!({"host": "host-7", "join_token": token, "address": "127.0.0.7", "csr_pem": csr});
    let join = |body: serde_json::Value| {
        ui.client
            .post(format!("{}/api/v1/agents/join", ui.base))
            .json(&body)
            .send()
    };
    assert_eq!(join(body.clone()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(join(body).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // Viewers see no such button and cannot post the form.
    let viewer = post_form(
        &ui,
        &cookie,
        "/tokens",
        &[("name", "watcher"), ("role", "viewer")],
    )
    .await;
    let html = viewer.text().await.unwrap();
    let marker = "id=\"new-token\" type=\"text\" readonly value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let viewer_token = html[start..start + html[start..].find('"').unwrap()].to_string();
    let response = ui.sign_in(&viewer_token).await;
    let (session, _) = set_cookie(&response, "pgfleet_session").unwrap();
    let viewer_cookie = format!("pgfleet_session={session}");
    let page = ui.get("/hosts", &viewer_cookie).await.text().await.unwrap();
    assert!(!page.contains("Create join token"));
    let csrf = csrf_field(&page);
    let request = ui
        .client
        .post(format!("{}/hosts/join-token", ui.base))
        .header(COOKIE, &viewer_cookie);
    let refused = form(request, &[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_database_being_created_offers_no_replica_and_the_api_refuses_with_the_shown_reason() {
    // A known host that has not beaten since: placement waits for it (three
    // host timeouts), so the database stays `creating` meanwhile.
    let ui = start_with(|config| config.host_timeout_ms = 60_000).await;
    let host = pgfleet_core::Host {
        name: "host-1".into(),
        address: "127.0.0.1".into(),
        failure_domain: "a".into(),
        agent_port: 7071,
        registered_at_ms: 0,
    };
    ui.state.store.put_host(&host).await.unwrap();
    let cookie = ui.session().await;
    let api = |request: reqwest::RequestBuilder| request.bearer_auth(&ui.token);
    let created = api(ui.client.post(format!("{}/api/v1/databases", ui.base)))
        .json(&serde_json::json!({"name": "slow-db"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    let view: serde_json::Value = api(ui
        .client
        .get(format!("{}/api/v1/databases/slow-db", ui.base)))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(view["status"], "creating");
    let action = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "create_replica")
        .expect("create_replica listed")
        .clone();
    assert_eq!(action["possible"], false);
    assert_eq!(action["transient"], true);
    let shown_reason = action["blocked_because"].as_str().unwrap().to_string();

    let refused = api(ui
        .client
        .post(format!("{}/api/v1/databases/slow-db/replicas", ui.base)))
    .json(&serde_json::json!({"name": "r1"}))
    .send()
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["message"], shown_reason.as_str());

    let page = ui.get("/databases/slow-db/cluster", &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("id=\"db-status\" title=\"Database status\">Creating"),
        "{html}"
    );
    assert!(
        !html.contains("href=\"/databases/slow-db/replicas/new\""),
        "no Create link while the API refuses it"
    );
    assert!(html.contains("id=\"create-replica\" aria-disabled=\"true\""));
    let shown = html
        .split("id=\"create-replica-blocked\"")
        .nth(1)
        .expect("the reason is shown");
    assert!(shown.contains("is creating, not online"), "{shown}");
}

#[tokio::test]
async fn a_metrics_token_opens_no_ui_session_but_scrapes() {
    let ui = start().await;
    let scrape_token = ui
        .state
        .tokens
        .create(
            ui.state.store.as_ref(),
            "scraper",
            crate::auth::Role::Metrics,
        )
        .await
        .expect("token made");
    let refused = ui.sign_in(&scrape_token).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&refused, "pgfleet_session").is_none());
    let page = refused.text().await.expect("body");
    assert!(page.contains("metrics token can only scrape"), "{page}");
    let scraped = ui
        .client
        .get(format!("{}/metrics", ui.base))
        .bearer_auth(&scrape_token)
        .send()
        .await
        .expect("scrape");
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped
        .text()
        .await
        .expect("body")
        .contains("# TYPE pgfleet_dns_answers_total counter"));
}

#[tokio::test]
async fn the_backups_tab_shows_the_policy_and_back_up_now_answers_in_words() {
    let ui = start().await;
    let backups = ui._dir.path().join("backups/local").display().to_string();
    crate::backup::locations::create(&ui.state, "local", &backups)
        .await
        .expect("location");
    let request = pgfleet_core::api::CreateDatabaseRequest {
        name: "kept".into(),
        version: Some(15),
        admin_user: None,
        database: None,
        backup_policy: Some(pgfleet_core::backup::BackupPolicyRequest {
            location: "local".into(),
            schedule: Some("0 2 * * *".into()),
            retention_full: Some(3),
            archive_timeout_secs: None,
        }),
        restore: None,
    };
    let (status, _) = crate::api::databases::create(
        axum::extract::State(ui.state.clone()),
        crate::api::ApiJson(request),
    )
    .await
    .expect("database stored");
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
    let cookie = ui.session().await;
    let tab = ui.get("/databases/kept/backups", &cookie).await;
    assert_eq!(tab.status(), StatusCode::OK);
    let html = tab.text().await.unwrap();
    for shown in [
        "Backup policy",
        "0 2 * * *",
        "Full backups kept",
        "Back up now",
        "No backup yet.",
    ] {
        assert!(html.contains(shown), "{shown} missing: {html}");
    }
    // No host ever ran the database: its creation failed.
    let answer = post_form(&ui, &cookie, "/databases/kept/backups", &[]).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()[LOCATION], "/databases/kept/backups");
    let flashed = ui
        .get("/databases/kept/backups", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        flashed.contains("backups are taken once it is online"),
        "{flashed}"
    );
}

#[tokio::test]
async fn the_summary_charts_the_last_hour_and_draws_failover_timelines() {
    let ui = start().await;
    let request = pgfleet_core::api::CreateDatabaseRequest {
        name: "charted".into(),
        version: Some(15),
        admin_user: None,
        database: None,
        backup_policy: None,
        restore: None,
    };
    let (status, _) = crate::api::databases::create(
        axum::extract::State(ui.state.clone()),
        crate::api::ApiJson(request),
    )
    .await
    .expect("database stored");
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
    let cookie = ui.session().await;
    let html = ui
        .get("/databases/charted", &cookie)
        .await
        .text()
        .await
        .unwrap();
    for shown in [
        "id=\"lag-chart\"",
        "id=\"commit-chart\"",
        "No data yet",
        "No failover or switchover yet.",
        // The page's own content stays.
        "Connection URI",
    ] {
        assert!(html.contains(shown), "{shown} missing: {html}");
    }

    let now = pgfleet_core::time::now_ms();
    for (ago_ms, xid, lag) in [(20_000, 100, 0), (10_000, 600, 4096)] {
        let sample = crate::history::series::Sample {
            at_ms: now - ago_ms,
            primary: Some(("p".into(), xid)),
            replicas: vec![crate::history::series::ReplicaLagPoint {
                node: "r1".into(),
                lag_bytes: Some(lag),
                lag_seconds: None,
                streaming: true,
            }],
        };
        ui.state.history.record("charted", sample);
    }
    let event = serde_json::json!({
        "at_ms": now, "kind": "failover", "reason": "failover", "old_primary": "p",
        "new_primary": "r1", "generation": 5, "detected_at_ms": now - 2_000,
        "promoted_at_ms": now - 500, "dns_switched_at_ms": now - 400,
    });
    ui.state
        .store
        .insert_event("charted", &event)
        .await
        .expect("event stored");
    let fragment = ui
        .client
        .get(format!("{}/databases/charted", ui.base))
        .header(COOKIE, &cookie)
        .header("HX-Request", "true")
        .header("HX-Target", "db-history")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!fragment.contains("Connection URI"), "{fragment}");
    for shown in [
        "id=\"lag-svg\"",
        "id=\"commits-svg\"",
        "data-series=\"r1\"",
        "<polyline points=",
        "4.0 KiB",
        "50/s",
        "Failover: p → r1",
        "data-step=\"Promoted\"",
        "+1.5 s",
        "data-step=\"First write\"",
        "not seen",
    ] {
        assert!(fragment.contains(shown), "{shown} missing: {fragment}");
    }
    assert!(!fragment.contains("No data yet"), "{fragment}");
}
