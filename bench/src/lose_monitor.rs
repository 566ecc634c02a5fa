//! `bench/failover --lose monitor` and `--lose monitor-and-primary`: kill
//! the monitor's host (and the primary's) under write load on a 5-host
//! fleet (primary, two replicas, monitor, one spare), N rounds. Measures
//! the time until a new monitor is in charge with HA complete again (from
//! the kill, and after the replacement threshold: host timeout +
//! `--monitor-replace-after-secs`), or, with the primary lost too, until
//! writes resume on the new primary; and lost acknowledged writes. Killed
//! hosts are started again after each round (the old monitor's host is
//! then the spare of the next round).

use std::time::{Duration, Instant};

use pgfleet::localfleet::{eventually, resolve};
use pgfleet_core::NodeRole;

use crate::{cli, lost_writes, median, wait_complete, Writer, DB, PRIMARY_NAME};

/// Host timeout of a `pgfleet up` control plane.
const HOST_TIMEOUT_S: f64 = 2.0;

pub async fn run(rounds: usize, with_primary: bool, replace_after_secs: u64) -> anyhow::Result<()> {
    let threshold = replace_after_secs.to_string();
    let mut fleet = crate::ha_fleet_with(5, &["--monitor-replace-after-secs", &threshold]).await;
    // PGFLEET_KEEP=1 keeps the fleet's folder (logs) for inspection.
    fleet.keep = std::env::var_os("PGFLEET_KEEP").is_some();
    let client = fleet.client();
    let writer = Writer::start(&fleet, DB).await;
    eventually(Duration::from_secs(10), "the writer", || async {
        (writer.count() > 10).then_some(())
    })
    .await;
    let lose = if with_primary {
        "monitor-and-primary"
    } else {
        "monitor"
    };
    let (mut in_charge, mut after_threshold, mut resumed) = (vec![], vec![], vec![]);
    for round in 1..=rounds {
        let view = client.database(DB, false).await?;
        let role = |r: NodeRole| view.nodes.iter().find(|n| n.role == r).cloned();
        let monitor = role(NodeRole::Monitor).expect("monitor");
        let primary = role(NodeRole::Primary).expect("primary");
        let old_address: std::net::Ipv4Addr = primary.address.parse()?;
        let t0 = Instant::now();
        cli(&fleet, &["host", "kill", &monitor.host]);
        if with_primary {
            cli(&fleet, &["host", "kill", &primary.host]);
            let new_address = eventually(Duration::from_secs(120), "DNS to switch", || async {
                let answer = resolve(fleet.dns, PRIMARY_NAME).await;
                answer.first().copied().filter(|a| *a != old_address)
            })
            .await;
            let first = eventually(
                Duration::from_secs(60),
                "a write on the new primary",
                || async { writer.first_ack_from(new_address, t0) },
            )
            .await;
            resumed.push((first - t0).as_secs_f64());
        }
        eventually(
            Duration::from_secs(180),
            "a new monitor in charge, HA complete",
            || async {
                let view = client.database(DB, false).await.ok()?;
                let current = view.nodes.iter().find(|n| n.role == NodeRole::Monitor)?;
                // Without the primary lost: HA complete and settled again.
                // With it: the new monitor ready and running (the old
                // primary is down until its host is started below).
                let ready = current.host != monitor.host
                    && current.status == pgfleet_core::NodeStatus::Online
                    && view.ha_status == pgfleet_core::HaStatus::Complete;
                let settled = with_primary || pgfleet::localfleet::ha_settled(&view).is_some();
                (ready && settled).then_some(())
            },
        )
        .await;
        let total = t0.elapsed().as_secs_f64();
        let tasks = client.tasks().await?;
        let replacements: Vec<String> = tasks
            .iter()
            .filter(|t| t.kind == pgfleet_core::TaskKind::ReplaceMonitor)
            .filter(|t| t.params["old_host"] == serde_json::json!(monitor.host))
            .map(|t| format!("{:?} {}", t.state, t.error.clone().unwrap_or_default()))
            .collect();
        println!("round {round}: replacement tasks {replacements:?}");
        let after = total - HOST_TIMEOUT_S - replace_after_secs as f64;
        println!(
            "round {round} (lose {lose}: {}{}): in_charge_s {total:.2} after_threshold_s {after:.2}{}",
            monitor.host,
            if with_primary { format!(" + {}", primary.host) } else { String::new() },
            resumed.last().map(|r| format!(" writes_resumed_s {r:.2}")).unwrap_or_default(),
        );
        in_charge.push(total);
        after_threshold.push(after);
        cli(&fleet, &["host", "start", &monitor.host]);
        if with_primary {
            cli(&fleet, &["host", "start", &primary.host]);
        }
        wait_complete(&fleet).await;
    }
    let acks = writer.stop().await;
    let lost = lost_writes(&fleet, &acks).await;
    println!(
        "rounds: {rounds} (lose {lose}, threshold {replace_after_secs}s), acknowledged writes: {}",
        acks.len()
    );
    println!("in_charge_s_median: {:.2}", median(&mut in_charge));
    println!(
        "after_threshold_s_median: {:.2}",
        median(&mut after_threshold)
    );
    if with_primary {
        println!("writes_resumed_s_median: {:.2}", median(&mut resumed));
    }
    println!("lost_acked_writes: {}", lost.len());
    if !lost.is_empty() {
        anyhow::bail!("acknowledged writes were lost");
    }
    Ok(())
}
