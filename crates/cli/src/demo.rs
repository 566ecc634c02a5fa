//! `pgfleet demo`: the product's story in one command, narrated with live
//! timings — a database, two replicas, a host that dies, the failover and
//! DNS switch, the old primary rejoining, a planned promote back, and a check
//! that every acknowledged row survived. Exits non-zero if any step fails.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgfleet_core::api::ReplicationStatus;
use pgfleet_core::{HaStatus, NodeRole, NodeStatus, TaskKind};

use crate::localfleet::{eventually, resolve, Fleet};
use crate::workload::{cli, lost_writes, Writer};

const DB: &str = "pg-dev-db-1";
const PRIMARY: &str = "primary.pg-dev-db-1.pgfleet.internal";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo fleet keeps its files (removed first). Under /tmp by
    /// default, so the `postgres` user can reach it even when run as root
    /// from a private home directory.
    #[arg(long, default_value = "/tmp/pgfleet-demo")]
    pub data_dir: PathBuf,
    /// Keep the fleet running after the story (Ctrl-C stops it).
    #[arg(long)]
    pub keep: bool,
}

struct Story {
    started: Instant,
    rows: Vec<(String, f64)>,
}

impl Story {
    fn say(&self, text: &str) {
        println!("[{:6.1}s] {text}", self.started.elapsed().as_secs_f64());
    }

    fn record(&mut self, step: &str, seconds: f64) {
        self.say(&format!("   ✓ {step} ({seconds:.2} s)"));
        self.rows.push((step.to_string(), seconds));
    }
}

async fn primary_of(fleet: &Fleet) -> pgfleet_core::api::NodeView {
    let view = fleet
        .client()
        .database(DB, false)
        .await
        .expect("database view");
    view.nodes
        .into_iter()
        .find(|n| n.role == NodeRole::Primary)
        .expect("a primary")
}

