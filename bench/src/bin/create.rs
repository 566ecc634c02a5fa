//! `bench/create`: time from `db create` to an online database, from
//! `replica create` to a streaming replica, and from a standalone database
//! to HA Complete with two replicas (`replica create --count 2`, then every
//! replica Active and a caught-up secondary, as the UI shows it), median of
//! N runs.

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
    let (mut creates, mut replicas, mut completes) = (Vec::new(), Vec::new(), Vec::new());
    let client = fleet.client();
    for run in 1..=args.runs {
        let name = format!("bench-create-{run}");
        let started = Instant::now();
        pgfleet_bench::cli(&fleet, &["db", "create", &name]);
        let create = started.elapsed().as_secs_f64();
        let started = Instant::now();
        pgfleet_bench::cli(&fleet, &["replica", "create", &name, "--name", "r1"]);
        let replica = started.elapsed().as_secs_f64();
        pgfleet_bench::cli(&fleet, &["db", "delete", &name]);
        let name = format!("bench-ha-{run}");
        pgfleet_bench::cli(&fleet, &["db", "create", &name]);
        let started = Instant::now();
        pgfleet_bench::cli(&fleet, &["replica", "create", &name, "--count", "2"]);
        let deadline = started + std::time::Duration::from_secs(60);
        loop {
            let view = client.database(&name, false).await?;
            if pgfleet::localfleet::ha_settled(&view).is_some() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name}: not HA complete in 60 s: {}",
                serde_json::to_string_pretty(&view)?
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let complete = started.elapsed().as_secs_f64();
        pgfleet_bench::cli(&fleet, &["db", "delete", &name]);
        println!(
            "run {run}: db_create_s {create:.2} first_replica_s {replica:.2} ha_complete_s {complete:.2}"
        );
        creates.push(create);
        replicas.push(replica);
        completes.push(complete);
    }
    println!("db_create_s_median: {:.2}", median(&mut creates.clone()));
    println!("db_create_s_max: {:.2}", max(&creates));
    println!(
        "first_replica_s_median: {:.2}",
        median(&mut replicas.clone())
    );
    println!("first_replica_s_max: {:.2}", max(&replicas));
    println!(
        "ha_complete_s_median: {:.2}",
        median(&mut completes.clone())
    );
    println!("ha_complete_s_max: {:.2}", max(&completes));
    Ok(())
}
