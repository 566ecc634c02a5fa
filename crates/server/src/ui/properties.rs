//! Property tests of what the web UI reads from browsers: the `Cookie` header
//! (`session::read_cookie`), secret comparison (`session::same_secret`), the sign-in
//! redirect target (`login::safe_next`), the number fields of the forms
//! (`node_actions::parse_priority`, `databases::parse_version`) and the URL-encoded
//! forms themselves. Arbitrary input never panics, and each parser accepts exactly
//! what its rule says.

use std::collections::BTreeMap;

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::de::DeserializeOwned;

use super::databases::{parse_version, CreateForm};
use super::login::{safe_next, LoginForm};
use super::node_actions::{parse_priority, MaintenanceForm, ReplicaForm, DEFAULT_PRIORITY};
use super::session::{read_cookie, same_secret};
use super::tokens::TokenForm;

/// `text` is a decimal number in Rust's `from_str` syntax (an optional `+`, then
/// digits) and its value, if it fits in a `u64`.
fn decimal(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 19 {
        return None;
    }
    Some(significant.parse::<u64>().unwrap_or(0))
}

/// Form number fields: numbers in and around the accepted range, with signs,
/// padding and leading zeros, and anything else.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..300).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        ("[ \t]{0,2}", "[+-]?", "0{0,3}", 0u32..200, "[ \t\n]{0,2}")
            .prop_map(|(pad, sign, zeros, n, tail)| format!("{pad}{sign}{zeros}{n}{tail}")),
        "[0-9a-z.,+ -]{0,6}",
        any::<String>(),
    ]
}

fn form_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        "([a-z_%+=&;]|%[0-9A-Fa-f]{2}|%[g-z]){0,40}".prop_map(String::into_bytes),
    ]
}

