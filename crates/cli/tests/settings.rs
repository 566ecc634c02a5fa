//! Settings are validated once at start: a control plane or an agent given
//! a value it cannot work with refuses to start, exits non-zero and names
//! the flag (before, an agent with a bad `--failure-timeout-ms` ran, and
//! its monitors refused every step with a debug-level log line).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `pgfleet ARGS`; it must exit within a minute (a process that starts
/// despite the bad setting would run until killed).
fn pgfleet(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgfleet"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("PGFLEET_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgfleet runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "pgfleet {args:?} kept running with an invalid setting: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refused_naming(args: &[&str], flag: &str) {
    let output = pgfleet(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} started: {stderr}");
    assert!(
        stderr.contains(flag),
        "{args:?}: the error names {flag}: {stderr}"
    );
}

#[test]
fn an_agent_with_a_failure_timeout_the_monitor_cannot_use_refuses_to_start() {
    let agent = |timeout: &'static str| {
        [
            "agent",
            "--name",
            "host-1",
            "--address",
            "127.0.0.1",
            "--data-dir",
            "agent-data",
            "--server",
            "https://127.0.0.1:9",
            "--failure-timeout-ms",
            timeout,
        ]
    };
    refused_naming(&agent("0"), "--failure-timeout-ms");
    refused_naming(&agent("600000"), "--failure-timeout-ms");
}

#[test]
fn a_control_plane_with_an_invalid_setting_refuses_to_start() {
    let server = ["server", "--api", "127.0.0.1:0", "--dns", "127.0.0.1:0"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        server.iter().chain(extra).copied().collect()
    };
    refused_naming(&with(&["--host-timeout-ms", "0"]), "--host-timeout-ms");
    refused_naming(&with(&["--zone", "a..b"]), "--zone");
    refused_naming(&with(&["--store", "mysql://db/x"]), "--store");
}

#[test]
fn pgfleet_up_checks_the_failure_timeout_before_starting_anything() {
    refused_naming(&["up", "--failure-timeout-ms", "0"], "--failure-timeout-ms");
}

#[test]
fn an_invalid_dns_update_target_or_key_refuses_to_start() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().expect("temp dir");
    let key_file = keys.path().join("update.key");
    std::fs::write(
        &key_file,
        "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n",
    )
    .expect("key file");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key = key_file.to_str().expect("utf-8 path");
    let server = ["server", "--api", "127.0.0.1:0", "--dns", "127.0.0.1:0"];
    let with = |extra: &[&str]| -> Vec<String> {
        server.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let refused = |args: Vec<String>, flag: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused_naming(&args, flag);
    };
    refused(
        with(&[
            "--dns-update",
            "rfc2136://ns1.example/pgfleet.internal",
            "--dns-update-key",
            key,
        ]),
        "--dns-update",
    );
    refused(
        with(&[
            "--dns-update",
            "rfc2136://127.0.0.1/example.org",
            "--dns-update-key",
            key,
        ]),
        "--dns-update",
    );
    refused(
        with(&["--dns-update", "rfc2136://127.0.0.1/pgfleet.internal"]),
        "--dns-update-key",
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    refused(
        with(&[
            "--dns-update",
            "rfc2136://127.0.0.1/pgfleet.internal",
            "--dns-update-key",
            key,
        ]),
        "--dns-update-key",
    );
    refused_naming(
        &[
            "up",
            "--hosts",
            "1",
            "--dns-update",
            "rfc2136://127.0.0.1/pgfleet.internal",
            "--dns-update-key",
            key,
        ],
        "--dns-update-key",
    );
}
