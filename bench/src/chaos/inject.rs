//! Injecting and healing one round's fault on a netns fleet. Every fault
//! is printed with what was done; healing undoes exactly what was done.

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use pgfleet::faults::Slowness;
use pgfleet::localfleet::Fleet;

use super::kinds::Kind;

/// Who plays which part when a round starts.
#[derive(Debug, Clone)]
pub struct Cast {
    pub primary_host: String,
    /// The primary's address.
    pub primary_address: String,
    pub monitor_host: String,
    pub standby_hosts: Vec<String>,
}

/// What a round did, so that healing undoes it.
pub enum Injected {
    KilledHosts(Vec<String>),
    Frozen(String),
    /// Network faults recorded in the fleet's fault record.
    Network(String),
    ControlPlaneKilled {
        then_killed: Option<String>,
    },
    Saturation {
        spinning: Arc<AtomicBool>,
        spinners: Vec<std::thread::JoinHandle<()>>,
        pgbench: Option<Child>,
    },
    /// The primary host's PostgreSQL servers on a throttled disk.
    IoStall(super::io_stall::IoStall),
    /// The primary host's agent stopped and continued in a loop.
    AgentStalls {
        stalling: Arc<AtomicBool>,
        staller: std::thread::JoinHandle<u32>,
    },
}

/// How long the stall-primary-agent round stops the agent each time, and
/// how long it lets it run between two stops.
pub const AGENT_STALL: std::time::Duration = std::time::Duration::from_millis(1_500);
pub const AGENT_RUNS: std::time::Duration = std::time::Duration::from_millis(500);

/// The netem the slow-primary round asks for.
pub const SLOW: Slowness = Slowness {
    delay_ms: 200,
    jitter_ms: 50,
    loss_percent: 5.0,
};

/// Why `kind` cannot run on this machine, if it cannot.
pub fn unavailable(kind: Kind) -> Option<String> {
    match kind {
        Kind::SlowPrimary => pgfleet::faults::netem_available()
            .err()
            .map(|e| format!("{e:#}")),
        Kind::IoStallPrimary => super::io_stall::unavailable(),
        _ => None,
    }
}

