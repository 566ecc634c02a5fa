//! `bench/failover`: kill (or freeze) the primary's host under write load,
//! N rounds; prints detection, promotion, DNS switch, RTO (kill → first
//! acknowledged write on the new primary), rejoin, and lost acknowledged
//! writes.
//!
//! `--lose control-plane`: each round kills the control plane first, then
//! the primary's host; the writer and the DNS switch resolve through the
//! agents' DNS servers only; the control plane is started again after the
//! round's first write on the new primary.
//!
//! `--lose monitor` / `--lose monitor-and-primary`: see
//! `pgfleet_bench::lose_monitor`.

use std::time::{Duration, Instant};

use clap::Parser;
use pgfleet::localfleet::{eventually, resolve};
use pgfleet_bench::{ha_fleet, lost_writes, max, median, wait_complete, Writer, DB, PRIMARY_NAME};
use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::NodeRole;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// SIGSTOP the primary's host for `--freeze-secs`, then SIGCONT, instead of killing it.
    #[arg(long)]
    freeze: bool,
    #[arg(long, default_value_t = 15)]
    freeze_secs: u64,
    /// What to lose: the primary's host, the monitor's, or both at once;
    /// or the control plane, killed before the primary's host.
    #[arg(long, value_enum, default_value_t = Lose::Primary)]
    lose: Lose,
    /// `--monitor-replace-after-secs` of the fleet (monitor modes).
    #[arg(long, default_value_t = 10)]
    monitor_replace_after_secs: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lose {
    Primary,
    Monitor,
    MonitorAndPrimary,
    ControlPlane,
}

