//! `bench/switchover`: N planned switchovers back and forth under a writer
//! that writes every ~20 ms through the DNS name; prints the longest gap
//! between two acknowledged writes per round, the median, and lost writes.

use std::time::{Duration, Instant};

use clap::Parser;
use pgfleet::localfleet::eventually;
use pgfleet_bench::{ha_fleet, lost_writes, max, median, wait_complete, Writer, DB};
use pgfleet_core::NodeRole;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fleet = ha_fleet().await;
    let client = fleet.client();
    let writer = Writer::start(&fleet, DB).await;
    eventually(Duration::from_secs(10), "the writer", || async {
        (writer.count() > 10).then_some(())
    })
    .await;
    let mut gaps = Vec::new();
    for round in 1..=args.rounds {
        let view = client.database(DB, false).await?;
        let target = view
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Replica)
            .map(|n| n.name.clone())
            .min()
            .expect("replica");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        pgfleet_bench::cli(&fleet, &["replica", "promote", DB, &target]);
        let took = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let acks = writer.acks.lock().expect("acks").clone();
        let window: Vec<Instant> = acks
            .iter()
            .map(|a| a.at)
            .filter(|at| *at + Duration::from_secs(1) >= started)
            .collect();
        let gap = window
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .fold(0.0, f64::max);
        println!("round {round}: promote {target} took_s {took:.2} write_gap_s {gap:.3}");
        gaps.push(gap);
        wait_complete(&fleet).await;
    }
    let acks = writer.stop().await;
    let lost = lost_writes(&fleet, &acks).await;
    println!("write_gap_s_median: {:.3}", median(&mut gaps.clone()));
    println!("write_gap_s_max: {:.3}", max(&gaps));
    println!("lost_acked_writes: {}", lost.len());
    if !lost.is_empty() {
        // An error, not process::exit: the fleet is stopped on the way out.
        anyhow::bail!("acknowledged writes were lost");
    }
    Ok(())
}
