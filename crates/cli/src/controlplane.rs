//! The local fleet's control plane process (`pgfleet up`): its record in
//! `DATA_DIR/up.json` (pid, arguments, working directory, API and DNS
//! addresses), and `pgfleet server kill` / `pgfleet server start`, which
//! SIGKILL it by that pid and start it again with the same arguments on the
//! same store. The agents, separate processes, keep running meanwhile; the
//! restarted `up` finds them (and, with `--netns`, keeps their network).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub const FILE: &str = "up.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpRecord {
    pub pid: i32,
    /// `pgfleet up`'s arguments (without the program), and where it ran.
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The API's URL and the DNS server's address, as served.
    pub api: String,
    pub dns: std::net::SocketAddr,
    pub netns: bool,
}

pub fn load(data_dir: &Path) -> Option<UpRecord> {
    let text = std::fs::read_to_string(data_dir.join(FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Called by `pgfleet up` once its API and DNS listen.
pub fn record(
    data_dir: &Path,
    api: &str,
    dns: std::net::SocketAddr,
    netns: bool,
) -> anyhow::Result<()> {
    let record = UpRecord {
        pid: std::process::id() as i32,
        args: std::env::args().skip(1).collect(),
        cwd: std::env::current_dir()?,
        api: api.to_string(),
        dns,
        netns,
    };
    let temporary = data_dir.join("up.json.tmp");
    // 0600: the arguments may hold a `--store` URL with its password.
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(&temporary);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?
        .write_all(serde_json::to_string_pretty(&record)?.as_bytes())?;
    std::fs::rename(&temporary, data_dir.join(FILE)).context("recording the control plane")
}

/// The pid of this data dir's running `pgfleet up`, if any.
pub fn running_pid(data_dir: &Path) -> Option<i32> {
    let record = load(data_dir)?;
    if !crate::fleet::alive(record.pid) {
        return None;
    }
    // A recycled pid belongs to some other program: check it is `pgfleet up`.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", record.pid)).ok()?;
    let is_up = cmdline.split(|b| *b == 0).any(|arg| arg == b"up");
    is_up.then_some(record.pid)
}

pub fn ensure_not_running(data_dir: &Path) -> anyhow::Result<()> {
    if let Some(pid) = running_pid(data_dir) {
        anyhow::bail!(
            "a pgfleet up (pid {pid}) already runs for {}",
            data_dir.display()
        );
    }
    Ok(())
}

/// SIGKILL the control plane; returns what was done, for printing.
pub fn kill_server(data_dir: &Path) -> anyhow::Result<String> {
    let pid = running_pid(data_dir).with_context(|| {
        format!(
            "no running control plane (pgfleet up) recorded in {}",
            data_dir.join(FILE).display()
        )
    })?;
    kill(Pid::from_raw(pid), Signal::SIGKILL).with_context(|| format!("SIGKILL pid {pid}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::fleet::alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(format!(
        "control plane killed (pgfleet up pid {pid}, SIGKILL); hosts keep running; \
         `pgfleet server start` resumes it on the same store"
    ))
}

/// Starts `pgfleet up` again with its recorded arguments, detached, logging
/// to `DATA_DIR/up.log`; waits until it serves. Returns what was done.
pub fn start_server(data_dir: &Path) -> anyhow::Result<String> {
    ensure_not_running(data_dir)?;
    let record = load(data_dir).with_context(|| {
        format!(
            "no control plane was recorded in {}: start the fleet with `pgfleet up`",
            data_dir.display()
        )
    })?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("up.log"))?;
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(&record.args)
        .current_dir(&record.cwd)
        // The recorded listen address, unless the arguments name one.
        .env("PGFLEET_API", &record.api)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting pgfleet up")?;
    let pid = child.id() as i32;
    // Detached: it outlives this CLI process.
    std::mem::forget(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(current) = load(data_dir).filter(|r| r.pid == pid) {
            return Ok(format!(
                "control plane started (pgfleet up pid {pid}), API {} DNS {}; log in {}",
                current.api,
                current.dns,
                data_dir.join("up.log").display()
            ));
        }
        anyhow::ensure!(
            crate::fleet::alive(pid),
            "pgfleet up exited during start; see {}",
            data_dir.join("up.log").display()
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "pgfleet up (pid {pid}) did not serve within 60 s; see {}",
            data_dir.join("up.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
