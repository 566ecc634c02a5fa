//! PostgreSQL processes: initdb, pg_basebackup, pg_rewind, start (a child of
//! the agent, in its own process group), stop, and finding a server that is
//! already running from its `postmaster.pid`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgfleet_core::protocol::instance_key;

use super::bin::PgBin;
use super::user::PgUser;

/// Files of one instance: `<host dir>/pg/<db>.<node>/{data,postgres.log}`
/// (names are DNS labels, so the dot is unambiguous). Node names are unique
/// only within a database (every HA database may have a `pg-replica-1`), so
/// the folder is named by both. Instances made before carry the node name
/// alone: such a folder is used where its settings name this instance's port
/// (ports are unique per host), never renamed under a running server.
#[derive(Debug, Clone)]
pub struct InstancePaths {
    pub root: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    pub socket_dir: PathBuf,
}

impl InstancePaths {
    pub fn new(host_dir: &Path, db: &str, node: &str, address: &str, port: u16) -> InstancePaths {
        let scoped = host_dir.join("pg").join(instance_key(db, node));
        let legacy = host_dir.join("pg").join(node);
        let root = if !scoped.exists() && legacy_owned_by(&legacy, port) {
            legacy
        } else {
            scoped
        };
        InstancePaths {
            data: root.join("data"),
            log: root.join("postgres.log"),
            // Short and unique per address:port (socket paths are limited to 107 bytes).
            socket_dir: PathBuf::from(format!("/tmp/pgfleet-s-{address}-{port}")),
            root,
        }
    }

    /// Written once creation finished; its absence means half-made.
    pub fn ready_marker(&self) -> PathBuf {
        self.root.join("ready")
    }
}

/// Whether a folder of the older `pg/<node>` layout holds the instance that
/// listens on `port` (its settings file says so).
fn legacy_owned_by(legacy: &Path, port: u16) -> bool {
    std::fs::read_to_string(legacy.join("data").join("pgfleet.conf"))
        .is_ok_and(|conf| conf.lines().any(|l| l.trim() == format!("port = '{port}'")))
}

pub(super) async fn run_tool(
    mut command: tokio::process::Command,
    what: &str,
) -> anyhow::Result<()> {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("{what}: cannot start: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        anyhow::bail!("{what} failed ({}): {last}", output.status);
    }
    Ok(())
}

/// Creates the instance root and socket directory, owned by the PG user.
pub fn prepare_dirs(paths: &InstancePaths, user: &PgUser) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&paths.root)?;
    std::fs::set_permissions(&paths.root, std::fs::Permissions::from_mode(0o700))?;
    user.own(&paths.root)?;
    // The socket directory has a predictable name under /tmp: one that
    // someone else made first (or a link) is refused, never used.
    match std::fs::symlink_metadata(&paths.socket_dir) {
        Ok(meta) => check_socket_dir(&paths.socket_dir, &meta, user)?,
        Err(_) => {
            std::fs::create_dir(&paths.socket_dir)?;
            user.own(&paths.socket_dir)?;
        }
    }
    std::fs::set_permissions(&paths.socket_dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn check_socket_dir(dir: &Path, meta: &std::fs::Metadata, user: &PgUser) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let ours = user.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
    if meta.file_type().is_symlink() || !meta.is_dir() || meta.uid() != ours {
        anyhow::bail!(
            "the socket directory {} exists and is not this agent's (owner uid {}, a link or not a directory): remove it",
            dir.display(),
            meta.uid()
        );
    }
    Ok(())
}

/// Removes the socket directory of a stopped server.
pub fn remove_socket_dir(paths: &InstancePaths) {
    let _ = std::fs::remove_dir_all(&paths.socket_dir);
}

/// What every cluster pgfleet makes has (the template too): the `pgfleet`
/// superuser, data checksums, UTF-8, the C.UTF-8 locale; synced once after.
pub(super) const INITDB_ARGS: [&str; 8] = [
    "-U",
    "pgfleet",
    "-k",
    "-E",
    "UTF8",
    "--locale=C.UTF-8",
    "--no-sync",
    "--no-instructions",
];

