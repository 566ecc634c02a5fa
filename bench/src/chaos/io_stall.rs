//! The io-stall-primary fault: the primary host's PostgreSQL servers (each
//! postmaster and its children; backends forked later inherit it) are put
//! in a blkio cgroup (v1) whose throttle lets [`WRITE_IOPS`] writes and
//! [`READ_IOPS`] reads a second through to the disk holding their data: a
//! commit's WAL flush waits for the disk, as on a failing or saturated
//! device. The processes run on; a slow disk is not a dead host, and must
//! not be failed over.
//!
//! Healing moves every process back to the root cgroup and removes the
//! group. A group left by a run that died (its name carries the run's pid)
//! is emptied and removed by the next run.

use std::path::{Path, PathBuf};

use anyhow::Context;

const ROOT: &str = "/sys/fs/cgroup/blkio";
const PREFIX: &str = "pgfleet-io-";

/// Writes a second the stalled disk lets through (each commit waits ≥ 0.5 s).
pub const WRITE_IOPS: u32 = 2;
/// Reads a second the stalled disk lets through.
pub const READ_IOPS: u32 = 20;

/// Why the fault cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let probe = Path::new(ROOT).join("blkio.throttle.write_iops_device");
    if !probe.exists() {
        return Some(format!(
            "the blkio cgroup (v1) with throttling is not mounted at {ROOT}"
        ));
    }
    let test = Path::new(ROOT).join(format!("{PREFIX}probe-{}", std::process::id()));
    match std::fs::create_dir(&test) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&test);
            None
        }
        Err(error) => Some(format!("cannot make a blkio cgroup in {ROOT}: {error}")),
    }
}

/// Empties and removes the groups of runs that are gone.
pub fn clean_leftovers() {
    let Ok(entries) = std::fs::read_dir(ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        if owner.is_some_and(pgfleet::fleet::alive) {
            continue;
        }
        let _ = release(&entry.path());
    }
}

/// A stalled disk for some processes; healed on [`IoStall::heal`] or drop.
pub struct IoStall {
    group: PathBuf,
    healed: bool,
}

impl IoStall {
    /// Throttles the disk I/O of `postmasters` and their children, reading
    /// the disk from `data_dir`. Returns the stall and a line saying so.
    pub fn start(data_dir: &Path, postmasters: &[i32]) -> anyhow::Result<(IoStall, String)> {
        anyhow::ensure!(!postmasters.is_empty(), "no PostgreSQL server runs there");
        let (major, minor) = disk_of(data_dir)?;
        let group =
            Path::new(ROOT).join(format!("{PREFIX}{}-{}", std::process::id(), postmasters[0]));
        std::fs::create_dir_all(&group).with_context(|| format!("making {}", group.display()))?;
        let stall = IoStall {
            group,
            healed: false,
        };
        for (file, iops) in [
            ("blkio.throttle.write_iops_device", WRITE_IOPS),
            ("blkio.throttle.read_iops_device", READ_IOPS),
        ] {
            std::fs::write(stall.group.join(file), format!("{major}:{minor} {iops}"))
                .with_context(|| format!("setting {file} for {major}:{minor}"))?;
        }
        let mut moved = 0;
        for pid in postmasters.iter().copied().flat_map(with_children) {
            // A process that ended meanwhile cannot be moved: nothing to stall.
            if std::fs::write(stall.group.join("cgroup.procs"), pid.to_string()).is_ok() {
                moved += 1;
            }
        }
        let said = format!(
            "disk {major}:{minor} throttled to {WRITE_IOPS} writes and {READ_IOPS} reads a second for {moved} PostgreSQL processes"
        );
        Ok((stall, said))
    }

    /// Lets the processes' I/O through again; says how many were released.
    pub fn heal(mut self) -> String {
        self.healed = true;
        match release(&self.group) {
            Ok(count) => format!("disk I/O of {count} processes unthrottled"),
            Err(error) => format!("unthrottling: {error:#}"),
        }
    }
}

impl Drop for IoStall {
    fn drop(&mut self) {
        if !self.healed {
            let _ = release(&self.group);
        }
    }
}

/// Moves every process of `group` back to the root group and removes it;
/// the postmaster may fork into the group meanwhile, so it repeats until
/// the group is empty.
fn release(group: &Path) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut last_error = None;
    for _ in 0..50 {
        let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter(|l| !l.trim().is_empty()) {
            if std::fs::write(Path::new(ROOT).join("cgroup.procs"), pid.trim()).is_ok() {
                count += 1;
            }
        }
        match std::fs::remove_dir(group) {
            Ok(()) => return Ok(count),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(count),
            Err(error) => last_error = Some(error),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(anyhow::anyhow!(
        "removing {}: {}",
        group.display(),
        last_error.map_or_else(String::new, |e| e.to_string())
    ))
}

/// `pid` and its direct children (a postmaster's servers are its children).
fn with_children(pid: i32) -> Vec<i32> {
    let mut pids = vec![pid];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if parent_of(&stat) == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

/// The parent pid in a `/proc/PID/stat` line (the field after the
/// parenthesised command name, which may itself hold spaces and parens).
fn parent_of(stat: &str) -> Option<i32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The whole disk (major, minor) that holds `path` (throttles apply to
/// disks, not partitions).
fn disk_of(path: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if sys.join("partition").exists() {
        let parent = std::fs::read_to_string(sys.join("..").join("dev"))
            .with_context(|| format!("the disk of partition {major}:{minor}"))?;
        let (major, minor) = parent
            .trim()
            .split_once(':')
            .context("a disk's dev file says MAJOR:MINOR")?;
        return Ok((major.parse()?, minor.parse()?));
    }
    anyhow::ensure!(
        sys.exists(),
        "{} is on {major}:{minor}, not a block device (a throttle needs one)",
        path.display()
    );
    Ok((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_command_with_spaces_and_parens() {
        assert_eq!(parent_of("42 (postgres) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("43 (a (b) c) R 9 1 1"), Some(9));
        assert_eq!(parent_of("garbage"), None);
    }
}
