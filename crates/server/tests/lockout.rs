//! Guessing API tokens or UI sign-ins: after ten wrong tokens in a minute a
//! source address is locked out (429 with `Retry-After`) while other
//! addresses are not; requests without a token are not guesses. Before,
//! 300 wrong attempts were 300 plain 401s.

mod common;

use std::time::{Duration, Instant};

use common::ControlPlane;
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE};

async fn list_tokens(
    client: &reqwest::Client,
    plane: &ControlPlane,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(plane.url("/api/v1/tokens"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn wrong_api_tokens_lock_out_their_source_and_no_other() {
    let plane = ControlPlane::start(|_| {}).await;
    let guesser = plane.http1_from("127.0.0.1");
    let admin = plane.admin_token.clone();

    // Requests without a token guess nothing and are not counted.
    let anonymous = plane.http1_from("127.0.0.5");
    for _ in 0..20 {
        assert_eq!(list_tokens(&anonymous, &plane, None).await.status(), 401);
    }
    assert_eq!(
        list_tokens(&anonymous, &plane, Some(&admin)).await.status(),
        200
    );

    for attempt in 0..10 {
        let guess = format!("guess-{attempt}");
        let answer = list_tokens(&guesser, &plane, Some(&guess)).await;
        assert_eq!(answer.status(), 401, "attempt {attempt}");
    }
    let locked = list_tokens(&guesser, &plane, Some("guess-10")).await;
    assert_eq!(locked.status(), 429);
    let wait = retry_after(&locked);
    assert!((1..=5).contains(&wait), "Retry-After: {wait}");
    let body: serde_json::Value = locked.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");
    // Even the right token is refused from there while it lasts (else the
    // answer would tell a right guess) ...
    assert_eq!(
        list_tokens(&guesser, &plane, Some(&admin)).await.status(),
        429
    );
    // ... but works from another address.
    let elsewhere = plane.http1_from("127.0.0.2");
    assert_eq!(
        list_tokens(&elsewhere, &plane, Some(&admin)).await.status(),
        200
    );

    // The lockout ends.
    let deadline = Instant::now() + Duration::from_secs(wait + 10);
    loop {
        let status = list_tokens(&guesser, &plane, Some(&admin)).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(Instant::now() < deadline, "still locked out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One more wrong token so soon after locks it out again, for longer.
    assert_eq!(
        list_tokens(&guesser, &plane, Some("again")).await.status(),
        401
    );
    let again = list_tokens(&guesser, &plane, Some(&admin)).await;
    assert_eq!(again.status(), 429);
    assert!(retry_after(&again) > wait, "backoff doubles");
    plane.stop().await;
}

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

async fn sign_in(client: &reqwest::Client, plane: &ControlPlane, token: &str) -> reqwest::Response {
    let page = client.get(plane.url("/login")).send().await.unwrap();
    let csrf = set_cookie(&page, "pgfleet_login").unwrap();
    let body =
        serde_urlencoded::to_string([("csrf", csrf.as_str()), ("token", token), ("next", "/")])
            .unwrap();
    client
        .post(plane.url("/login"))
        .header(COOKIE, format!("pgfleet_login={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_sign_ins_lock_out_their_source_and_no_other() {
    let plane = ControlPlane::start(|_| {}).await;
    let guesser = plane.http1_from("127.0.0.3");
    for attempt in 0..10 {
        let answer = sign_in(&guesser, &plane, &format!("guess-{attempt}")).await;
        assert_eq!(answer.status(), 401, "attempt {attempt}");
    }
    let locked = sign_in(&guesser, &plane, &plane.admin_token).await;
    assert_eq!(locked.status(), 429);
    assert!(retry_after(&locked) >= 1);
    assert!(set_cookie(&locked, "pgfleet_session").is_none());
    assert!(locked
        .text()
        .await
        .unwrap()
        .contains("Too many failed sign-ins"));

    let elsewhere = plane.http1_from("127.0.0.4");
    let accepted = sign_in(&elsewhere, &plane, &plane.admin_token).await;
    assert_eq!(accepted.status(), 303);
    assert!(set_cookie(&accepted, "pgfleet_session").is_some());
    plane.stop().await;
}
