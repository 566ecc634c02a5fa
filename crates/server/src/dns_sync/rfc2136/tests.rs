use std::net::Ipv4Addr;

use super::*;

const KEY: &str = "key \"pgfleet-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"3Cj9pusJ1exLdP1RYKSaTGwIIbLG5cVY+RyzSUEhJyU=\";\n};\n";

fn owned(entries: &[(&str, [u8; 4])]) -> Owned {
    entries
        .iter()
        .map(|(name, address)| (name.to_string(), vec![Ipv4Addr::from(*address)]))
        .collect()
}

#[test]
fn urls_name_an_address_and_the_fleet_zone_or_a_parent() {
    let (server, zone) = parse_url(
        "rfc2136://127.0.0.1:5353/pgfleet.internal",
        "pgfleet.internal",
    )
    .unwrap();
    assert_eq!(server, "127.0.0.1:5353".parse().unwrap());
    assert_eq!(zone, "pgfleet.internal");
    let (server, zone) =
        parse_url("rfc2136://10.0.0.53/Example.COM.", "pgfleet.example.com").unwrap();
    assert_eq!(server.port(), 53);
    assert_eq!(zone, "example.com");
    for (url, expected) in [
        ("dns://127.0.0.1/pgfleet.internal", "expected rfc2136://"),
        ("rfc2136://127.0.0.1:53", "no zone"),
        (
            "rfc2136://ns1.example:53/pgfleet.internal",
            "not an IP address",
        ),
        (
            "rfc2136://127.0.0.1/other.internal",
            "neither the fleet's zone",
        ),
        (
            "rfc2136://127.0.0.1/fleet.internal",
            "neither the fleet's zone",
        ),
    ] {
        let error = parse_url(url, "pgfleet.internal").unwrap_err();
        assert!(error.contains(expected), "{url}: {error}");
    }
}

#[test]
fn the_flags_are_checked_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("update.key");
    std::fs::write(&key_file, KEY).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = ServerConfig::local(dir.path().to_path_buf());
    config.dns_update = Some("rfc2136://127.0.0.1:5353/pgfleet.internal".into());
    config.dns_update_key = Some(key_file.clone());
    assert!(config.validate().is_ok());
    let target = Target::from_config(&config).unwrap().unwrap();
    assert_eq!(target.url(), "rfc2136://127.0.0.1:5353/pgfleet.internal");

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let error = config.validate().unwrap_err();
    assert_eq!(error.flag, "--dns-update-key");
    assert!(error.to_string().contains("chmod 600"), "{error}");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut no_key = config.clone();
    no_key.dns_update_key = None;
    assert_eq!(no_key.validate().unwrap_err().flag, "--dns-update");
    let mut bad_url = config.clone();
    bad_url.dns_update = Some("rfc2136://127.0.0.1/elsewhere.example".into());
    assert_eq!(bad_url.validate().unwrap_err().flag, "--dns-update");

    std::fs::write(&key_file, KEY.replace("hmac-sha256", "hmac-md5")).unwrap();
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("hmac-md5") && !error.contains("3Cj9"),
        "{error}"
    );
}

#[test]
fn only_changed_names_are_sent_and_vanished_ones_deleted() {
    let before = owned(&[
        ("db1.z", [10, 0, 0, 1]),
        ("primary.db1.z", [10, 0, 0, 1]),
        ("n1.db1.z", [10, 0, 0, 1]),
        ("n2.db1.z", [10, 0, 0, 2]),
    ]);
    let after = owned(&[
        ("db1.z", [10, 0, 0, 2]),
        ("primary.db1.z", [10, 0, 0, 2]),
        ("n2.db1.z", [10, 0, 0, 2]),
        ("n3.db1.z", [10, 0, 0, 3]),
    ]);
    let sent = changes(&before, &after, false);
    let names: Vec<&str> = sent.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["db1.z", "n1.db1.z", "n3.db1.z", "primary.db1.z"]);
    assert!(sent[1].addresses.is_empty(), "n1 vanished: deleted");
    assert_eq!(sent[3].addresses, [Ipv4Addr::new(10, 0, 0, 2)]);
    assert!(changes(&after, &after, false).is_empty());
    // A full resync replaces every name either side knows.
    assert_eq!(changes(&before, &after, true).len(), 5);
}

#[test]
fn only_names_under_the_fleet_zone_are_published() {
    let mut a = std::collections::BTreeMap::new();
    a.insert(
        "primary.db1.pgfleet.internal".to_string(),
        vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1)],
    );
    a.insert("elsewhere.example".to_string(), vec![Ipv4Addr::LOCALHOST]);
    let view = ZoneRecords { generation: 3, a };
    let wanted = desired(&view, "pgfleet.internal");
    assert_eq!(wanted.len(), 1);
    assert_eq!(
        wanted["primary.db1.pgfleet.internal"],
        [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
    );
}
