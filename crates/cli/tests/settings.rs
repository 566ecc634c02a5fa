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
