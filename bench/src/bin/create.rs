//! `bench/create`: time from `db create` to an online database, and from
//! `replica create` to a streaming replica, median of N runs.

use std::time::Instant;

use clap::Parser;
use pgfleet::localfleet::Fleet;
use pgfleet_bench::{max, median};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fleet = Fleet::up(4);
    let (mut creates, mut replicas) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let name = format!("bench-create-{run}");
        let started = Instant::now();
        pgfleet_bench::cli(&fleet, &["db", "create", &name]);
        let create = started.elapsed().as_secs_f64();
        let started = Instant::now();
        pgfleet_bench::cli(&fleet, &["replica", "create", &name, "--name", "r1"]);
        let replica = started.elapsed().as_secs_f64();
        println!("run {run}: db_create_s {create:.2} first_replica_s {replica:.2}");
        creates.push(create);
        replicas.push(replica);
        pgfleet_bench::cli(&fleet, &["db", "delete", &name]);
    }
    println!("db_create_s_median: {:.2}", median(&mut creates.clone()));
    println!("db_create_s_max: {:.2}", max(&creates));
    println!(
        "first_replica_s_median: {:.2}",
        median(&mut replicas.clone())
    );
    println!("first_replica_s_max: {:.2}", max(&replicas));
    Ok(())
}