fn wall_ms() -> i64 {
    pgfleet_core::time::now_ms()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if matches!(args.lose, Lose::Monitor | Lose::MonitorAndPrimary) {
        let with_primary = args.lose == Lose::MonitorAndPrimary;
        return pgfleet_bench::lose_monitor::run(
            args.rounds,
            with_primary,
            args.monitor_replace_after_secs,
        )
        .await;
    }
    let lose_control_plane = args.lose == Lose::ControlPlane;
    let mut fleet = ha_fleet().await;
    let mut client = fleet.client();
    // Every agent answers DNS for the zone on its address, port 8053.
    let agents: Vec<std::net::SocketAddr> = (1..=fleet.hosts)
        .map(|i| format!("{}:8053", fleet.host_address(i)).parse())
        .collect::<Result<_, _>>()?;
    let writer = if lose_control_plane {
        Writer::start_resolving_through(&fleet, DB, agents.clone()).await
    } else {
        Writer::start(&fleet, DB).await
    };
    eventually(Duration::from_secs(10), "the writer", || async {
        (writer.count() > 10).then_some(())
    })
    .await;
    let (mut rtos, mut dns_switches, mut detections, mut promotions, mut rejoins) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut split_brain_acks = 0usize;
    let mode = match (args.freeze, lose_control_plane) {
        (true, _) => "freeze",
        (false, true) => "kill control plane, then primary host",
        (false, false) => "kill",
    };
    for round in 1..=args.rounds {
        let view = client.database(DB, false).await?;
        let old = view
            .nodes
            .iter()
            .find(|n| n.role == NodeRole::Primary)
            .expect("primary")
            .clone();
        let old_address: std::net::Ipv4Addr = old.address.parse()?;
        let events_before = client.events(DB).await?.len();
        // With the control plane lost, resolve through a surviving data
        // node's agent: it hears of the change only by the monitor's push.
        let resolver = if lose_control_plane {
            let survivor = view
                .nodes
                .iter()
                .find(|n| n.role == NodeRole::Replica)
                .expect("a replica");
            format!("{}:8053", survivor.address).parse()?
        } else {
            fleet.dns
        };
        if lose_control_plane {
            fleet.kill_server();
        }
        let kill_wall = wall_ms();
        let t0 = Instant::now();
        if args.freeze {
            pgfleet_bench::cli(&fleet, &["host", "freeze", &old.host]);
        } else {
            pgfleet_bench::cli(&fleet, &["host", "kill", &old.host]);
        }
        let new_address = eventually(Duration::from_secs(60), "DNS to switch", || async {
            let answer = resolve(resolver, PRIMARY_NAME).await;
            answer.first().copied().filter(|a| *a != old_address)
        })
        .await;
        let dns_switch = t0.elapsed().as_secs_f64();
        let first_write = eventually(
            Duration::from_secs(60),
            "a write on the new primary",
            || async { writer.first_ack_from(new_address, t0) },
        )
        .await;
        let rto = (first_write - t0).as_secs_f64();
        if lose_control_plane {
            // The old host first: the control plane's start waits for every host.
            pgfleet_bench::cli(&fleet, &["host", "start", &old.host]);
            fleet.start_server();
            client = fleet.client();
            eventually(
                Duration::from_secs(30),
                "the control plane to record the failover",
                || async {
                    let events = client.events(DB).await.ok()?;
                    (events.len() > events_before).then_some(())
                },
            )
            .await;
        }
        let events = client.events(DB).await?;
        let event = events.get(events_before).cloned().unwrap_or_default();
        let detection = event["detected_at_ms"]
            .as_i64()
            .map(|ms| (ms - kill_wall) as f64 / 1000.0);
        let promotion = event["promoted_at_ms"]
            .as_i64()
            .map(|ms| (ms - kill_wall) as f64 / 1000.0);
        let mut back = Instant::now();
        if args.freeze {
            tokio::time::sleep(Duration::from_secs(args.freeze_secs).saturating_sub(t0.elapsed()))
                .await;
            let thawed = Instant::now();
            back = thawed;
            pgfleet_bench::cli(&fleet, &["host", "thaw", &old.host]);
            // Give a woken old primary every chance to acknowledge a write it must not.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let acks = writer.acks.lock().expect("acks").clone();
            split_brain_acks += acks
                .iter()
                .filter(|a| {
                    a.server == old_address
                        && a.at > t0 + Duration::from_secs_f64(dns_switch)
                        && a.at >= thawed
                })
                .count();
        } else if !lose_control_plane {
            pgfleet_bench::cli(&fleet, &["host", "start", &old.host]);
        }
        eventually(
            Duration::from_secs(120),
            "the old primary to rejoin",
            || async {
                let view = client.database(DB, false).await.ok()?;
                let node = view.nodes.iter().find(|n| n.name == old.name)?;
                (node.role == NodeRole::Replica
                    && matches!(node.replication_status, Some(ReplicationStatus::Active)))
                .then_some(())
            },
        )
        .await;
        let rejoin = back.elapsed().as_secs_f64();
        wait_complete(&fleet).await;
        println!(
            "round {round} ({mode} {}): detection_s {} promotion_s {} dns_switch_s {dns_switch:.2} rto_s {rto:.2} rejoin_s {rejoin:.2}",
            old.host,
            detection.map(|d| format!("{d:.2}")).unwrap_or("-".into()),
            promotion.map(|p| format!("{p:.2}")).unwrap_or("-".into()),
        );
        rtos.push(rto);
        dns_switches.push(dns_switch);
        rejoins.push(rejoin);
        if let Some(d) = detection {
            detections.push(d);
        }
        if let Some(p) = promotion {
            promotions.push(p);
        }
    }
    let acks = writer.stop().await;
    let lost = lost_writes(&fleet, &acks).await;
    println!(
        "rounds: {} ({mode}), acknowledged writes: {}",
        args.rounds,
        acks.len()
    );
    println!("detection_s_median: {:.2}", median(&mut detections));
    println!("promotion_s_median: {:.2}", median(&mut promotions));
    println!("dns_switch_s_median: {:.2}", median(&mut dns_switches));
    println!("rto_s_median: {:.2}", median(&mut rtos.clone()));
    println!("rto_s_max: {:.2}", max(&rtos));
    println!("rejoin_s_median: {:.2}", median(&mut rejoins));
    println!("lost_acked_writes: {}", lost.len());
    if args.freeze {
        println!("acks_from_old_primary_after_failover: {split_brain_acks}");
    }
    if !lost.is_empty() || split_brain_acks > 0 {
        // An error, not process::exit: the fleet is stopped on the way out.
        anyhow::bail!("the HA promises did not hold");
    }
    Ok(())
}