async fn wait_ha(fleet: &Fleet, status: HaStatus, active: usize) {
    let client = fleet.client();
    eventually(Duration::from_secs(120), "the HA status", || async {
        let view = client.database(DB, false).await.ok()?;
        let replicas = || view.nodes.iter().filter(|n| n.role == NodeRole::Replica);
        let streaming = replicas()
            .filter(|n| matches!(n.replication_status, Some(ReplicationStatus::Active)))
            .count();
        let settled = replicas().all(|n| n.ha_state.as_deref() == Some("secondary"));
        (view.ha_status == status && streaming >= active && settled).then_some(())
    })
    .await;
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.data_dir);
    std::fs::create_dir_all(&args.data_dir)?;
    let data_dir = args.data_dir.canonicalize()?;
    let mut story = Story {
        started: Instant::now(),
        rows: Vec::new(),
    };
    story.say("starting a local fleet: control plane + 4 hosts, each on its own loopback address");
    let t = Instant::now();
    let mut fleet = tokio::task::block_in_place(|| Fleet::up_in(data_dir.clone(), 4, &[]));
    fleet.keep = true;
    story.record("fleet up", t.elapsed().as_secs_f64());
    story.say(&format!(
        "   API {}  DNS {}  (data in {})",
        fleet.api,
        fleet.dns,
        data_dir.display()
    ));

    story.say(&format!("creating the standalone database {DB}"));
    let t = Instant::now();
    cli(&fleet, &["db", "create", DB]);
    story.record("db create → online", t.elapsed().as_secs_f64());
    let primary = primary_of(&fleet).await;
    let answer = resolve(fleet.dns, PRIMARY).await;
    story.say(&format!(
        "   {PRIMARY} → {answer:?} ({} on {})",
        primary.name, primary.host
    ));

    story.say("writing: a client inserts a row every 20 ms through the DNS name");
    let writer = Writer::start(&fleet, DB).await;
    eventually(Duration::from_secs(10), "the writer", || async {
        (writer.count() >= 20).then_some(())
    })
    .await;

    story.say("Create read replica pg-replica-1 (deploys the monitor on its own host)");
    let t = Instant::now();
    cli(&fleet, &["replica", "create", DB, "--name", "pg-replica-1"]);
    wait_ha(&fleet, HaStatus::Incomplete, 1).await;
    story.record(
        "HA status unconfigured → incomplete",
        t.elapsed().as_secs_f64(),
    );
    story.say("Create read replica pg-replica-2");
    let t = Instant::now();
    cli(&fleet, &["replica", "create", DB, "--name", "pg-replica-2"]);
    wait_ha(&fleet, HaStatus::Complete, 2).await;
    story.record(
        "HA status incomplete → complete, both replicas Active",
        t.elapsed().as_secs_f64(),
    );
    println!("{}", cli(&fleet, &["db", "show", DB]));

    let old = primary_of(&fleet).await;
    story.say(&format!(
        "pulling the plug on {} (primary {}): agent and PostgreSQL killed",
        old.host, old.name
    ));
    let t = Instant::now();
    cli(&fleet, &["host", "kill", &old.host]);
    let old_address: std::net::Ipv4Addr = old.address.parse()?;
    let new_address = eventually(
        Duration::from_secs(60),
        "DNS to follow the new primary",
        || async {
            resolve(fleet.dns, PRIMARY)
                .await
                .first()
                .copied()
                .filter(|a| *a != old_address)
        },
    )
    .await;
    story.record(
        &format!("failover: {PRIMARY} → {new_address}"),
        t.elapsed().as_secs_f64(),
    );
    let killed_at = t;
    let first = eventually(
        Duration::from_secs(60),
        "a write on the new primary",
        || async { writer.first_ack_from(new_address, killed_at) },
    )
    .await;
    story.record(
        "writes resumed on the new primary (RTO)",
        (first - killed_at).as_secs_f64(),
    );
    let tasks = fleet.client().tasks().await?;
    let promote = tasks
        .iter()
        .find(|t| t.kind == TaskKind::PromoteReplica)
        .ok_or_else(|| anyhow::anyhow!("no PromoteReplica task"))?;
    story.say(&format!(
        "   task {} PromoteReplica: {}",
        promote.id,
        promote.message.clone().unwrap_or_default()
    ));

    story.say(&format!("{} comes back", old.host));
    let t = Instant::now();
    cli(&fleet, &["host", "start", &old.host]);
    let client = fleet.client();
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
    story.record(
        &format!("{} rejoined as a replica (pg_rewind)", old.name),
        t.elapsed().as_secs_f64(),
    );
    wait_ha(&fleet, HaStatus::Complete, 2).await;

    story.say(&format!("Database Actions → Promote Replica {}", old.name));
    let t = Instant::now();
    let task = cli(&fleet, &["replica", "promote", DB, &old.name, "--no-wait"]);
    let task_id: i64 = task.trim().parse()?;
    let mut seen = vec![];
    loop {
        let view = client.database(DB, false).await?;
        let node = view
            .nodes
            .iter()
            .find(|n| n.name == old.name)
            .expect("node");
        let label = if node.role == NodeRole::Primary {
            "Primary".to_string()
        } else {
            format!("{:?}", node.status)
        };
        if seen.last() != Some(&label) {
            story.say(&format!("   {} is {label}", old.name));
            seen.push(label.clone());
        }
        let done = client.task(task_id).await?;
        if done.state.is_finished() && node.role == NodeRole::Primary {
            break;
        }
        if done.state == pgfleet_core::TaskState::Failed {
            anyhow::bail!("promote failed: {}", done.error.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    story.record(
        &format!("switchover back to {}", old.name),
        t.elapsed().as_secs_f64(),
    );
    wait_ha(&fleet, HaStatus::Complete, 2).await;

    let acks = writer.stop().await;
    let lost = lost_writes(&fleet, DB, &acks).await;
    story.say(&format!(
        "checking: {} acknowledged rows written, {} missing",
        acks.len(),
        lost.len()
    ));
    println!("\n{:<60} {:>8}", "step", "seconds");
    for (step, seconds) in &story.rows {
        println!("{step:<60} {seconds:>8.2}");
    }
    println!("{:<60} {:>8}", "acknowledged writes lost", lost.len());
    let view = client.database(DB, false).await?;
    let all_online = view.nodes.iter().all(|n| n.status == NodeStatus::Online);
    if !lost.is_empty() || !all_online {
        anyhow::bail!(
            "the story did not hold: lost {:?}, all nodes online: {all_online}",
            lost
        );
    }
    println!("\nevery step held.");
    if args.keep {
        println!(
            "the fleet keeps running (API {}); Ctrl-C stops it",
            fleet.api
        );
        crate::up::wait_for_stop_signal().await;
    }
    fleet.keep = false;
    let code = tokio::task::block_in_place(|| fleet.stop());
    if code != Some(0) {
        anyhow::bail!("the fleet did not stop cleanly ({code:?})");
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