fn form_parses<T: DeserializeOwned>(bytes: &[u8]) -> bool {
    serde_urlencoded::from_bytes::<T>(bytes).is_ok()
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    /// Priority: empty (after trimming) is the default, else accepted exactly when it
    /// is a whole number 0..=100 (Rust's syntax: an optional `+`, leading zeros).
    #[test]
    fn priority_is_exactly_0_to_100(text in number_text()) {
        let trimmed = text.trim();
        match parse_priority(&text) {
            Ok(priority) if trimmed.is_empty() => prop_assert_eq!(priority, DEFAULT_PRIORITY),
            Ok(priority) => {
                prop_assert!(priority <= 100);
                prop_assert_eq!(decimal(trimmed), Some(u64::from(priority)));
            }
            Err(error) => {
                prop_assert_eq!(error.status, StatusCode::BAD_REQUEST);
                prop_assert!(!trimmed.is_empty());
                prop_assert!(decimal(trimmed).is_none_or(|n| n > 100));
            }
        }
    }

    #[test]
    fn every_priority_in_range_is_accepted(priority in 0u8..=100, pad in "[ \t]{0,2}") {
        prop_assert_eq!(parse_priority(&format!("{pad}{priority}{pad}")).ok(), Some(priority));
    }

    /// Version: empty is the API's default (`None`), else any whole number that fits a
    /// `u32` (the API then checks the range), nothing else.
    #[test]
    fn version_field_is_a_whole_number(text in number_text()) {
        let trimmed = text.trim();
        match parse_version(&text) {
            Ok(None) => prop_assert!(trimmed.is_empty()),
            Ok(Some(version)) => prop_assert_eq!(decimal(trimmed), Some(u64::from(version))),
            Err(error) => {
                prop_assert_eq!(error.status, StatusCode::BAD_REQUEST);
                prop_assert!(decimal(trimmed).is_none_or(|n| n > u64::from(u32::MAX)));
            }
        }
    }

    /// Cookie headers with arbitrary bytes: no panic, and a value is found only in a
    /// `name=value` pair of a readable header.
    #[test]
    fn arbitrary_cookie_headers_never_panic(
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 0..3),
        name in prop_oneof![Just("pgfleet_session".to_string()), "[a-z_=; ]{0,12}"],
    ) {
        let mut headers = HeaderMap::new();
        for bytes in &values {
            if let Ok(value) = HeaderValue::from_bytes(bytes) {
                headers.append(COOKIE, value);
            }
        }
        if let Some(found) = read_cookie(&headers, &name) {
            let pair = format!("{name}={found}");
            let present = headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|text| text.split(';').any(|p| p.trim() == pair));
            prop_assert!(present);
        }
    }

    /// Well-formed cookie headers: the value of the first pair with that name, across
    /// headers in order; `None` when no pair has the name.
    #[test]
    fn cookies_are_found_by_name(
        headers_pairs in prop::collection::vec(
            prop::collection::vec(("[a-z_]{1,8}", "[A-Za-z0-9_-]{0,12}"), 0..4),
            0..3,
        ),
        wanted in "[a-z_]{1,8}",
    ) {
        let mut headers = HeaderMap::new();
        for pairs in &headers_pairs {
            let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            headers.append(COOKIE, HeaderValue::from_str(&text.join("; ")).unwrap());
        }
        let expected = headers_pairs
            .iter()
            .flatten()
            .find(|(k, _)| *k == wanted)
            .map(|(_, v)| v.clone());
        prop_assert_eq!(read_cookie(&headers, &wanted), expected);
    }

    /// Secret comparison is string equality, whatever the lengths and contents.
    #[test]
    fn same_secret_is_equality(given in any::<String>(), expected in any::<String>(), flip in any::<prop::sample::Index>()) {
        prop_assert_eq!(same_secret(&given, &expected), given == expected);
        prop_assert!(same_secret(&expected, &expected));
        // Same length, one byte different.
        if !expected.is_empty() && expected.is_ascii() {
            let mut bytes = expected.clone().into_bytes();
            let at = flip.index(bytes.len());
            bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
            let other = String::from_utf8(bytes).unwrap();
            prop_assert!(!same_secret(&other, &expected));
        }
    }

    /// The sign-in redirect only goes to a local path of safe characters (no
    /// `//host`, no scheme, no backslash), never back to the sign-in page.
    #[test]
    fn sign_in_redirects_stay_local(next in prop_oneof![
        any::<String>(),
        "[/a-z.:\\\\@%?#-]{0,20}",
        Just("/login".to_string()),
        Just("//evil.example".to_string()),
        Just("/databases/db1/cluster".to_string()),
    ]) {
        let target = safe_next(&next);
        prop_assert!(target == next || target == "/databases");
        prop_assert!(target.starts_with('/') && !target.starts_with("//"));
        prop_assert!(target.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)));
        prop_assert_ne!(target, "/login");
    }

    /// Arbitrary form bodies: no panic in any form decoder.
    #[test]
    fn arbitrary_form_bodies_never_panic(bytes in form_bytes()) {
        let _ = form_parses::<CreateForm>(&bytes);
        let _ = form_parses::<LoginForm>(&bytes);
        let _ = form_parses::<ReplicaForm>(&bytes);
        let _ = form_parses::<TokenForm>(&bytes);
        let maintenance = form_parses::<MaintenanceForm>(&bytes);
        // `on` is required: a body without that field is refused.
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        prop_assert!(!maintenance || pairs.iter().any(|(key, _)| key == "on"));
    }

    /// Well-encoded bodies: the text-only forms accept any values and extra fields
    /// (their fields default to empty), the create form reads back what was sent, and
    /// the maintenance form accepts exactly `on=true` / `on=false`.
    #[test]
    fn encoded_forms_read_back(
        fields in prop::collection::btree_map(
            prop_oneof![
                prop::sample::select(vec!["name", "version", "admin_user", "database", "csrf", "token", "next", "priority", "role", "on"])
                    .prop_map(str::to_string),
                "[a-z_]{1,8}",
            ],
            prop_oneof![any::<String>(), Just("true".to_string()), Just("false".to_string())],
            0..6,
        ),
    ) {
        let body = serde_urlencoded::to_string(fields.iter().collect::<Vec<_>>()).unwrap();
        let bytes = body.as_bytes();
        prop_assert!(form_parses::<LoginForm>(bytes));
        prop_assert!(form_parses::<ReplicaForm>(bytes));
        prop_assert!(form_parses::<TokenForm>(bytes));
        let form: CreateForm = serde_urlencoded::from_bytes(bytes).unwrap();
        let field = |key: &str, map: &BTreeMap<String, String>| map.get(key).cloned().unwrap_or_default();
        prop_assert_eq!(form.name, field("name", &fields));
        prop_assert_eq!(form.version, field("version", &fields));
        prop_assert_eq!(form.admin_user, field("admin_user", &fields));
        prop_assert_eq!(form.database, field("database", &fields));
        let on_ok = matches!(fields.get("on").map(String::as_str), Some("true" | "false"));
        prop_assert_eq!(form_parses::<MaintenanceForm>(bytes), on_ok);
    }
}
