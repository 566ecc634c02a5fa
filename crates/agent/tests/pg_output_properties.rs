//! Property tests of the agent's parsers of PostgreSQL output and files: the version
//! printed by `postgres --version` and the pid in `postmaster.pid` (a file the postgres
//! user can write, read by the agent before it sends signals).

use pgfleet_agent::pg::bin::parse_version;
use pgfleet_agent::pg::process::parse_postmaster_pid;
use proptest::prelude::*;
use proptest::test_runner::Config;

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    /// Arbitrary text: no panic, and no version out of text without digits.
    #[test]
    fn version_parsing_is_total(text in prop_oneof![any::<String>(), "[a-zA-Z0-9 .()+-]{0,40}"]) {
        if let Some(version) = parse_version(&text) {
            // A version comes from digits in the text, never from nowhere.
            prop_assert!(text.chars().any(|c| c.is_ascii_digit()), "{version} from {text:?}");
        }
    }

    /// What real PostgreSQL builds print (releases, betas, release candidates,
    /// development builds; distribution suffixes ignored) gives their major version.
    #[test]
    fn printed_versions_parse(
        major in 9u32..100,
        minor in prop_oneof![
            (0u32..40).prop_map(|m| format!(".{m}")),
            Just("beta1".to_string()),
            Just("rc2".to_string()),
            Just("devel".to_string()),
        ],
        distro in prop_oneof![
            Just(String::new()),
            "[0-9]{1,2}\\.[0-9]{1,2}-[0-9]\\.pgdg[0-9]{2}\\+1".prop_map(|s| format!(" (Debian {s})")),
            Just(" (Ubuntu 16.4-0ubuntu0.24.04.1)".to_string()),
        ],
    ) {
        let text = format!("postgres (PostgreSQL) {major}{minor}{distro}\n");
        prop_assert_eq!(parse_version(&text), Some(major));
    }

    /// `postmaster.pid` with arbitrary content: no panic; only a pid above 1 on the
    /// first line is returned, so the agent never signals 0 (its own group), 1 (init)
    /// or a negative number (a process group, or every process for -1).
    #[test]
    fn postmaster_pid_parsing_is_total(text in prop_oneof![
        any::<String>(),
        (any::<i32>(), "[ \t]{0,2}", "(\n[^\n]{0,20}){0,3}").prop_map(|(pid, pad, rest)| format!("{pad}{pid}{pad}{rest}")),
    ]) {
        let parsed = parse_postmaster_pid(&text);
        let first = text.lines().next().map(str::trim).and_then(|l| l.parse::<i32>().ok());
        prop_assert_eq!(parsed, first.filter(|pid| *pid > 1));
    }

    /// The file PostgreSQL writes (pid, data dir, start time, port, socket dir,
    /// listen address, shared memory key, status) gives back the pid.
    #[test]
    fn written_postmaster_pid_files_parse(pid in 2i32..=i32::MAX, port in any::<u16>(), start in any::<u32>()) {
        let text = format!(
            "{pid}\n/var/lib/postgresql/16/main\n{start}\n{port}\n/tmp\n127.0.0.1\n  5432001         0\nready   \n"
        );
        prop_assert_eq!(parse_postmaster_pid(&text), Some(pid));
    }

    /// Single-user backends write `-pid`; such a file is never taken for a postmaster.
    #[test]
    fn non_positive_pids_are_refused(pid in i32::MIN..=1) {
        prop_assert_eq!(parse_postmaster_pid(&format!("{pid}\n/data\n")), None);
    }
}
