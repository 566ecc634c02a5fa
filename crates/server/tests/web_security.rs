//! The web UI against a browser-side attacker: login CSRF with a cookie the
//! attacker chose, forms posted from another origin.

mod common;

use common::ControlPlane;
use reqwest::header::{COOKIE, SET_COOKIE};

/// The value of cookie `name` set by `response`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .find_map(|header| {
            let text = header.to_str().ok()?;
            let rest = text.strip_prefix(&format!("{name}="))?;
            Some(rest.split(';').next().unwrap_or_default().to_string())
        })
}

fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("page has a csrf field") + marker.len();
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_string()
}

/// Posts the sign-in form with `csrf` in both the cookie and the form.
async fn sign_in(
    client: &reqwest::Client,
    plane: &ControlPlane,
    csrf: &str,
    token: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let body = serde_urlencoded::to_string([("csrf", csrf), ("token", token), ("next", "/hosts")])
        .unwrap();
    let mut request = client
        .post(plane.url("/login"))
        .header(COOKIE, format!("pgfleet_login={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

async fn issued_login_value(plane: &ControlPlane) -> String {
    let page = plane.http1().get(plane.url("/login")).send().await.unwrap();
    let cookie = set_cookie(&page, "pgfleet_login").expect("login cookie");
    assert_eq!(csrf_field(&page.text().await.unwrap()), cookie);
    cookie
}

#[tokio::test]
async fn an_attacker_chosen_login_value_or_a_foreign_origin_signs_no_one_in() {
    let plane = ControlPlane::start(|_| {}).await;
    let token = plane.admin_token.clone();

    // The attacker plants `pgfleet_login=chosen` and posts `csrf=chosen`.
    let planted = sign_in(
        &plane.http1(),
        &plane,
        "attacker-chosen-value",
        &token,
        None,
    )
    .await;
    assert_eq!(planted.status(), 403);
    assert!(set_cookie(&planted, "pgfleet_session").is_none());

    // A value the control plane issued, posted from another site.
    let issued = issued_login_value(&plane).await;
    let foreign = sign_in(
        &plane.http1(),
        &plane,
        &issued,
        &token,
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(foreign.status(), 403);
    assert!(set_cookie(&foreign, "pgfleet_session").is_none());

    // The same from the control plane's own origin signs in (over HTTP/2,
    // where the origin is compared with the `:authority`).
    let own_origin = plane.url("");
    let accepted = sign_in(&plane.http2(), &plane, &issued, &token, Some(&own_origin)).await;
    assert_eq!(accepted.status(), 303);
    let session = set_cookie(&accepted, "pgfleet_session").expect("session cookie");

    // A signed-in form posted from another origin (with a valid CSRF
    // token) is refused before it acts.
    let page = plane
        .http1()
        .get(plane.url("/tokens"))
        .header(COOKIE, format!("pgfleet_session={session}"))
        .send()
        .await
        .unwrap();
    let csrf = csrf_field(&page.text().await.unwrap());
    let post = |origin: &'static str, name: &'static str| {
        let body = serde_urlencoded::to_string([
            ("csrf", csrf.as_str()),
            ("name", name),
            ("role", "admin"),
        ])
        .unwrap();
        plane
            .http1()
            .post(plane.url("/tokens"))
            .header(COOKIE, format!("pgfleet_session={session}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body(body)
            .send()
    };
    let forged = post("https://evil.example", "planted").await.unwrap();
    assert_eq!(forged.status(), 403);
    let names: serde_json::Value = plane
        .http1()
        .get(plane.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !names.to_string().contains("planted"),
        "a token was created from another origin: {names}"
    );
    let null_origin = post("null", "planted").await.unwrap();
    assert_eq!(null_origin.status(), 403);
    plane.stop().await;
}

fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{what}: no {name} header"))
    };
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
    assert!(
        header("content-security-policy").contains("frame-ancestors 'none'"),
        "{what}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "same-origin", "{what}");
    assert!(
        header("strict-transport-security").starts_with("max-age="),
        "{what}"
    );
}

#[tokio::test]
async fn every_answer_forbids_framing_and_sniffing_and_secrets_are_never_cached() {
    let plane = ControlPlane::start(|_| {}).await;
    let client = plane.http2();
    let token = plane.admin_token.clone();

    let login = client.get(plane.url("/login")).send().await.unwrap();
    assert_security_headers(&login, "the sign-in page");
    let refused = client
        .get(plane.url("/api/v1/databases"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_security_headers(&refused, "a 401");

    // Answers that carry a secret.
    let created = client
        .post(plane.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "ci", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let join = client
        .post(plane.url("/api/v1/hosts/join-tokens"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"ttl_secs": 600}))
        .send()
        .await
        .unwrap();
    assert!(join.status().is_success(), "{}", join.status());
    let uri = client
        .get(plane.url("/api/v1/databases/nothing-here/uri"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    for (what, answer) in [
        ("a new token", &created),
        ("a join token", &join),
        ("a database URI", &uri),
    ] {
        assert_security_headers(answer, what);
        assert_eq!(
            answer
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what}"
        );
    }
    plane.stop().await;
}