fn cli(fleet: &Fleet, args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::task::block_in_place(|| fleet.cli(args));
    anyhow::ensure!(
        output.status.success(),
        "pgfleet {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `host start HOST`; a host already running (`server start` starts the
/// hosts of the fleet that are down) is said, not an error.
fn start_host(fleet: &Fleet, host: &str) -> anyhow::Result<String> {
    match cli(fleet, &["host", "start", host]) {
        Err(error) if format!("{error:#}").contains("already running") => Ok(format!(
            "host {host} already running (started by the control plane)"
        )),
        other => other,
    }
}

/// Injects `kind`; returns what was done (for healing) and a line saying so.
/// `pick` chooses the standby of a standby fault. `uri` is the database's
/// URI with the primary's address (for the pgbench load).
pub fn inject(
    fleet: &Fleet,
    kind: Kind,
    cast: &Cast,
    pick: u64,
    uri: &str,
) -> anyhow::Result<(Injected, String)> {
    let primary = cast.primary_host.as_str();
    Ok(match kind {
        Kind::KillPrimary => {
            let said = cli(fleet, &["host", "kill", primary])?;
            (Injected::KilledHosts(vec![primary.into()]), said)
        }
        Kind::KillMonitorHost => {
            let said = cli(fleet, &["host", "kill", &cast.monitor_host])?;
            (Injected::KilledHosts(vec![cast.monitor_host.clone()]), said)
        }
        Kind::FreezePrimary => {
            let said = cli(fleet, &["host", "freeze", primary])?;
            (Injected::Frozen(primary.into()), said)
        }
        Kind::IsolatePrimary => (Injected::Network(primary.into()), fleet.isolate(primary)?),
        Kind::CutPrimaryMonitor => (
            Injected::Network(primary.into()),
            fleet.cut(primary, &cast.monitor_host)?,
        ),
        Kind::CutPrimaryStandbys => {
            let mut said = Vec::new();
            for standby in &cast.standby_hosts {
                said.push(fleet.cut(primary, standby)?);
            }
            (Injected::Network(primary.into()), said.join("; "))
        }
        Kind::CutPrimaryClients => (
            Injected::Network(primary.into()),
            fleet.cut(primary, "clients")?,
        ),
        Kind::IsolateMonitor => (
            Injected::Network(cast.monitor_host.clone()),
            fleet.isolate(&cast.monitor_host)?,
        ),
        Kind::IsolateStandby => {
            anyhow::ensure!(!cast.standby_hosts.is_empty(), "no standby to isolate");
            let standby = &cast.standby_hosts[(pick % cast.standby_hosts.len() as u64) as usize];
            (Injected::Network(standby.clone()), fleet.isolate(standby)?)
        }
        Kind::SlowPrimary => (
            Injected::Network(primary.into()),
            fleet.slow(primary, SLOW)?,
        ),
        Kind::KillControlPlane => {
            let said = cli(fleet, &["server", "kill"])?;
            (Injected::ControlPlaneKilled { then_killed: None }, said)
        }
        Kind::KillControlPlaneThenPrimary => {
            let first = cli(fleet, &["server", "kill"])?;
            let then = cli(fleet, &["host", "kill", primary])?;
            (
                Injected::ControlPlaneKilled {
                    then_killed: Some(primary.into()),
                },
                format!("{first}; then {then}"),
            )
        }
        Kind::CpuSaturation => saturate(fleet, uri)?,
        Kind::StallPrimaryAgent => stall_agent(fleet, primary)?,
        Kind::IoStallPrimary => {
            let postmasters = pgfleet::fleet::postgres_pids(fleet.dir(), primary);
            let (stall, said) = super::io_stall::IoStall::start(
                &pgfleet::fleet::host_dir(fleet.dir(), primary),
                &postmasters,
            )?;
            (Injected::IoStall(stall), format!("{primary}: {said}"))
        }
    })
}

/// Stops the agent of `host` (SIGSTOP: its keeper, heartbeats and DNS
/// server pause; its PostgreSQL servers run on) for [`AGENT_STALL`], lets
/// it run for [`AGENT_RUNS`], and again, until healed.
fn stall_agent(fleet: &Fleet, host: &str) -> anyhow::Result<(Injected, String)> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = pgfleet::fleet::agent_pid(fleet.dir(), host)
        .with_context(|| format!("host {host} has no running agent"))?;
    let stalling = Arc::new(AtomicBool::new(true));
    let staller = {
        let stalling = stalling.clone();
        std::thread::spawn(move || {
            let mut stalls = 0;
            while stalling.load(Ordering::SeqCst) {
                if kill(Pid::from_raw(pid), Signal::SIGSTOP).is_err() {
                    break;
                }
                stalls += 1;
                std::thread::sleep(AGENT_STALL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                std::thread::sleep(AGENT_RUNS);
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            stalls
        })
    };
    Ok((
        Injected::AgentStalls { stalling, staller },
        format!(
            "agent of {host} (pid {pid}) stopped for {} ms every {} ms",
            AGENT_STALL.as_millis(),
            (AGENT_STALL + AGENT_RUNS).as_millis()
        ),
    ))
}

/// Busy loops on every core, and pgbench (8 clients) on the primary from
/// the clients' namespace.
fn saturate(fleet: &Fleet, uri: &str) -> anyhow::Result<(Injected, String)> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinning = Arc::new(AtomicBool::new(true));
    let spinners = (0..cores)
        .map(|_| {
            let spinning = spinning.clone();
            std::thread::spawn(move || {
                let mut x: u64 = 1;
                while spinning.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let separator = if uri.contains('?') { '&' } else { '?' };
    let conninfo = format!("{uri}{separator}sslmode=require");
    let script = fleet.dir().join("chaos-pgbench.sql");
    std::fs::write(
        &script,
        "SELECT count(*) FROM generate_series(1, 20000);\n\
         INSERT INTO chaos_load (at) VALUES (now());\n",
    )?;
    let pgbench = pgfleet::netns::command(fleet.clients_netns(), "pgbench")?
        .args(["-n", "-c", "8", "-j", "2", "-T", "3600", "-f"])
        .arg(&script)
        .arg(&conninfo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting pgbench")
        .ok();
    let said = format!(
        "{cores} busy loops; pgbench with 8 clients {}",
        if pgbench.is_some() {
            "started"
        } else {
            "NOT started (pgbench missing)"
        }
    );
    Ok((
        Injected::Saturation {
            spinning,
            spinners,
            pgbench,
        },
        said,
    ))
}

/// Undoes what `inject` did; returns a line saying so.
pub fn heal(fleet: &Fleet, injected: Injected) -> anyhow::Result<String> {
    Ok(match injected {
        Injected::KilledHosts(hosts) => {
            let mut said = Vec::new();
            for host in hosts {
                said.push(start_host(fleet, &host)?);
            }
            said.join("; ")
        }
        Injected::Frozen(host) => cli(fleet, &["host", "thaw", &host])?,
        Injected::Network(host) => fleet.heal(Some(&host))?,
        Injected::ControlPlaneKilled { then_killed } => {
            let mut said = vec![cli(fleet, &["server", "start"])?];
            if let Some(host) = then_killed {
                said.push(start_host(fleet, &host)?);
            }
            said.join("; ")
        }
        Injected::Saturation {
            spinning,
            spinners,
            pgbench,
        } => {
            spinning.store(false, Ordering::Relaxed);
            for spinner in spinners {
                let _ = spinner.join();
            }
            if let Some(mut child) = pgbench {
                let _ = child.kill();
                let _ = child.wait();
            }
            "busy loops and pgbench stopped".into()
        }
        Injected::IoStall(stall) => stall.heal(),
        Injected::AgentStalls { stalling, staller } => {
            stalling.store(false, Ordering::SeqCst);
            let stalls = staller.join().unwrap_or(0);
            format!("agent running again after {stalls} stalls")
        }
    })
}
