//! `pgfleet demo` tells the whole story and exits 0 only if every step held.

#[test]
fn demo_tells_the_story_and_every_step_holds() {
    let dir = std::env::temp_dir().join(format!("pgfleet-demo-test-{}", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgfleet"))
        .arg("demo")
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("every step held"), "{stdout}");
    assert!(
        stdout.contains("acknowledged writes lost                                            0"),
        "{stdout}"
    );
    assert!(!dir.exists(), "the demo cleans up after itself");
}
