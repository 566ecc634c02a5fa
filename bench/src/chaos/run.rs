//! One chaos run (`bench/chaos`, and its short version in the test suite):
//! one HA database (primary, two replicas, monitor) on a 5-host netns fleet
//! under a steady write load from the clients' namespace; each round injects
//! a seeded fault, holds it, heals, and waits for the database to settle
//! (else the round is stuck). The history (every acknowledged write with the
//! address that acknowledged it, rounds, promotions, the final table) is
//! written to `out` and judged by [`checker`].

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet::localfleet::{ha_settled, wait_ha_settled, Fleet};
use pgfleet_core::api::DatabaseView;
use pgfleet_core::NodeRole;

use super::checker::{self, History, Promotion, Report, Round};
use super::inject::{self, Cast};
use super::kinds::Kind;
use super::plan::plan;
use super::writer::{ms_since, Target, Writers};
use crate::{cli, DB, PRIMARY_NAME};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    /// Seed of the fault plan (default: from the clock; printed).
    pub seed: Option<u64>,
    /// Fault kinds to deal rounds from.
    pub faults: Vec<Kind>,
    /// How long a fault is held: uniform in MIN..=MAX.
    pub hold: (Duration, Duration),
    /// A round not settled this long after the heal is stuck.
    pub settle_secs: u64,
    /// Concurrent writers (each its own connection).
    pub writers: u32,
    /// Where the history and report go (default target/chaos/seed-<seed>).
    pub out: Option<PathBuf>,
}

fn cast_of(view: &DatabaseView) -> anyhow::Result<Cast> {
    let primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .context("no primary")?;
    let monitor = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Monitor)
        .context("no monitor")?;
    Ok(Cast {
        primary_host: primary.host.clone(),
        primary_address: primary.address.clone(),
        monitor_host: monitor.host.clone(),
        standby_hosts: view
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Replica)
            .map(|n| n.host.clone())
            .collect(),
    })
}

