//! Validation of user-chosen names (databases, nodes, hosts): each must be a
//! DNS label, because it becomes part of a DNS name in the fleet's zone.

/// Why a name was refused. The message states the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid name {name:?}: names are DNS labels: 1-63 characters, lowercase letters, digits and '-', starting with a letter and not ending with '-'")]
    Invalid { name: String },
    #[error("invalid name {name:?}: {reason}")]
    Reserved { name: String, reason: &'static str },
}

/// Accepts a DNS label: 1–63 chars of `[a-z0-9-]`, first a letter, last not `-`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let invalid = || NameError::Invalid {
        name: name.to_string(),
    };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return Err(invalid());
    }
    if !bytes[0].is_ascii_lowercase() {
        return Err(invalid());
    }
    if bytes[bytes.len() - 1] == b'-' {
        return Err(invalid());
    }
    for &byte in bytes {
        let allowed = byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-';
        if !allowed {
            return Err(invalid());
        }
    }
    Ok(())
}

/// Database names additionally may not be `primary`, which is the label of
/// the primary's DNS name.
pub fn validate_database_name(name: &str) -> Result<(), NameError> {
    validate_name(name)?;
    if name == "primary" {
        return Err(NameError::Reserved {
            name: name.to_string(),
            reason: "'primary' is reserved for primary.<db>.<zone>",
        });
    }
    Ok(())
}

/// Node names may not be `primary` either (`<node>.<db>.<zone>` would clash).
pub fn validate_node_name(name: &str) -> Result<(), NameError> {
    validate_database_name(name)
}

/// The next `count` free replica names `pg-replica-<k>` (k from 1, skipping
/// every name in `taken`): what the API gives replicas created without a
/// name and what the web UI suggests.
pub fn next_replica_names<'a>(
    taken: impl IntoIterator<Item = &'a str> + Clone,
    count: usize,
) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    let mut number = 1;
    while names.len() < count {
        let name = format!("pg-replica-{number}");
        if !taken.clone().into_iter().any(|t| t == name) {
            names.push(name);
        }
        number += 1;
    }
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn replica_names_fill_gaps_and_skip_taken_ones() {
        let taken = ["pg-replica-1", "pg-replica-3", "other"];
        assert_eq!(
            super::next_replica_names(taken, 3),
            vec!["pg-replica-2", "pg-replica-4", "pg-replica-5"]
        );
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_typical_names() {
        for name in ["pg-dev-db-1", "a", "db1", "x-y-z"] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
        assert!(validate_name(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn refuses_bad_names_with_the_rule() {
        for name in ["", "1db", "-db", "db-", "Db", "db_1", "db.1", "dé", "db 1"] {
            let error = validate_name(name).unwrap_err();
            assert!(error.to_string().contains("DNS labels"), "{name}");
        }
        assert!(validate_name(&"a".repeat(64)).is_err());
        assert!(validate_database_name("primary").is_err());
    }

    proptest! {
        #[test]
        fn valid_names_are_exactly_dns_labels(name in "\\PC{0,70}") {
            let expected = !name.is_empty()
                && name.len() <= 63
                && name.chars().next().unwrap().is_ascii_lowercase()
                && !name.ends_with('-')
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            prop_assert_eq!(validate_name(&name).is_ok(), expected);
        }

        #[test]
        fn generated_labels_are_accepted(name in "[a-z]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assert!(validate_name(&name).is_ok());
        }
    }
}
