use std::net::Ipv4Addr;

use hickory_proto::op::{Message, OpCode, UpdateMessage};
use hickory_proto::rr::{DNSClass, RData, RecordType};

use super::*;

/// What `tsig-keygen -a hmac-sha256 pgfleet-update` printed.
const KEYGEN_OUTPUT: &str = "key \"pgfleet-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"3Cj9pusJ1exLdP1RYKSaTGwIIbLG5cVY+RyzSUEhJyU=\";\n};\n";

fn change(name: &str, addresses: &[[u8; 4]]) -> NameChange {
    NameChange {
        name: name.into(),
        addresses: addresses.iter().map(|a| Ipv4Addr::from(*a)).collect(),
    }
}

#[test]
fn each_changed_name_is_deleted_then_added_with_the_ttl() {
    let changes = [
        change("primary.db1.pgfleet.internal", &[[127, 0, 0, 3]]),
        change("old.db1.pgfleet.internal", &[]),
    ];
    let messages = update_messages("pgfleet.internal", &changes, 7).unwrap();
    assert_eq!(messages.len(), 1, "one publish, one message");
    let message = &messages[0];
    assert_eq!(message.op_code, OpCode::Update);
    assert_eq!(message.zones().len(), 1);
    assert_eq!(message.zones()[0].name().to_ascii(), "pgfleet.internal.");
    assert_eq!(message.zones()[0].query_type(), RecordType::SOA);
    let updates = message.updates();
    assert_eq!(updates.len(), 3);
    // primary.db1: delete the A RRset (class ANY, TTL 0, no rdata), add the address.
    assert_eq!(updates[0].name.to_ascii(), "primary.db1.pgfleet.internal.");
    assert_eq!(updates[0].dns_class, DNSClass::ANY);
    assert_eq!(updates[0].ttl, 0);
    assert_eq!(updates[0].record_type(), RecordType::A);
    assert!(matches!(updates[0].data, RData::Update0(RecordType::A)));
    assert_eq!(updates[1].name.to_ascii(), "primary.db1.pgfleet.internal.");
    assert_eq!(updates[1].dns_class, DNSClass::IN);
    assert_eq!(updates[1].ttl, 7);
    assert!(matches!(&updates[1].data, RData::A(a) if a.0 == Ipv4Addr::new(127, 0, 0, 3)));
    // old.db1: only deleted.
    assert_eq!(updates[2].name.to_ascii(), "old.db1.pgfleet.internal.");
    assert_eq!(updates[2].dns_class, DNSClass::ANY);
    // It encodes and decodes as the same update.
    let decoded = Message::from_vec(&message.to_vec().unwrap()).unwrap();
    assert_eq!(decoded.updates().len(), 3);
}

#[test]
fn a_parent_zone_is_allowed_a_foreign_one_refused() {
    let changes = [change("db1.pgfleet.example.com", &[[10, 0, 0, 1]])];
    let messages = update_messages("example.com", &changes, 1).unwrap();
    assert_eq!(messages[0].zones()[0].name().to_ascii(), "example.com.");
    let error = update_messages("other.example", &changes, 1).unwrap_err();
    assert!(
        error.to_string().contains("db1.pgfleet.example.com"),
        "{error}"
    );
}

#[test]
fn large_publishes_are_split_without_cutting_a_name() {
    let changes: Vec<NameChange> = (0..2000)
        .map(|i| change(&format!("node-{i}.db.pgfleet.internal"), &[[10, 0, 0, 1]]))
        .collect();
    let messages = update_messages("pgfleet.internal", &changes, 1).unwrap();
    assert!(messages.len() > 1);
    let mut names = Vec::new();
    for message in &messages {
        assert!(message.to_vec().unwrap().len() <= MAX_UPDATE_BYTES);
        let updates = message.updates();
        assert_eq!(updates.len() % 2, 0, "each name's delete and add together");
        names.extend(updates.iter().step_by(2).map(|r| r.name.to_ascii()));
    }
    assert_eq!(names.len(), 2000, "every name once");
    assert_eq!(names[1999], "node-1999.db.pgfleet.internal.");
}

#[test]
fn bind_key_files_parse() {
    let key = TsigKey::parse(KEYGEN_OUTPUT).unwrap();
    assert_eq!(key.name(), "pgfleet-update");
    assert_eq!(key.algorithm(), KeyAlgorithm::HmacSha256);
    assert_eq!(key.secret_len_for_tests(), 32);
    let debug = format!("{key:?}");
    assert!(
        !debug.contains("3Cj9pus"),
        "the secret is never printed: {debug}"
    );
    let commented = format!("# made by tsig-keygen\n/* block */ {KEYGEN_OUTPUT} // end\n");
    assert_eq!(TsigKey::parse(&commented).unwrap().name(), "pgfleet-update");
    let sha512 = KEYGEN_OUTPUT.replace("hmac-sha256", "hmac-sha512");
    assert_eq!(
        TsigKey::parse(&sha512).unwrap().algorithm(),
        KeyAlgorithm::HmacSha512
    );
}

