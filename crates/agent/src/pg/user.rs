//! The OS user PostgreSQL runs as: the agent's own user, or, when the agent
//! runs as root (PostgreSQL refuses to run as root), a system user of each
//! database's own (`pgf-<db>`), so that one database's server cannot read
//! another's files (data, keys, password files) on the same host. The
//! shared `postgres` user is the fallback where users cannot be made.

use std::path::Path;

use nix::unistd::{Uid, User};

#[derive(Debug, Clone, Copy)]
pub struct PgUser {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl PgUser {
    pub fn detect() -> anyhow::Result<PgUser> {
        if !Uid::effective().is_root() {
            return Ok(PgUser {
                uid: None,
                gid: None,
            });
        }
        let user = User::from_name("postgres")?
            .ok_or_else(|| anyhow::anyhow!("running as root needs an OS user 'postgres' to run PostgreSQL (apt-get install postgresql creates it)"))?;
        Ok(PgUser {
            uid: Some(user.uid.as_raw()),
            gid: Some(user.gid.as_raw()),
        })
    }

    /// The user the servers of database `db` run as: its own system user
    /// when the agent runs as root (made on first use), else this one.
    pub fn for_database(&self, db: &str) -> PgUser {
        if self.uid.is_none() {
            return *self;
        }
        let name = os_user_name(db);
        match ensure_system_user(&name) {
            Ok(user) => user,
            Err(error) => {
                tracing::warn!(db, user = %name, error = %format!("{error:#}"), "cannot make the database's own OS user; its servers run as the shared postgres user");
                *self
            }
        }
    }

    /// Makes everything under `root` owned by this user (not following
    /// links); for nodes made under another user by an older version.
    pub fn own_tree(&self, root: &Path) -> anyhow::Result<()> {
        let (Some(uid), Some(gid)) = (self.uid, self.gid) else {
            return Ok(());
        };
        let mut pending = vec![root.to_path_buf()];
        while let Some(path) = pending.pop() {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .map_err(|e| anyhow::anyhow!("chown {}: {e}", path.display()))?;
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    pending.push(entry?.path());
                }
            }
        }
        Ok(())
    }

    /// Whether `path` is owned by this user (always true when not root).
    pub fn owns(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match self.uid {
            None => true,
            Some(uid) => std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == uid),
        }
    }

    /// Makes `path` owned by the PostgreSQL user (no-op when not root); a
    /// link is changed itself, never its target.
    pub fn own(&self, path: &Path) -> anyhow::Result<()> {
        if let (Some(uid), Some(gid)) = (self.uid, self.gid) {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                .map_err(|e| anyhow::anyhow!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// A command that runs as the PostgreSQL user in its own process group,
    /// with nothing of the agent's environment.
    pub fn command(&self, program: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        if let (Some(uid), Some(gid)) = (self.uid, self.gid) {
            command.uid(uid).gid(gid);
        }
        command.process_group(0);
        // A clean environment: the agent's (join token, root's variables)
        // is none of PostgreSQL's business.
        command.env_clear();
        command.env("PATH", "/usr/bin:/bin");
        command.env("LC_ALL", "C.UTF-8");
        command
    }

    /// Checks that the PostgreSQL user can reach `dir` (every parent must be
    /// searchable by it), with an error that says what to do.
    pub fn check_reachable(&self, dir: &Path) -> anyhow::Result<()> {
        if self.uid.is_none() {
            return Ok(());
        }
        use std::os::unix::fs::PermissionsExt;
        let mut current = Some(dir);
        while let Some(path) = current {
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o001 == 0 && path != dir {
                    anyhow::bail!(
                        "the 'postgres' user cannot reach {}: {} is not searchable by others; choose a data dir outside it (e.g. under /var/lib or /tmp) or chmod o+x {}",
                        dir.display(),
                        path.display(),
                        path.display()
                    );
                }
            }
            current = path.parent();
        }
        Ok(())
    }
}

/// `pgf-<db>`, or for long names `pgf-<first 19 characters>-<8 hex of a
/// hash>`: user names are at most 32 characters.
pub fn os_user_name(db: &str) -> String {
    if db.len() <= 28 {
        return format!("pgf-{db}");
    }
    // FNV-1a: stable across builds, which the name must be.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in db.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("pgf-{}-{hash:08x}", &db[..19])
}

/// The system user `name`, made with `useradd` if it does not exist yet
/// (no home, no shell, its own group). Another agent may make it at the
/// same moment, or hold the password file's lock: both are retried.
fn ensure_system_user(name: &str) -> anyhow::Result<PgUser> {
    let mut last_error = String::new();
    for attempt in 0..20u64 {
        if let Some(user) = User::from_name(name)? {
            return Ok(PgUser {
                uid: Some(user.uid.as_raw()),
                gid: Some(user.gid.as_raw()),
            });
        }
        let output = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                "--comment",
                "pgfleet database server",
                name,
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .map_err(|e| anyhow::anyhow!("useradd: {e}"))?;
        if output.status.success() {
            continue;
        }
        last_error = String::from_utf8_lossy(&output.stderr).trim().to_string();
        std::thread::sleep(std::time::Duration::from_millis(20 + attempt * 20));
    }
    anyhow::bail!("useradd {name} failed: {last_error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_user_names_fit_and_differ() {
        assert_eq!(os_user_name("pg-dev-db-1"), "pgf-pg-dev-db-1");
        let long = "a-very-long-database-name-that-goes-on-and-on";
        let other = "a-very-long-database-name-that-goes-on-and-off";
        assert!(os_user_name(long).len() <= 32);
        assert_ne!(os_user_name(long), os_user_name(other));
        assert_eq!(os_user_name(long), os_user_name(long));
        assert!(os_user_name(&"x".repeat(63)).len() <= 32);
    }
}