/// Polls until settled or `timeout`; returns the primary's name.
async fn settle(fleet: &Fleet, timeout: Duration) -> Option<String> {
    let client = fleet.client();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(view) = client.database(DB, false).await {
            if let Some(primary) = ha_settled(&view) {
                return Some(primary);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// When a write sent after `after_ms` was acknowledged, polled until `deadline`.
async fn writers_resume(writers: &Writers, after_ms: f64, deadline: Instant) -> Option<f64> {
    loop {
        if let Some(at) = writers.first_ack_sent_after(after_ms) {
            return Some(at);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ids in the final table of the current primary (retried for 60 s).
async fn final_table(fleet: &Fleet) -> Option<HashSet<i64>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = tokio::task::block_in_place(|| fleet.cli(&["db", "uri", DB, "--resolved"]));
        let uri = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() {
            if let Ok((db, conn)) = tokio_postgres::connect(&uri, fleet.pg_tls()).await {
                tokio::spawn(conn);
                if let Ok(rows) = db.query("SELECT id FROM acked", &[]).await {
                    return Some(rows.iter().map(|r| r.get(0)).collect());
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(args: Options) -> anyhow::Result<Report> {
    if let Some(reason) = Fleet::netns_unavailable() {
        anyhow::bail!("bench/chaos needs network namespaces: {reason}");
    }
    // Disk throttles a run that died left behind.
    super::io_stall::clean_leftovers();
    let requested = args.faults.clone();
    let mut unavailable = Vec::new();
    let mut runnable = Vec::new();
    for kind in requested {
        match inject::unavailable(kind) {
            Some(reason) => {
                println!("{kind}: unavailable here: {reason}");
                unavailable.push((kind, reason));
            }
            None => runnable.push(kind),
        }
    }
    anyhow::ensure!(!runnable.is_empty(), "no runnable fault kind");
    let seed = args
        .seed
        .unwrap_or_else(|| pgfleet_core::time::now_ms() as u64 % 1_000_000);
    let rounds = plan(seed, args.rounds, &runnable, args.hold);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/chaos/seed-{seed}")));
    std::fs::create_dir_all(&out)?;
    println!(
        "chaos: seed {seed}, {} rounds, hold {:?}..{:?}, history in {}",
        args.rounds,
        args.hold.0,
        args.hold.1,
        out.display()
    );

    let mut fleet = Fleet::up_netns(5);
    cli(&fleet, &["db", "create", DB]);
    cli(&fleet, &["replica", "create", DB, "--name", "replica-1"]);
    cli(&fleet, &["replica", "create", DB, "--name", "replica-2"]);
    wait_ha_settled(&fleet, DB, Duration::from_secs(120)).await;
    let client = fleet.client();
    let view = client.database(DB, false).await?;
    let first_cast = cast_of(&view)?;
    let initial_primary: Ipv4Addr = first_cast.primary_address.parse()?;
    let uri = cli(&fleet, &["db", "uri", DB]).trim().to_string();
    {
        let setup_uri = uri.replace(PRIMARY_NAME, &first_cast.primary_address);
        let (setup, conn) = tokio_postgres::connect(&setup_uri, fleet.pg_tls()).await?;
        tokio::spawn(conn);
        setup
            .batch_execute(
                "CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz DEFAULT now());
                 CREATE TABLE chaos_load (at timestamptz);",
            )
            .await?;
    }
    let origin = Instant::now();
    let wall_origin_ms = pgfleet_core::time::now_ms();
    // Clients resolve through every DNS server the database lists (the
    // control plane's and every agent's), as a resolver configured with
    // them would: a dead control plane does not hide a failover.
    let mut dns: Vec<std::net::SocketAddr> = view
        .dns_servers
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    if dns.is_empty() {
        dns.push(fleet.dns);
    }
    let target = Target {
        dns,
        primary_name: PRIMARY_NAME.into(),
        uri: uri.clone(),
        tls: fleet.pg_tls(),
    };
    let writers = Writers::start(&fleet, target, args.writers, origin);
    pgfleet::localfleet::eventually(Duration::from_secs(30), "the writers", || async {
        (writers.count() > 20).then_some(())
    })
    .await;

    let mut addresses: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    let mut history_rounds: Vec<Round> = Vec::new();
    for planned in &rounds {
        let view = client.database(DB, false).await?;
        for node in &view.nodes {
            if let Ok(address) = node.address.parse() {
                addresses.insert(node.name.clone(), address);
            }
        }
        let cast = cast_of(&view)?;
        let primary_before = view.primary.clone().unwrap_or_default();
        let primary_uri = uri.replace(PRIMARY_NAME, &cast.primary_address);
        let acks_before = writers.count();
        let fault_ms = ms_since(origin);
        let (injected, said) =
            match inject::inject(&fleet, planned.kind, &cast, planned.pick, &primary_uri) {
                Ok(done) => done,
                Err(error) => {
                    println!(
                        "round {}: injecting {} failed: {error:#}",
                        planned.round, planned.kind
                    );
                    continue;
                }
            };
        let injected_ms = ms_since(origin);
        println!(
            "[{:8.2}] round {}/{} {} (hold {:.1} s): {said}",
            fault_ms / 1000.0,
            planned.round,
            rounds.len(),
            planned.kind,
            planned.hold.as_secs_f64()
        );
        tokio::time::sleep(planned.hold).await;
        let said = inject::heal(&fleet, injected).unwrap_or_else(|e| format!("HEAL FAILED: {e:#}"));
        let healed_ms = ms_since(origin);
        println!("[{:8.2}]   healed: {said}", healed_ms / 1000.0);
        let settle_deadline = Instant::now() + Duration::from_secs(args.settle_secs);
        let mut primary_after = settle(&fleet, Duration::from_secs(args.settle_secs)).await;
        let mut settled_ms = primary_after.as_ref().map(|_| ms_since(origin));
        if let Some(at) = settled_ms {
            // Settled includes the clients writing again: a round whose
            // writers have not reconnected would leak into the next one.
            match writers_resume(&writers, at, settle_deadline).await {
                Some(resumed) => {
                    println!(
                        "[{:8.2}]   writes resumed {:.2} s after the database settled",
                        resumed / 1000.0,
                        (resumed - at) / 1000.0
                    );
                    settled_ms = Some(resumed);
                }
                None => {
                    println!("  writes did not resume within the settle deadline");
                    settled_ms = None;
                    primary_after = None;
                }
            }
        }
        let acked = writers.count() - acks_before;
        match &settled_ms {
            Some(at) => println!(
                "[{:8.2}]   settled {:.2} s after the heal; primary {primary_before} → {}; {acked} writes acknowledged this round",
                at / 1000.0,
                (at - healed_ms) / 1000.0,
                primary_after.as_deref().unwrap_or("?")
            ),
            None => {
                let view = client.database(DB, false).await;
                println!(
                    "[{:8.2}]   STUCK: not settled {} s after the heal; view: {}",
                    ms_since(origin) / 1000.0,
                    args.settle_secs,
                    match &view {
                        Ok(v) => serde_json::to_string(v)?,
                        Err(e) => format!("unreadable: {e:#}"),
                    }
                );
            }
        }
        history_rounds.push(Round {
            round: planned.round,
            kind: planned.kind,
            fault_ms,
            injected_ms,
            healed_ms,
            settled_ms,
            primary_before,
            primary_after: primary_after.clone(),
        });
        if primary_after.is_none() {
            // Give it more time before the next round; abort if it never settles.
            primary_after = settle(&fleet, Duration::from_secs(180)).await;
            if primary_after.is_none() {
                println!("the database never settled: the remaining rounds are not run");
                break;
            }
        }
    }

    let acks = writers.stop().await?;
    let present = final_table(&fleet).await;
    let view = client.database(DB, false).await?;
    for node in &view.nodes {
        if let Ok(address) = node.address.parse() {
            addresses.insert(node.name.clone(), address);
        }
    }
    let mut promotions = Vec::new();
    for event in client.events(DB).await? {
        let Some(node) = event["new_primary"].as_str() else {
            continue;
        };
        let Some(address) = addresses.get(node).copied() else {
            println!("promotion of unknown node {node}: {event}");
            continue;
        };
        let at_ms = match event["promoted_at_ms"].as_i64() {
            Some(at) => (at - wall_origin_ms) as f64,
            None => {
                // Applied from the monitor's heartbeat (its push was lost,
                // e.g. the control plane was down): no promotion time. It
                // happened after the fault of the round it was recorded
                // in, and the new primary acknowledged nothing before its
                // promotion, so that fault's time places its reign right.
                let recorded =
                    (event["at_ms"].as_i64().unwrap_or(i64::MAX) - wall_origin_ms) as f64;
                let fault = history_rounds
                    .iter()
                    .rfind(|r| r.injected_ms <= recorded)
                    .map_or(0.0, |r| r.injected_ms);
                println!(
                    "promotion of {node} without a promotion time (recorded {:.2} s): placed at the round's fault, {:.2} s",
                    recorded / 1000.0,
                    fault / 1000.0
                );
                fault
            }
        };
        promotions.push(Promotion {
            at_ms,
            node: node.into(),
            address,
        });
    }
    promotions.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let history = History {
        initial_primary: Some(initial_primary),
        acks,
        rounds: history_rounds,
        promotions,
        present,
        unavailable,
    };
    write_history(&out, &history)?;
    std::fs::write(
        out.join("final-table.json"),
        serde_json::to_string(&serde_json::json!({
            "initial_primary": initial_primary,
            "present_ids": history.present.as_ref().map(|p| p.len()),
            "unavailable": history.unavailable.iter().map(|(k, why)| format!("{k}: {why}")).collect::<Vec<_>>(),
        }))?,
    )?;
    let report = checker::check(&history);
    let text = checker::render(&report);
    std::fs::write(out.join("report.txt"), &text)?;
    print!("{text}");
    if report.failed() || report.total(|k| k.false_failovers) > 0 {
        fleet.keep = true;
        println!("fleet kept for inspection in {}", fleet.dir().display());
    } else {
        fleet.stop();
    }
    Ok(report)
}

fn write_history(out: &std::path::Path, history: &History) -> anyhow::Result<()> {
    use std::io::Write;
    let mut acks = std::io::BufWriter::new(std::fs::File::create(out.join("acks.jsonl"))?);
    for ack in &history.acks {
        serde_json::to_writer(&mut acks, ack)?;
        acks.write_all(b"\n")?;
    }
    acks.flush()?;
    std::fs::write(
        out.join("rounds.json"),
        serde_json::to_string_pretty(&history.rounds)?,
    )?;
    std::fs::write(
        out.join("promotions.json"),
        serde_json::to_string_pretty(&history.promotions)?,
    )?;
    Ok(())
}