#[test]
fn bad_key_files_are_refused_with_the_cause() {
    let md5 = KEYGEN_OUTPUT.replace("hmac-sha256", "hmac-md5");
    assert!(matches!(
        TsigKey::parse(&md5),
        Err(KeyFileError::Algorithm { name }) if name == "hmac-md5"
    ));
    let bad_base64 = KEYGEN_OUTPUT.replace("3Cj9pusJ", "3Cj9p*sJ");
    let error = TsigKey::parse(&bad_base64).unwrap_err();
    assert!(matches!(error, KeyFileError::Secret(_)), "{error}");
    assert!(!error.to_string().contains("3Cj9p"), "{error}");
    let no_secret = "key \"k\" { algorithm hmac-sha256; };";
    assert!(matches!(
        TsigKey::parse(no_secret),
        Err(KeyFileError::Syntax { .. })
    ));
    assert!(matches!(
        TsigKey::parse("not a key file"),
        Err(KeyFileError::Syntax { .. })
    ));
    let two = format!("{KEYGEN_OUTPUT}{KEYGEN_OUTPUT}");
    assert!(matches!(
        TsigKey::parse(&two),
        Err(KeyFileError::Syntax { .. })
    ));
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("update.key");
    std::fs::write(&path, KEYGEN_OUTPUT).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = TsigKey::load(&path).unwrap_err();
    assert!(matches!(
        error,
        KeyFileError::Permissions { mode: 0o644, .. }
    ));
    assert!(error.to_string().contains("chmod 600"), "{error}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(TsigKey::load(&path).unwrap().name(), "pgfleet-update");
    let missing = TsigKey::load(&dir.path().join("absent.key")).unwrap_err();
    assert!(matches!(missing, KeyFileError::Read { .. }));
}

/// The MAC hickory puts in the TSIG record is HMAC-SHA256 over exactly
/// what RFC 8945 §4.3.3 says, computed here independently with ring.
#[test]
fn the_tsig_mac_covers_the_message_and_the_tsig_variables() {
    let key = TsigKey::parse(KEYGEN_OUTPUT).unwrap();
    let changes = [change("primary.db1.pgfleet.internal", &[[127, 0, 0, 3]])];
    let mut message = update_messages("pgfleet.internal", &changes, 1)
        .unwrap()
        .remove(0);
    let unsigned = message.to_vec().unwrap();
    let time_signed: u64 = 1_767_225_600;
    message.finalize(&key.signer(), time_signed).unwrap();
    let tsig = message.signature().unwrap();
    assert_eq!(tsig.name.to_ascii(), "pgfleet-update.");
    assert_eq!(tsig.data.time, time_signed);
    assert_eq!(tsig.data.fudge, TSIG_FUDGE_SECS);

    let mut variables = Vec::new();
    // key name, class ANY, TTL 0 (canonical wire form)
    variables.extend_from_slice(b"\x0epgfleet-update\x00");
    variables.extend_from_slice(&255u16.to_be_bytes());
    variables.extend_from_slice(&0u32.to_be_bytes());
    // algorithm name, time signed (48 bits), fudge, error, other len
    variables.extend_from_slice(b"\x0bhmac-sha256\x00");
    variables.extend_from_slice(&time_signed.to_be_bytes()[2..]);
    variables.extend_from_slice(&TSIG_FUDGE_SECS.to_be_bytes());
    variables.extend_from_slice(&0u16.to_be_bytes());
    variables.extend_from_slice(&0u16.to_be_bytes());
    let mut signed = unsigned.clone();
    signed.extend_from_slice(&variables);
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.secret_for_tests());
    let expected = ring::hmac::sign(&hmac_key, &signed);
    assert_eq!(tsig.data.mac, expected.as_ref());

    // The signed message carries the TSIG last and verifies with the key.
    let wire = message.to_vec().unwrap();
    assert!(key.signer().verify_message_byte(&wire, None, true).is_ok());
    let other = TsigKey::parse(&KEYGEN_OUTPUT.replace("3Cj9", "4Cj9")).unwrap();
    assert!(other
        .signer()
        .verify_message_byte(&wire, None, true)
        .is_err());
}

#[test]
fn refusals_say_what_to_fix() {
    let bad_key = UpdateError::Refused {
        rcode: ResponseCode::NotAuth,
        tsig_error: Some(TsigError::BadKey),
    };
    assert!(
        bad_key.to_string().contains("does not know the key"),
        "{bad_key}"
    );
    let bad_sig = UpdateError::Refused {
        rcode: ResponseCode::NotAuth,
        tsig_error: Some(TsigError::BadSig),
    };
    assert!(bad_sig.to_string().contains("secret differs"), "{bad_sig}");
    let refused = UpdateError::Refused {
        rcode: ResponseCode::Refused,
        tsig_error: None,
    };
    assert!(
        refused.to_string().contains("REFUSED") && refused.to_string().contains("allow-update"),
        "{refused}"
    );
}
