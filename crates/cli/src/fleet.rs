//! The local fleet on one machine: where each host keeps its files, how an
//! agent process is started (in its host's network namespace with
//! `--netns`), and the fault-injection kit (kill, freeze, thaw) that acts on
//! the PIDs recorded under `DATA_DIR/hosts/<host>/`. Network faults are in
//! `faults`.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How to (re)start one host's agent: kept in `hosts/<host>/agent.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentLaunch {
    pub name: String,
    pub address: String,
    pub failure_domain: String,
    pub server_url: String,
    pub agent_port: u16,
    pub failure_timeout_ms: u64,
    /// The host's network namespace (`pgfleet up --netns`), if any.
    #[serde(default)]
    pub netns: Option<String>,
}

pub fn host_dir(data_dir: &Path, host: &str) -> PathBuf {
    data_dir.join("hosts").join(host)
}

fn pid_file(data_dir: &Path, host: &str) -> PathBuf {
    host_dir(data_dir, host).join("agent.pid")
}

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // A zombie (exited, not yet reaped) counts as dead.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    state != Some("Z")
}

/// The running agent's pid, if any.
pub fn agent_pid(data_dir: &Path, host: &str) -> Option<i32> {
    read_pid(&pid_file(data_dir, host)).filter(|pid| alive(*pid))
}

/// Postmaster pids of every PostgreSQL server the host has.
pub fn postgres_pids(data_dir: &Path, host: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir(host_dir(data_dir, host).join("pg")) else {
        return pids;
    };
    for entry in entries.flatten() {
        if let Some(pid) = read_pid(&entry.path().join("data").join("postmaster.pid")) {
            if alive(pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

pub fn list_hosts(data_dir: &Path) -> Vec<String> {
    let mut hosts: Vec<String> = std::fs::read_dir(data_dir.join("hosts"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("agent.json").exists())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    hosts.sort();
    hosts
}

/// Starts the agent of `host` as its own process (own process group, so a
/// terminal's Ctrl-C reaches only `pgfleet up`, which stops it in order).
/// Whether the host's agent already holds a credential (joined before).
pub fn has_credential(data_dir: &Path, host: &str) -> bool {
    host_dir(data_dir, host).join("agent.credential").exists()
}

/// Starts the agent; `join_token` is needed only for a host without a credential.
pub fn start_agent(data_dir: &Path, host: &str, join_token: Option<&str>) -> anyhow::Result<i32> {
    if let Some(pid) = agent_pid(data_dir, host) {
        anyhow::bail!("host {host} is already running (agent pid {pid})");
    }
    let dir = host_dir(data_dir, host);
    let launch: AgentLaunch = serde_json::from_str(
        &std::fs::read_to_string(dir.join("agent.json"))
            .map_err(|_| anyhow::anyhow!("unknown host {host:?} in {}", data_dir.display()))?,
    )?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))?;
    let exe = std::env::current_exe()?;
    use std::os::unix::process::CommandExt;
    let mut command = match &launch.netns {
        // Its PostgreSQL servers, its children, inherit the namespace.
        Some(netns) => crate::netns::command(netns, exe)?,
        None => std::process::Command::new(exe),
    };
    let child = command
        .arg("agent")
        .args([
            "--name",
            &launch.name,
            "--address",
            &launch.address,
            "--failure-domain",
            &launch.failure_domain,
        ])
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--server",
            &launch.server_url,
            "--agent-port",
            &launch.agent_port.to_string(),
        ])
        .args([
            "--failure-timeout-ms",
            &launch.failure_timeout_ms.to_string(),
        ])
        .arg("--ca-file")
        .arg(data_dir.join("ca.crt"))
        .envs(join_token.map(|t| ("PGFLEET_JOIN_TOKEN", t)))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let pid = child.id() as i32;
    std::fs::write(pid_file(data_dir, host), format!("{pid}\n"))?;
    // The child is reaped by whoever is its parent; detach the handle.
    std::mem::forget(child);
    Ok(pid)
}

pub fn write_launch(data_dir: &Path, launch: &AgentLaunch) -> anyhow::Result<()> {
    let dir = host_dir(data_dir, &launch.name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("agent.json"),
        serde_json::to_string_pretty(launch)?,
    )?;
    Ok(())
}

/// The postmaster and every process it forked. PostgreSQL's children each
/// start their own session, so a process-group signal reaches only the
/// postmaster: the children are found by their parent pid.
fn postgres_tree(postmaster: i32) -> Vec<i32> {
    let mut pids = vec![postmaster];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the command name: state, ppid, ...
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILL the agent and every PostgreSQL process of the host (power loss).
pub fn kill_host(data_dir: &Path, host: &str) -> anyhow::Result<usize> {
    signal_all(data_dir, host, Signal::SIGKILL)
}

/// SIGSTOP (freeze) or SIGCONT (thaw) the agent and PostgreSQL processes.
pub fn signal_host(data_dir: &Path, host: &str, signal: Signal) -> usize {
    signal_all(data_dir, host, signal).unwrap_or(0)
}

/// Signals the agent first (so it sees no half-signalled host), then each
/// PostgreSQL server with all its processes. Returns how many processes.
fn signal_all(data_dir: &Path, host: &str, signal: Signal) -> anyhow::Result<usize> {
    let mut count = 0;
    if let Some(pid) = agent_pid(data_dir, host) {
        let _ = kill(Pid::from_raw(pid), signal);
        count += 1;
    }
    for postmaster in postgres_pids(data_dir, host) {
        for pid in postgres_tree(postmaster) {
            let _ = kill(Pid::from_raw(pid), signal);
            count += 1;
        }
    }
    Ok(count)
}

/// SIGTERM the agent (it stops its servers cleanly) and wait for it.
pub async fn stop_agent(data_dir: &Path, host: &str, timeout: std::time::Duration) {
    let Some(pid) = agent_pid(data_dir, host) else {
        return;
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + timeout;
    while alive(pid) && tokio::time::Instant::now() < deadline {
        reap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if alive(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    reap();
}

/// Reaps exited children (agents started by this process).
pub fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Whether any agent or PostgreSQL server of the fleet still runs.
pub fn processes_alive(data_dir: &Path) -> bool {
    list_hosts(data_dir).iter().any(|host| {
        agent_pid(data_dir, host).is_some() || !postgres_pids(data_dir, host).is_empty()
    })
}
