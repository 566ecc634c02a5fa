//! Property tests of the agent ↔ control-plane protocol (`pgfleet_core::protocol`): the
//! heartbeat request and answer and everything inside them cross the network as JSON.
//!
//! - arbitrary bytes and arbitrary (often nearly valid) JSON never panic, and whatever
//!   is accepted re-serialises to the same value;
//! - generated values round-trip (serialise → deserialise → equal);
//! - the protocol accepts unknown fields (agents and control planes of different
//!   versions talk to each other) and refuses a missing required field, while the
//!   fields marked `#[serde(default)]` or `Option` may be left out.

use std::fmt::Debug;

use pgfleet_core::protocol::{
    HeartbeatRequest, HeartbeatResponse, HostRegistration, InstanceObserved, InstancePhase,
    InstanceSpec, MonitorEndpoint, MonitorObserved, MonitorSpec, PeerSpec, PgClientTls,
    StandbyObserved, TlsMaterial, Upstream,
};
use pgfleet_core::{Desired, NodeRole};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

const CASES: u32 = 256;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9-]{0,12}"]
}

/// Floats as agents produce them (seconds with microsecond resolution, from
/// PostgreSQL). JSON has no NaN or infinity (serde_json writes them as `null`), and
/// serde_json without its `float_roundtrip` feature may read a 17-digit float back one
/// ULP off, so arbitrary `f64` bit patterns do not round-trip exactly.
fn finite() -> impl Strategy<Value = f64> {
    (-1_000_000_000_000i64..1_000_000_000_000).prop_map(|micros| micros as f64 / 1e6)
}

/// Any JSON document, with keys that are sometimes field names of the protocol.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "db",
            "node",
            "name",
            "address",
            "port",
            "generation",
            "phase",
            "state",
            "instances",
            "monitors",
            "host",
            "desired",
            "role",
            "primary",
            "lsn",
        ])
        .prop_map(str::to_string),
        text(),
    ]
}

fn desired() -> impl Strategy<Value = Desired> {
    prop::sample::select(vec![Desired::Running, Desired::Stopped, Desired::Deleted])
}

fn node_role() -> impl Strategy<Value = NodeRole> {
    prop::sample::select(vec![
        NodeRole::Primary,
        NodeRole::Replica,
        NodeRole::Monitor,
    ])
}

fn phase() -> impl Strategy<Value = InstancePhase> {
    prop::sample::select(vec![
        InstancePhase::Creating,
        InstancePhase::Running,
        InstancePhase::Stopped,
        InstancePhase::Failed,
        InstancePhase::Deleted,
    ])
}

fn host_registration() -> impl Strategy<Value = HostRegistration> {
    (text(), text(), text(), any::<u16>(), any::<u16>()).prop_map(
        |(name, address, failure_domain, agent_port, dns_port)| HostRegistration {
            name,
            address,
            failure_domain,
            agent_port,
            dns_port,
        },
    )
}

fn upstream() -> impl Strategy<Value = Upstream> {
    (text(), text(), any::<u16>()).prop_map(|(node, address, port)| Upstream {
        node,
        address,
        port,
    })
}

fn monitor_endpoint() -> impl Strategy<Value = MonitorEndpoint> {
    (text(), any::<u16>()).prop_map(|(address, port)| MonitorEndpoint { address, port })
}

fn pg_client_tls() -> impl Strategy<Value = PgClientTls> {
    (text(), text(), text(), text(), text()).prop_map(
        |(
            ca_pem,
            superuser_cert_pem,
            superuser_key_pem,
            replication_cert_pem,
            replication_key_pem,
        )| {
            PgClientTls {
                ca_pem,
                superuser_cert_pem,
                superuser_key_pem,
                replication_cert_pem,
                replication_key_pem,
            }
        },
    )
}

fn tls_material() -> impl Strategy<Value = TlsMaterial> {
    (text(), text(), prop::option::of(pg_client_tls())).prop_map(|(cert_pem, key_pem, client)| {
        TlsMaterial {
            cert_pem,
            key_pem,
            client,
        }
    })
}