pub async fn initdb(
    bin: &PgBin,
    user: &PgUser,
    paths: &InstancePaths,
    superuser_password: &str,
) -> anyhow::Result<()> {
    prepare_dirs(paths, user)?;
    let pwfile = paths.root.join("initdb.pw");
    pgfleet_tls::write_private(&pwfile, superuser_password)?;
    user.own(&pwfile)?;
    let mut command = user.command(&bin.tool("initdb"));
    command
        .arg("-D")
        .arg(&paths.data)
        .args(INITDB_ARGS)
        .args(["-A", "scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()));
    let result = run_tool(command, "initdb").await;
    let _ = std::fs::remove_file(&pwfile);
    result?;
    sync_filesystem(&paths.data);
    Ok(())
}

/// initdb ran with --no-sync; one syncfs makes its files durable at once.
pub(super) fn sync_filesystem(path: &Path) {
    if let Ok(dir) = std::fs::File::open(path) {
        let _ = nix::unistd::syncfs(&dir);
    }
}

/// Clones `data` from the upstream with a fast checkpoint into its slot.
pub async fn basebackup(
    bin: &PgBin,
    user: &PgUser,
    paths: &InstancePaths,
    conninfo: &str,
    slot: &str,
    password: &str,
) -> anyhow::Result<()> {
    prepare_dirs(paths, user)?;
    if paths.data.exists() {
        std::fs::remove_dir_all(&paths.data)?;
    }
    let mut command = user.command(&bin.tool("pg_basebackup"));
    command
        .arg("-D")
        .arg(&paths.data)
        .args([
            "-d",
            conninfo,
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
            "-S",
            slot,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5");
    run_tool(command, "pg_basebackup").await?;
    sync_filesystem(&paths.data);
    Ok(())
}

/// Rewinds `data` (stopped) onto the new primary's timeline.
pub async fn rewind(
    bin: &PgBin,
    user: &PgUser,
    paths: &InstancePaths,
    source_conninfo: &str,
    password: &str,
) -> anyhow::Result<()> {
    let mut command = user.command(&bin.tool("pg_rewind"));
    command
        .arg("-D")
        .arg(&paths.data)
        .arg(format!("--source-server={source_conninfo}"))
        .arg("--no-sync")
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5");
    run_tool(command, "pg_rewind").await?;
    sync_filesystem(&paths.data);
    Ok(())
}

/// The postmaster pid from `postmaster.pid`, if that process is alive.
pub fn running_pid(paths: &InstancePaths) -> Option<i32> {
    let text = std::fs::read_to_string(paths.data.join("postmaster.pid")).ok()?;
    let pid = parse_postmaster_pid(&text)?;
    (!gone(pid)).then_some(pid)
}

/// The pid on the first line of a `postmaster.pid` file, if it can be a postmaster
/// the agent may signal. The file belongs to the postgres user: `0`, `1` or a
/// negative number (a single-user backend writes `-pid`) would make `kill` reach the
/// agent's own process group, init, or every process, so they are refused.
pub fn parse_postmaster_pid(text: &str) -> Option<i32> {
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    (pid > 1).then_some(pid)
}

/// Starts `postgres -D data` as a child of the agent in its own process group.
pub fn start(
    bin: &PgBin,
    user: &PgUser,
    paths: &InstancePaths,
) -> anyhow::Result<tokio::process::Child> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&paths.log)?;
    // Logs of older versions were 0644.
    log.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    user.own(&paths.log)?;
    let mut command = user.command(&bin.tool("postgres"));
    command
        .arg("-D")
        .arg(&paths.data)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting postgres: {e}"))?;
    Ok(child)
}

/// Immediate shutdown (SIGQUIT): no shutdown checkpoint is written.
pub async fn stop_immediate(paths: &InstancePaths) {
    let Some(pid) = running_pid(paths) else {
        return;
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
    if !wait_gone(pid, Duration::from_secs(5)).await {
        let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        wait_gone(pid, Duration::from_secs(3)).await;
    }
}

/// Fast shutdown (SIGINT); escalates to SIGQUIT then SIGKILL of the group.
pub async fn stop(paths: &InstancePaths, timeout: Duration) {
    let Some(pid) = running_pid(paths) else {
        return;
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    if wait_gone(pid, timeout).await {
        return;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
    if wait_gone(pid, Duration::from_secs(3)).await {
        return;
    }
    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(3)).await;
}

/// Exited (an unreaped child of the agent counts as exited).
fn gone(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return true;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        == Some("Z")
}

async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths_in(dir: &Path) -> InstancePaths {
        let mut paths = InstancePaths::new(dir, "db", "n1", "127.0.0.9", 5432);
        paths.socket_dir = dir.join("socket");
        paths
    }

    #[test]
    fn a_socket_directory_someone_else_made_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths_in(dir.path());
        let user = PgUser {
            uid: None,
            gid: None,
        };
        // A link planted where the socket directory goes.
        std::os::unix::fs::symlink(dir.path(), &paths.socket_dir).unwrap();
        let error = prepare_dirs(&paths, &user).unwrap_err().to_string();
        assert!(error.contains("is not this agent's"), "{error}");
        std::fs::remove_file(&paths.socket_dir).unwrap();
        // A directory of another user (only root can make one here).
        if nix::unistd::geteuid().is_root() {
            std::fs::create_dir(&paths.socket_dir).unwrap();
            std::os::unix::fs::chown(&paths.socket_dir, Some(65534), Some(65534)).unwrap();
            let error = prepare_dirs(&paths, &user).unwrap_err().to_string();
            assert!(error.contains("owner uid 65534"), "{error}");
            std::fs::remove_dir(&paths.socket_dir).unwrap();
        }
        // Its own is made private, and removed when the server stops.
        prepare_dirs(&paths, &user).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&paths.socket_dir).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
        remove_socket_dir(&paths);
        assert!(!paths.socket_dir.exists());
    }
}
