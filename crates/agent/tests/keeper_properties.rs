//! Property tests of the keeper ↔ monitor messages (`KeeperReport` in, `Assignment`
//! out, both JSON over HTTP) and of the assignment file the keeper persists:
//!
//! - arbitrary bytes and JSON never panic; accepted messages round-trip;
//! - generated messages round-trip; unknown fields are ignored (no
//!   `deny_unknown_fields`), every field is required except the `Option`s;
//! - `Assignment::mode` is total and follows the state names of `pgfleet-ha`;
//! - `keeper::load` on arbitrary file content never panics and reads back exactly
//!   what `keeper::persist` wrote.

use std::fmt::Debug;

use pgfleet_agent::keeper::{self, sync_names, Assignment, KeeperReport, Mode, PrimaryRef};
use pgfleet_ha::{NodeState, StreamingStandby};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const CASES: u32 = 256;

/// Every HA state, by its wire name.
const STATES: [NodeState; 13] = [
    NodeState::Single,
    NodeState::WaitPrimary,
    NodeState::Primary,
    NodeState::Draining,
    NodeState::Demoted,
    NodeState::WaitStandby,
    NodeState::Catchingup,
    NodeState::Secondary,
    NodeState::ReportLsn,
    NodeState::FastForward,
    NodeState::Promote,
    NodeState::Maintenance,
    NodeState::Dropped,
];

fn state_name(state: NodeState) -> String {
    serde_json::to_value(state)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9_-]{0,10}"]
}

fn state_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(STATES.to_vec()).prop_map(state_name),
        1 => text(),
    ]
}

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn primary_ref() -> impl Strategy<Value = PrimaryRef> {
    (text(), text(), any::<u16>()).prop_map(|(node, address, port)| PrimaryRef {
        node,
        address,
        port,
    })
}

fn assignment() -> BoxedStrategy<Assignment> {
    (
        prop::sample::select(STATES.to_vec()),
        any::<u64>(),
        prop::option::of(primary_ref()),
        prop::collection::vec(text(), 0..4),
        any::<u32>(),
    )
        .prop_map(
            |(state, generation, primary, sync_standbys, sync_quorum)| Assignment {
                state,
                generation,
                primary,
                sync_standbys,
                sync_quorum,
            },
        )
        .boxed()
}

fn report() -> BoxedStrategy<KeeperReport> {
    let standby =
        (text(), any::<u64>()).prop_map(|(name, flush_lsn)| StreamingStandby { name, flush_lsn });
    (
        (
            text(),
            state_text(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        ),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::collection::vec(standby, 0..3),
    )
        .prop_map(
            |(
                (node, reported, generation_seen, lsn, timeline),
                (pg_running, is_in_recovery, wal_receiver_streaming),
                streaming_standbys,
            )| KeeperReport {
                node,
                reported,
                generation_seen,
                lsn,
                timeline,
                pg_running,
                is_in_recovery,
                wal_receiver_streaming,
                upstream_silent_ms: wal_receiver_streaming.then_some(lsn % 5_000),
                streaming_standbys,
                held: None,
            },
        )
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

fn accepted_round_trips<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match serde_json::from_slice::<T>(bytes) {
        Ok(parsed) => round_trips(&parsed),
        Err(_) => Ok(()),
    }
}

/// Unknown fields are ignored; a field may be left out exactly when it is optional.
fn field_rules<T>(
    value: &T,
    optional: &[&str],
    key: &str,
    extra: &Value,
) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Value::Object(object) = serde_json::to_value(value).unwrap() else {
        return Err(TestCaseError::fail("messages are objects"));
    };
    if !object.contains_key(key) {
        let mut extended = object.clone();
        extended.insert(key.to_string(), extra.clone());
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
            optional.contains(&field.as_str()),
            "omitting {}",
            field
        );
    }
    Ok(())
}