fn peer_spec() -> BoxedStrategy<PeerSpec> {
    (
        text(),
        text(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(
            |(node, address, port, agent_port, priority, maintenance)| PeerSpec {
                node,
                address,
                port,
                agent_port,
                priority,
                maintenance,
            },
        )
        .boxed()
}

fn instance_spec() -> BoxedStrategy<InstanceSpec> {
    let names = (
        text(),
        text(),
        node_role(),
        text(),
        any::<u16>(),
        any::<u32>(),
    );
    let secrets = (desired(), text(), text(), text(), text(), text());
    let links = (
        text(),
        prop::option::of(upstream()),
        prop::option::of(monitor_endpoint()),
        prop::option::of(tls_material()),
        prop::collection::vec(peer_spec(), 0..3),
        any::<u64>(),
    );
    (names, secrets, links)
        .prop_map(
            |(
                (db, node, role, address, port, version),
                (
                    desired,
                    admin_user,
                    admin_password,
                    replication_password,
                    superuser_password,
                    monitor_token,
                ),
                (database_name, upstream, monitor, tls, peers, generation),
            )| InstanceSpec {
                db,
                node,
                role,
                address,
                port,
                version,
                desired,
                admin_user,
                admin_password,
                replication_password,
                superuser_password,
                monitor_token,
                database_name,
                upstream,
                monitor,
                tls,
                peers,
                generation,
                backup: None,
                restore: None,
            },
        )
        .boxed()
}

fn standby_observed() -> BoxedStrategy<StandbyObserved> {
    (
        text(),
        text(),
        text(),
        any::<u64>(),
        any::<u64>(),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(application_name, state, sync_state, flush_lsn, replay_lsn, replay_lag_ms)| {
                StandbyObserved {
                    application_name,
                    state,
                    sync_state,
                    flush_lsn,
                    replay_lsn,
                    replay_lag_ms,
                }
            },
        )
        .boxed()
}

fn instance_observed() -> BoxedStrategy<InstanceObserved> {
    let identity = (text(), text(), phase(), prop::option::of(text()));
    let position = (
        prop::option::of(any::<bool>()),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<u64>()),
        prop::option::of(finite()),
    );
    let replication = (
        prop::collection::vec(standby_observed(), 0..3),
        prop::option::of(text()),
        prop::option::of(text()),
        any::<u64>(),
    );
    (identity, position, replication)
        .prop_map(
            |(
                (db, node, phase, error),
                (is_primary, lsn, timeline, wal_receiver_streaming, lag_bytes, lag_seconds),
                (standbys, sync_standby_names, ha_state, generation),
            )| InstanceObserved {
                db,
                node,
                phase,
                error,
                is_primary,
                lsn,
                timeline,
                wal_receiver_streaming,
                lag_bytes,
                lag_seconds,
                standbys,
                sync_standby_names,
                ha_state,
                generation,
                backup: None,
                next_xid: None,
            },
        )
        .boxed()
}

fn monitor_spec() -> BoxedStrategy<MonitorSpec> {
    (
        (text(), text(), desired()),
        prop::collection::vec(peer_spec(), 0..4),
        (text(), text(), text(), any::<u64>()),
        prop::collection::vec(text(), 0..3),
        (prop::option::of(pg_client_tls()), any::<u64>()),
    )
        .prop_map(
            |(
                (db, node, desired),
                nodes,
                (initial_primary, superuser_password, monitor_token, generation),
                clients,
                (pg_tls, epoch),
            )| MonitorSpec {
                db,
                node,
                desired,
                nodes,
                initial_primary,
                superuser_password,
                monitor_token,
                clients,
                pg_tls,
                generation,
                epoch,
            },
        )
        .boxed()
}

fn monitor_observed() -> BoxedStrategy<MonitorObserved> {
    (
        text(),
        text(),
        any::<bool>(),
        prop::option::of(text()),
        any::<u64>(),
        json_value(),
    )
        .prop_map(
            |(db, node, running, primary, primary_generation, state)| MonitorObserved {
                db,
                node,
                running,
                primary,
                primary_generation,
                state,
                last_change: None,
            },
        )
        .boxed()
}

fn heartbeat_request() -> BoxedStrategy<HeartbeatRequest> {
    (
        host_registration(),
        any::<u32>(),
        prop::collection::vec(instance_observed(), 0..3),
        prop::collection::vec(monitor_observed(), 0..2),
        text(),
    )
        .prop_map(
            |(host, pg_version, instances, monitors, zone_digest)| HeartbeatRequest {
                host,
                pg_version,
                instances,
                monitors,
                zone_digest,
            },
        )
        .boxed()
}

fn heartbeat_response() -> BoxedStrategy<HeartbeatResponse> {
    (
        prop::collection::vec(instance_spec(), 0..3),
        prop::collection::vec(monitor_spec(), 0..2),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(instances, monitors, heartbeat_interval_ms, renew_certificate)| HeartbeatResponse {
                instances,
                monitors,
                heartbeat_interval_ms,
                renew_certificate,
                zone: None,
            },
        )
        .boxed()
}

/// Serialise → deserialise gives the value back, from bytes and from a `Value`.
fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = serde_json::to_vec(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = serde_json::from_slice(&bytes)
        .map_err(|e| TestCaseError::fail(format!("own output refused: {e}")))?;
    prop_assert_eq!(&back, value);
    let tree = serde_json::to_value(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = serde_json::from_value(tree)
        .map_err(|e| TestCaseError::fail(format!("own tree refused: {e}")))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

/// Whatever a peer sends: no panic, and an accepted message is stable (parsing what we
/// would send for it gives the same message). Accepted bytes are always valid JSON.
fn parse_is_total_and_stable<T>(bytes: &[u8], tree: &Value) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    if let Ok(parsed) = serde_json::from_slice::<T>(bytes) {
        prop_assert!(serde_json::from_slice::<Value>(bytes).is_ok());
        round_trips(&parsed)?;
    }
    if let Ok(parsed) = serde_json::from_value::<T>(tree.clone()) {
        round_trips(&parsed)?;
    }
    Ok(())
}

/// Unknown fields are ignored; each top-level field may be omitted exactly when it is
/// not in `required`.
fn field_rules<T>(
    value: &T,
    required: &[&str],
    unknown_key: &str,
    unknown: &Value,
) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Value::Object(object) =
        serde_json::to_value(value).map_err(|e| TestCaseError::fail(e.to_string()))?
    else {
        return Err(TestCaseError::fail("protocol messages are JSON objects"));
    };
    for field in required {
        prop_assert!(object.contains_key(*field), "{field} is not a field");
    }
    if !object.contains_key(unknown_key) {
        let mut extended: Map<String, Value> = object.clone();
        extended.insert(unknown_key.to_string(), unknown.clone());
        let parsed: T = serde_json::from_value(Value::Object(extended))
            .map_err(|e| TestCaseError::fail(format!("unknown field refused: {e}")))?;
        prop_assert_eq!(&parsed, value);
    }
    for field in object.keys() {
        let mut without = object.clone();
        without.remove(field);
        let parsed = serde_json::from_value::<T>(Value::Object(without));
        prop_assert_eq!(
            parsed.is_ok(),
            !required.contains(&field.as_str()),
            "omitting {} from {}",
            field,
            std::any::type_name::<T>()
        );
    }
    Ok(())
}

/// Runs `$check::<T>(args)` for every protocol message type.
macro_rules! for_every_message {
    ($check:ident ( $($arg:expr),* )) => {{
        $check::<HostRegistration>($($arg),*)?;
        $check::<HeartbeatRequest>($($arg),*)?;
        $check::<HeartbeatResponse>($($arg),*)?;
        $check::<Upstream>($($arg),*)?;
        $check::<MonitorEndpoint>($($arg),*)?;
        $check::<InstanceSpec>($($arg),*)?;
        $check::<TlsMaterial>($($arg),*)?;
        $check::<PgClientTls>($($arg),*)?;
        $check::<PeerSpec>($($arg),*)?;
        $check::<InstancePhase>($($arg),*)?;
        $check::<StandbyObserved>($($arg),*)?;
        $check::<InstanceObserved>($($arg),*)?;
        $check::<MonitorSpec>($($arg),*)?;
        $check::<MonitorObserved>($($arg),*)?;
    }};
}

/// Replaces the value of one top-level field (chosen by `index`) with `replacement`:
/// nearly valid messages reach the field decoders instead of failing on the first byte.
fn with_field_replaced(message: Value, index: usize, replacement: Value) -> Value {
    let Value::Object(mut object) = message else {
        return message;
    };
    if let Some(key) = object.keys().nth(index % object.len().max(1)).cloned() {
        object.insert(key, replacement);
    }
    Value::Object(object)
}

fn nearly_valid() -> BoxedStrategy<Value> {
    let message = prop_oneof![
        heartbeat_request().prop_map(|m| serde_json::to_value(m).unwrap()),
        heartbeat_response().prop_map(|m| serde_json::to_value(m).unwrap()),
        instance_spec().prop_map(|m| serde_json::to_value(m).unwrap()),
        instance_observed().prop_map(|m| serde_json::to_value(m).unwrap()),
        monitor_spec().prop_map(|m| serde_json::to_value(m).unwrap()),
        monitor_observed().prop_map(|m| serde_json::to_value(m).unwrap()),
        peer_spec().prop_map(|m| serde_json::to_value(m).unwrap()),
    ];
    (message, any::<usize>(), json_value())
        .prop_map(|(message, index, replacement)| with_field_replaced(message, index, replacement))
        .boxed()
}

fn hostile_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (heartbeat_request(), any::<usize>(), any::<u8>()).prop_map(|(m, at, byte)| {
            let mut bytes = serde_json::to_vec(&m).unwrap();
            let len = bytes.len();
            bytes[at % len] = byte;
            bytes
        }),
        (heartbeat_response(), any::<usize>()).prop_map(|(m, at)| {
            let mut bytes = serde_json::to_vec(&m).unwrap();
            let len = bytes.len();
            bytes.truncate(at % len);
            bytes
        }),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    /// Arbitrary bytes and JSON documents, given to every message type: no panic, and
    /// whatever is accepted is valid JSON and round-trips.
    #[test]
    fn hostile_input_is_refused_or_stable(bytes in hostile_bytes(), tree in prop_oneof![json_value(), nearly_valid()]) {
        for_every_message!(parse_is_total_and_stable(&bytes, &tree));
    }

    #[test]
    fn heartbeat_requests_round_trip(message in heartbeat_request()) {
        round_trips(&message)?;
    }

    #[test]
    fn heartbeat_responses_round_trip(message in heartbeat_response()) {
        round_trips(&message)?;
    }

    #[test]
    fn monitor_observations_round_trip(message in monitor_observed()) {
        round_trips(&message)?;
    }

    /// Unknown fields are ignored (mixed versions), required fields are required,
    /// `#[serde(default)]` and `Option` fields are optional.
    #[test]
    fn field_presence_rules(
        request in heartbeat_request(),
        response in heartbeat_response(),
        spec in instance_spec(),
        observed in instance_observed(),
        monitor in monitor_spec(),
        monitor_seen in monitor_observed(),
        peer in peer_spec(),
        standby in standby_observed(),
        unknown_key in key(),
        unknown in json_value(),
    ) {
        let key = unknown_key.as_str();
        field_rules(&request, &["host", "pg_version", "instances"], key, &unknown)?;
        field_rules(&response, &["instances", "heartbeat_interval_ms"], key, &unknown)?;
        field_rules(&request.host, &["name", "address", "failure_domain", "agent_port"], key, &unknown)?;
        field_rules(
            &spec,
            &[
                "db", "node", "role", "address", "port", "version", "desired", "admin_user",
                "admin_password", "replication_password", "superuser_password",
                "database_name", "generation",
            ],
            key,
            &unknown,
        )?;
        field_rules(&observed, &["db", "node", "phase", "generation"], key, &unknown)?;
        field_rules(
            &monitor,
            &["db", "node", "desired", "nodes", "initial_primary", "superuser_password", "generation"],
            key,
            &unknown,
        )?;
        field_rules(&monitor_seen, &["db", "node", "running", "state"], key, &unknown)?;
        field_rules(
            &peer,
            &["node", "address", "port", "agent_port", "priority", "maintenance"],
            key,
            &unknown,
        )?;
        field_rules(
            &standby,
            &["application_name", "state", "sync_state", "flush_lsn", "replay_lsn"],
            key,
            &unknown,
        )?;
    }

    /// Numbers out of a field's range are refused, never wrapped: a port above 65535 or
    /// a negative generation does not turn into some other port or generation.
    #[test]
    fn out_of_range_numbers_are_refused(peer in peer_spec(), big in 65_536u64..=u64::MAX, negative in i64::MIN..0) {
        let mut tree = serde_json::to_value(&peer).unwrap();
        tree["port"] = Value::from(big);
        prop_assert!(serde_json::from_value::<PeerSpec>(tree.clone()).is_err());
        tree["port"] = Value::from(negative);
        prop_assert!(serde_json::from_value::<PeerSpec>(tree.clone()).is_err());
        tree["port"] = Value::from(peer.port);
        tree["priority"] = Value::from(256 + big % 1000);
        prop_assert!(serde_json::from_value::<PeerSpec>(tree).is_err());
    }
}
