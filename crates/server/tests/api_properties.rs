//! Property tests of the control plane's pure validation of API input and of the
//! request bodies it defines itself (tokens, join tokens, agent join and certificate
//! request, primary change):
//!
//! - every validator accepts exactly what its rule says and answers anything else with
//!   a 400, never a panic;
//! - arbitrary JSON never panics the body types; `deny_unknown_fields` holds.

use std::net::Ipv4Addr;

use axum::http::StatusCode;
use pgfleet_core::api::{CreateDatabaseRequest, CreateReplicaRequest};
use pgfleet_core::names::{validate_database_name, validate_node_name};
use pgfleet_core::protocol::HostRegistration;
use pgfleet_server::api::agent_identity::{CertificateRequest, JoinRequest};
use pgfleet_server::api::agents::{validate_registration, PrimaryChanged};
use pgfleet_server::api::databases::{validate_create, validate_replica, ValidCreateDatabase};
use pgfleet_server::api::hosts::{validate_join_ttl, JoinTokenRequest, MAX_JOIN_TTL_SECS};
use pgfleet_server::api::tokens::CreateTokenRequest;
use pgfleet_server::error::ApiError;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const CASES: u32 = 256;

/// Names users type: valid labels, near misses, and anything at all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        "[a-zA-Z0-9_.-]{0,70}",
        any::<String>(),
        prop::sample::select(vec![
            "primary",
            "postgres",
            "pgfleet",
            "pgfleet_replication",
            "_x",
            ""
        ])
        .prop_map(str::to_string),
    ]
}

/// An unquoted PostgreSQL identifier as the API accepts it.
fn is_identifier(value: &str) -> bool {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && value.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_bad_request(error: &ApiError) -> bool {
    error.status == StatusCode::BAD_REQUEST && error.code == "invalid_request"
}

fn json_value() -> BoxedStrategy<Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "name",
            "role",
            "ttl_secs",
            "host",
            "join_token",
            "address",
            "csr_pem",
            "db",
            "new_primary",
            "generation",
            "reason",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec!["admin", "viewer", "Admin", "root", ""]).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// No panic; an accepted body has only `fields` (when it is an object).
fn body_fields<T: DeserializeOwned>(
    tree: &Value,
    fields: &[&str],
) -> Result<Option<T>, TestCaseError> {
    let Ok(parsed) = serde_json::from_value::<T>(tree.clone()) else {
        return Ok(None);
    };
    if let Value::Object(object) = tree {
        for key in object.keys() {
            prop_assert!(
                fields.contains(&key.as_str()),
                "accepted unknown field {}",
                key
            );
        }
    }
    Ok(Some(parsed))
}

/// Like [`body_fields`], and an accepted body re-serialises stably.
fn body_parse<T: Serialize + DeserializeOwned>(
    tree: &Value,
    fields: &[&str],
) -> Result<(), TestCaseError> {
    let Some(parsed) = body_fields::<T>(tree, fields)? else {
        return Ok(());
    };
    let once = serde_json::to_value(&parsed).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let again: T = serde_json::from_value(once.clone())
        .map_err(|e| TestCaseError::fail(format!("own output refused: {e}")))?;
    prop_assert_eq!(serde_json::to_value(&again).unwrap(), once);
    Ok(())
}