/// Messages with one field swapped for arbitrary JSON, arbitrary JSON, noise, and
/// truncated or corrupted messages.
fn hostile_bytes() -> BoxedStrategy<Vec<u8>> {
    let ours = prop_oneof![
        report().prop_map(|r| serde_json::to_value(r).unwrap()),
        assignment().prop_map(|a| serde_json::to_value(a).unwrap()),
    ];
    let swapped = (ours, any::<usize>(), json_value()).prop_map(|(tree, index, value)| {
        let Value::Object(mut object) = tree else {
            return serde_json::to_vec(&tree).unwrap();
        };
        if let Some(key) = object.keys().nth(index % object.len().max(1)).cloned() {
            object.insert(key, value);
        }
        serde_json::to_vec(&Value::Object(object)).unwrap()
    });
    let corrupted = (report(), any::<usize>(), any::<u8>(), any::<bool>()).prop_map(
        |(report, at, byte, cut)| {
            let mut bytes = serde_json::to_vec(&report).unwrap();
            let len = bytes.len();
            if cut {
                bytes.truncate(at % len);
            } else {
                bytes[at % len] = byte;
            }
            bytes
        },
    );
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        swapped,
        corrupted,
    ]
    .boxed()
}

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    /// What a keeper or a monitor may receive: no panic; accepted messages round-trip.
    #[test]
    fn hostile_messages_are_refused_or_stable(bytes in hostile_bytes()) {
        accepted_round_trips::<KeeperReport>(&bytes)?;
        accepted_round_trips::<Assignment>(&bytes)?;
        accepted_round_trips::<PrimaryRef>(&bytes)?;
    }

    #[test]
    fn messages_round_trip(report in report(), assignment in assignment()) {
        round_trips(&report)?;
        round_trips(&assignment)?;
    }

    /// Unknown fields are ignored; all fields but `primary` are required.
    #[test]
    fn field_presence_rules(report in report(), assignment in assignment(), key in text(), extra in json_value()) {
        field_rules(&report, &["held", "upstream_silent_ms"], &key, &extra)?;
        field_rules(&assignment, &["primary"], &key, &extra)?;
        if let Some(primary) = &assignment.primary {
            field_rules(primary, &[], &key, &extra)?;
        }
    }

    /// Only the writable HA states make the node run as a primary (with the
    /// quorum list it was sent).
    #[test]
    fn only_writable_states_run_as_primary(assignment in assignment()) {
        let writable = matches!(
            assignment.state,
            NodeState::Single | NodeState::WaitPrimary | NodeState::Primary | NodeState::Promote
        );
        match assignment.mode() {
            Mode::Primary { sync_standby_names } => {
                prop_assert!(writable);
                prop_assert_eq!(
                    sync_standby_names,
                    sync_names(&assignment.sync_standbys, assignment.sync_quorum)
                );
            }
            Mode::Standby { upstream } => prop_assert_eq!(Some(upstream), assignment.primary),
            _ => prop_assert!(!writable),
        }
    }

    /// An assignment whose state names no HA state is refused whole when
    /// it arrives: the keeper never acts on a state it does not know.
    #[test]
    fn assignments_with_unknown_states_are_refused(state in state_text(), generation in any::<u64>()) {
        let body = serde_json::json!({
            "state": state, "generation": generation, "primary": null,
            "sync_standbys": [], "sync_quorum": 0,
        });
        let parsed = serde_json::from_value::<Assignment>(body);
        let known = STATES.iter().any(|s| state_name(*s) == state);
        prop_assert_eq!(parsed.is_ok(), known);
    }

    /// Every HA state the monitor can assign has a mode matching its role: the
    /// writable states run as primary, the others never do.
    #[test]
    fn ha_states_map_to_their_role(state in prop::sample::select(STATES.to_vec()), primary in prop::option::of(primary_ref())) {
        let assignment = Assignment {
            state,
            generation: 1,
            primary,
            sync_standbys: vec!["a".into()],
            sync_quorum: 1,
        };
        let writable = matches!(
            state,
            NodeState::Single | NodeState::WaitPrimary | NodeState::Primary | NodeState::Promote
        );
        prop_assert_eq!(matches!(assignment.mode(), Mode::Primary { .. }), writable);
    }

    /// `ANY k (...)`: empty when there is no name or no quorum, else the quorum is at
    /// most the number of names and every name appears quoted.
    #[test]
    fn sync_names_are_well_formed(names in prop::collection::vec("[a-z][a-z0-9-]{0,10}", 0..5), quorum in any::<u32>()) {
        let text = sync_names(&names, quorum);
        if names.is_empty() || quorum == 0 {
            prop_assert_eq!(text, "");
            return Ok(());
        }
        let expected_quorum = quorum.min(names.len() as u32);
        let prefix = format!("ANY {expected_quorum} (");
        prop_assert!(text.starts_with(&prefix));
        prop_assert!(text.ends_with(')'));
        for name in &names {
            let quoted = format!("\"{name}\"");
            prop_assert!(text.contains(&quoted));
        }
    }

    /// The persisted assignment: arbitrary file content never panics `load` (it is
    /// `None` unless the content is a valid assignment), and `persist` → `load` gives the
    /// assignment back.
    #[test]
    fn persisted_assignments_load_back(content in hostile_bytes(), assignment in assignment()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("assignment.json"), &content).unwrap();
        let loaded = keeper::load(dir.path());
        let expected = std::str::from_utf8(&content)
            .ok()
            .and_then(|text| serde_json::from_str::<Assignment>(text).ok());
        prop_assert_eq!(loaded, expected);
        keeper::persist(dir.path(), &assignment).unwrap();
        prop_assert_eq!(keeper::load(dir.path()), Some(assignment));
    }
}
