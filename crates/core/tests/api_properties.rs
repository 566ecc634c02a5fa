//! Property tests of the REST API bodies in `pgfleet_core::api`: the request bodies a
//! client sends (create database, create replica, maintenance) and the answers the CLI
//! reads.
//!
//! - arbitrary bytes and JSON never panic; accepted requests are JSON objects with
//!   known fields only (or, a serde derive quirk, arrays of the fields in order), and
//!   round-trip;
//! - generated requests round-trip;
//! - `#[serde(deny_unknown_fields)]` holds: any extra field is refused;
//! - numbers out of a field's range are refused, never wrapped.

use std::fmt::Debug;

use pgfleet_core::api::{
    CreateDatabaseRequest, CreateReplicaRequest, DatabaseView, ErrorBody, HostView,
    MaintenanceRequest, TaskRef, UriView,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const CASES: u32 = 256;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9_-]{0,12}"]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "name",
            "version",
            "admin_user",
            "database",
            "priority",
            "on",
            "task_id",
            "error",
        ])
        .prop_map(str::to_string),
        text(),
    ]
}

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 8.0)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn create_database() -> impl Strategy<Value = CreateDatabaseRequest> {
    (
        text(),
        prop::option::of(any::<u32>()),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(
            |(name, version, admin_user, database)| CreateDatabaseRequest {
                name,
                version,
                admin_user,
                database,
                backup_policy: None,
                restore: None,
            },
        )
}

fn create_replica() -> impl Strategy<Value = CreateReplicaRequest> {
    (text(), prop::option::of(any::<u8>())).prop_map(|(name, priority)| CreateReplicaRequest {
        name,
        priority,
        count: None,
    })
}

fn maintenance() -> impl Strategy<Value = MaintenanceRequest> {
    any::<bool>().prop_map(|on| MaintenanceRequest { on })
}

/// A request body as an attacker might shape it: one of ours with a field replaced,
/// removed or added, or any JSON at all.
fn request_like() -> BoxedStrategy<Value> {
    let ours = prop_oneof![
        create_database().prop_map(|r| serde_json::to_value(r).unwrap()),
        create_replica().prop_map(|r| serde_json::to_value(r).unwrap()),
        maintenance().prop_map(|r| serde_json::to_value(r).unwrap()),
    ];
    prop_oneof![
        1 => json_value(),
        3 => (ours, key(), json_value(), any::<bool>()).prop_map(|(tree, key, value, remove)| {
            let Value::Object(mut object) = tree else { return tree };
            if remove {
                object.remove(&key);
            } else {
                object.insert(key, value);
            }
            Value::Object(object)
        }),
    ]
    .boxed()
}

fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = serde_json::to_vec(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = serde_json::from_slice(&bytes)
        .map_err(|e| TestCaseError::fail(format!("own output refused: {e}")))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

/// An accepted request is an object whose keys are all fields of the type (and include
/// the required ones), and it round-trips.
fn request_parse<T>(tree: &Value, fields: &[&str], required: &[&str]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(parsed) = serde_json::from_value::<T>(tree.clone()) else {
        return Ok(());
    };
    let object = match tree {
        Value::Object(object) => object,
        // serde's derive also reads a struct from an array of its fields in order
        // (`["db1", 15]`); the API document only promises objects. Same values, same
        // validation afterwards, so it is harmless, but it is all a non-object may be.
        Value::Array(items) => {
            prop_assert!(items.len() >= required.len() && items.len() <= fields.len());
            return round_trips(&parsed);
        }
        other => return Err(TestCaseError::fail(format!("accepted {other}"))),
    };
    for key in object.keys() {
        prop_assert!(
            fields.contains(&key.as_str()),
            "accepted unknown field {}",
            key
        );
    }
    for field in required {
        prop_assert!(object.contains_key(*field), "accepted without {}", field);
    }
    round_trips(&parsed)
}

/// Answers the CLI reads: no panic, and an accepted answer re-serialises stably.
fn answer_parse<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(parsed) = serde_json::from_slice::<T>(bytes) {
        let once = serde_json::to_value(&parsed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again: T = serde_json::from_value(once.clone())
            .map_err(|e| TestCaseError::fail(format!("own output refused: {e}")))?;
        prop_assert_eq!(serde_json::to_value(&again).unwrap(), once);
    }
    Ok(())
}

/// Adds `key` (when it is not a field) and checks the body is then refused.
fn refuses_extra<T>(
    value: &T,
    fields: &[&str],
    key: &str,
    extra: &Value,
) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    if fields.contains(&key) {
        return Ok(());
    }
    let Value::Object(mut object) = serde_json::to_value(value).unwrap() else {
        return Err(TestCaseError::fail("request bodies are objects"));
    };
    object.insert(key.to_string(), extra.clone());
    let refused = serde_json::from_value::<T>(Value::Object(object));
    prop_assert!(refused.is_err(), "unknown field {} accepted", key);
    prop_assert!(refused.unwrap_err().to_string().contains("unknown field"));
    Ok(())
}

const CREATE_DATABASE: &[&str] = &["name", "version", "admin_user", "database"];
const CREATE_REPLICA: &[&str] = &["name", "priority", "count"];
const MAINTENANCE: &[&str] = &["on"];

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    /// Any JSON given to every request body: no panic; what is accepted has only known
    /// fields, all required ones, and round-trips.
    #[test]
    fn request_bodies_accept_only_their_shape(tree in request_like()) {
        request_parse::<CreateDatabaseRequest>(&tree, CREATE_DATABASE, &["name"])?;
        request_parse::<CreateReplicaRequest>(&tree, CREATE_REPLICA, &[])?;
        request_parse::<MaintenanceRequest>(&tree, MAINTENANCE, &["on"])?;
    }

    /// Arbitrary bytes to the request bodies and to the answers the CLI reads.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        request_like().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]) {
        let tree = serde_json::from_slice::<Value>(&bytes).ok();
        for accepted in [
            serde_json::from_slice::<CreateDatabaseRequest>(&bytes).is_ok(),
            serde_json::from_slice::<CreateReplicaRequest>(&bytes).is_ok(),
            serde_json::from_slice::<MaintenanceRequest>(&bytes).is_ok(),
        ] {
            let container = tree.as_ref().is_some_and(|t| t.is_object() || t.is_array());
            prop_assert!(!accepted || container);
        }
        answer_parse::<TaskRef>(&bytes)?;
        answer_parse::<ErrorBody>(&bytes)?;
        answer_parse::<HostView>(&bytes)?;
        answer_parse::<DatabaseView>(&bytes)?;
        answer_parse::<UriView>(&bytes)?;
    }

    #[test]
    fn requests_round_trip(db in create_database(), replica in create_replica(), on in maintenance()) {
        round_trips(&db)?;
        round_trips(&replica)?;
        round_trips(&on)?;
    }

    /// `deny_unknown_fields`: a single extra field makes each body invalid.
    #[test]
    fn unknown_fields_are_refused(
        db in create_database(),
        replica in create_replica(),
        on in maintenance(),
        key in key(),
        extra in json_value(),
    ) {
        refuses_extra(&db, CREATE_DATABASE, &key, &extra)?;
        refuses_extra(&replica, CREATE_REPLICA, &key, &extra)?;
        refuses_extra(&on, MAINTENANCE, &key, &extra)?;
    }

    /// Optional fields may be left out (they become `None`); `name` may not.
    #[test]
    fn optional_fields_default_to_none(name in text()) {
        let db: CreateDatabaseRequest =
            serde_json::from_value(serde_json::json!({ "name": name })).unwrap();
        prop_assert_eq!(db, CreateDatabaseRequest { name: name.clone(), version: None, admin_user: None, database: None, backup_policy: None, restore: None });
        let replica: CreateReplicaRequest =
            serde_json::from_value(serde_json::json!({ "name": name })).unwrap();
        prop_assert_eq!(replica, CreateReplicaRequest { name, priority: None, count: None });
        // Everything may be left out: one replica with the next free name.
        let empty = serde_json::from_value::<CreateReplicaRequest>(Value::Object(Default::default()));
        prop_assert_eq!(empty.unwrap(), CreateReplicaRequest::default());
    }

    /// A priority is accepted exactly when it fits a `u8` (the server then limits it to
    /// 0..=100); a version exactly when it fits a `u32`. No wrapping, no truncation.
    #[test]
    fn numbers_are_range_checked(number in prop_oneof![any::<i64>(), -300i64..300], fraction in any::<bool>()) {
        let value = if fraction { Value::from(number as f64 + 0.5) } else { Value::from(number) };
        let replica = serde_json::from_value::<CreateReplicaRequest>(
            serde_json::json!({ "name": "r", "priority": value }),
        );
        let fits_u8 = !fraction && (0..=255).contains(&number);
        prop_assert_eq!(replica.is_ok(), fits_u8);
        if let Ok(replica) = replica {
            prop_assert_eq!(replica.priority.map(i64::from), Some(number));
        }
        let db = serde_json::from_value::<CreateDatabaseRequest>(
            serde_json::json!({ "name": "d", "version": value }),
        );
        let fits_u32 = !fraction && (0..=i64::from(u32::MAX)).contains(&number);
        prop_assert_eq!(db.is_ok(), fits_u32);
    }
}
