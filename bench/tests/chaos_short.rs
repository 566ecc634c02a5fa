//! The short chaos run of the test suite: every fault kind that can run
//! here once, held 3–4 s, on a netns fleet under write load. Nothing
//! acknowledged may be lost, no split-brain acknowledgement, no stuck round,
//! no failover where the fault must not cause one. (The 50-round run is a
//! benchmark: `bench/chaos --rounds 50`.)

use std::time::Duration;

use pgfleet::localfleet::Fleet;
use pgfleet_bench::chaos::inject;
use pgfleet_bench::chaos::kinds::Kind;
use pgfleet_bench::chaos::run::{run, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_once_loses_nothing_and_never_splits_the_brain() {
    if let Some(reason) = Fleet::netns_unavailable() {
        eprintln!("SKIPPED the short chaos run: network namespaces are unavailable here: {reason}");
        return;
    }
    // Kinds that cannot run here (slow-primary without netem) are reported
    // by name in the report, not dropped silently.
    let runnable = Kind::ALL
        .iter()
        .filter(|kind| inject::unavailable(**kind).is_none())
        .count();
    let out = tempfile::tempdir().unwrap();
    let report = run(Options {
        rounds: runnable,
        seed: Some(7),
        faults: Kind::ALL.to_vec(),
        hold: (Duration::from_secs(3), Duration::from_secs(4)),
        settle_secs: 60,
        writers: 2,
        out: Some(out.path().to_path_buf()),
    })
    .await
    .expect("the chaos run");
    let text = pgfleet_bench::chaos::checker::render(&report);
    assert!(!report.failed(), "{text}");
    assert_eq!(report.total(|k| k.false_failovers), 0, "{text}");
    assert_eq!(report.total(|k| k.rounds), runnable, "{text}");
    assert_eq!(
        report.kinds.len(),
        runnable,
        "every runnable kind once: {text}"
    );
    assert!(report.acks > 100, "{text}");
}
