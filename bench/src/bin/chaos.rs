//! `bench/chaos`: the Jepsen-style fault run (`pgfleet_bench::chaos::run`).
//! Exits non-zero on a lost write, a split-brain acknowledgement or a stuck
//! round.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pgfleet_bench::chaos::kinds;
use pgfleet_bench::chaos::run::{run, Options};

#[derive(Parser)]
struct Args {
    /// Rounds (default: one per fault kind).
    #[arg(long, default_value_t = kinds::Kind::ALL.len())]
    rounds: usize,
    /// Seed of the fault plan (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Comma-separated fault kinds, or `all`.
    #[arg(long, default_value = "all")]
    faults: String,
    /// How long a fault is held, in seconds: uniform in MIN..=MAX.
    #[arg(long, default_value = "3..20", value_parser = parse_range)]
    hold: (Duration, Duration),
    /// A round not settled this long after the heal is stuck.
    #[arg(long, default_value_t = 60)]
    settle_secs: u64,
    /// Concurrent writers (each its own connection).
    #[arg(long, default_value_t = 2)]
    writers: u32,
    /// Where the history and report go (default target/chaos/seed-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_range(text: &str) -> Result<(Duration, Duration), String> {
    let (low, high) = text
        .split_once("..")
        .ok_or("expected MIN..MAX seconds, e.g. 3..20")?;
    let low: f64 = low.trim().parse().map_err(|e| format!("{low}: {e}"))?;
    let high: f64 = high.trim().parse().map_err(|e| format!("{high}: {e}"))?;
    if !(0.0..=3600.0).contains(&low) || high < low || high > 3600.0 {
        return Err(format!("{text}: need 0 ≤ MIN ≤ MAX ≤ 3600"));
    }
    Ok((Duration::from_secs_f64(low), Duration::from_secs_f64(high)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let faults = kinds::parse_list(&args.faults).map_err(anyhow::Error::msg)?;
    let report = run(Options {
        rounds: args.rounds,
        seed: args.seed,
        faults,
        hold: args.hold,
        settle_secs: args.settle_secs,
        writers: args.writers,
        out: args.out,
    })
    .await?;
    // An error, not process::exit: the fleet was stopped on the way.
    anyhow::ensure!(!report.failed(), "chaos: the HA promises did not hold");
    Ok(())
}