/// Valid bodies with one extra field are refused.
fn refuses_extra<T: DeserializeOwned>(
    valid: Value,
    key: &str,
    extra: &Value,
) -> Result<(), TestCaseError> {
    let Value::Object(mut object) = valid else {
        return Err(TestCaseError::fail("bodies are objects"));
    };
    if object.contains_key(key) {
        return Ok(());
    }
    prop_assert!(serde_json::from_value::<T>(Value::Object(object.clone())).is_ok());
    object.insert(key.to_string(), extra.clone());
    prop_assert!(serde_json::from_value::<T>(Value::Object(object)).is_err());
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    /// Create database: accepted exactly when the name is a database name, the admin
    /// user (default `pgadmin`) an unreserved identifier, the database (default
    /// `postgres`) an identifier and the version (default 15) in 10..=99.
    #[test]
    fn create_database_validation_follows_its_rule(
        db_name in name(),
        admin_user in prop::option::of(name()),
        database in prop::option::of(name()),
        version in prop::option::of(prop_oneof![any::<u32>(), 0u32..120]),
    ) {
        let request = CreateDatabaseRequest { name: db_name, version, admin_user, database, backup_policy: None, restore: None };
        let admin = request.admin_user.clone().unwrap_or_else(|| "pgadmin".into());
        let database_name = request.database.clone().unwrap_or_else(|| "postgres".into());
        let major = request.version.unwrap_or(15);
        let reserved = ["postgres", "pgfleet", "pgfleet_replication"].contains(&admin.as_str());
        let valid = validate_database_name(&request.name).is_ok()
            && is_identifier(&admin)
            && !reserved
            && is_identifier(&database_name)
            && (10..=99).contains(&major);
        match validate_create(&request) {
            Ok(accepted) => {
                prop_assert!(valid);
                prop_assert_eq!(accepted, ValidCreateDatabase { admin_user: admin, database_name, version: major });
            }
            Err(error) => {
                prop_assert!(!valid);
                prop_assert!(is_bad_request(&error));
            }
        }
    }

    /// Create replica: accepted exactly when the name is a node name and the priority
    /// (default 50) is at most 100; the answer is that priority.
    #[test]
    fn create_replica_validation_follows_its_rule(node in name(), priority in prop::option::of(any::<u8>())) {
        let request = CreateReplicaRequest { name: node, priority, count: None };
        let expected = priority.unwrap_or(50);
        // An empty name asks for the next free pg-replica-N.
        let valid = (request.name.is_empty() || validate_node_name(&request.name).is_ok())
            && expected <= 100;
        match validate_replica(&request) {
            Ok(accepted) => {
                prop_assert!(valid);
                prop_assert_eq!(accepted, expected);
            }
            Err(error) => {
                prop_assert!(!valid);
                prop_assert!(is_bad_request(&error));
            }
        }
    }

    /// Join tokens live one second to one day.
    #[test]
    fn join_ttl_is_one_second_to_one_day(ttl in prop_oneof![any::<u64>(), 0u64..100_000]) {
        match validate_join_ttl(ttl) {
            Ok(accepted) => {
                prop_assert_eq!(accepted, ttl);
                prop_assert!((1..=MAX_JOIN_TTL_SECS).contains(&ttl));
            }
            Err(error) => {
                prop_assert!(ttl == 0 || ttl > MAX_JOIN_TTL_SECS);
                prop_assert!(is_bad_request(&error));
            }
        }
    }

    /// A heartbeat's host: accepted addresses are IPv4 in canonical dotted-quad form
    /// (no `127.1`, `0x7f.0.0.1`, leading zeros or spaces), and every dotted quad is
    /// accepted with a valid name.
    #[test]
    fn heartbeat_host_validation(
        host_name in name(),
        address in prop_oneof![
            any::<[u8; 4]>().prop_map(|ip| Ipv4Addr::from(ip).to_string()),
            "[0-9x. ]{0,20}",
            any::<String>(),
        ],
        agent_port in any::<u16>(),
    ) {
        let host = HostRegistration {
            name: host_name,
            address,
            failure_domain: String::new(),
            agent_port,
            dns_port: 0,
        };
        let name_ok = pgfleet_core::names::validate_name(&host.name).is_ok();
        match validate_registration(&host) {
            Ok(()) => {
                prop_assert!(name_ok);
                let parsed: Ipv4Addr = host.address.parse().expect("accepted addresses parse");
                prop_assert_eq!(parsed.to_string(), host.address);
            }
            Err(error) => {
                prop_assert!(is_bad_request(&error));
                let canonical = host.address.parse::<Ipv4Addr>().is_ok_and(|ip| ip.to_string() == host.address);
                prop_assert!(!name_ok || !canonical);
            }
        }
    }

    /// Bodies the control plane defines: no panic on any JSON; the ones that refuse
    /// unknown fields accept only their own.
    #[test]
    fn server_bodies_never_panic(tree in json_value()) {
        if let Some(token) = body_fields::<CreateTokenRequest>(&tree, &["name", "role"])? {
            if let Value::Object(object) = &tree {
                prop_assert_eq!(object.get("name"), Some(&Value::from(token.name)));
            }
        }
        if let Some(join) = body_fields::<JoinTokenRequest>(&tree, &["ttl_secs"])? {
            if let Value::Object(object) = &tree {
                prop_assert_eq!(object.get("ttl_secs"), Some(&Value::from(join.ttl_secs)));
            }
        }
        body_parse::<JoinRequest>(&tree, &["host", "join_token", "address", "csr_pem"])?;
        body_parse::<CertificateRequest>(&tree, &["address", "csr_pem"])?;
        body_parse::<PrimaryChanged>(&tree, &[
            "db", "old_primary", "new_primary", "generation", "reason", "old_lsn", "new_lsn",
            "detected_at_ms", "promoted_at_ms",
        ])?;
    }

    /// `deny_unknown_fields` on the token, join-token, join and certificate bodies.
    #[test]
    fn unknown_fields_are_refused(
        token_name in name(),
        role in prop::sample::select(vec!["admin", "viewer", "metrics"]),
        ttl in any::<u64>(),
        join_token in any::<String>(),
        key in any::<String>(),
        extra in json_value(),
    ) {
        refuses_extra::<CreateTokenRequest>(serde_json::json!({"name": token_name, "role": role}), &key, &extra)?;
        refuses_extra::<JoinTokenRequest>(serde_json::json!({"ttl_secs": ttl}), &key, &extra)?;
        refuses_extra::<JoinRequest>(serde_json::json!({"host": token_name, "join_token": join_token}), &key, &extra)?;
        refuses_extra::<CertificateRequest>(
            serde_json::json!({"address": "10.0.0.1", "csr_pem": join_token}),
            &key,
            &extra,
        )?;
    }

    /// A token role is exactly `admin`, `viewer` or `metrics`.
    #[test]
    fn roles_are_admin_viewer_or_metrics(role in prop_oneof![any::<String>(), "[a-zA-Z]{0,8}", prop::sample::select(vec!["metrics".to_string(), "Metrics".to_string()])]) {
        let parsed = serde_json::from_value::<CreateTokenRequest>(serde_json::json!({"name": "t", "role": role}));
        prop_assert_eq!(parsed.is_ok(), role == "admin" || role == "viewer" || role == "metrics");
    }
}
