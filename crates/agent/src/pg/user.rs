//! The OS user PostgreSQL runs as: the agent's own user, or `postgres` when
//! the agent runs as root (PostgreSQL refuses to run as root).

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

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

    /// Makes `path` owned by the PostgreSQL user (no-op when not root).
    pub fn own(&self, path: &Path) -> anyhow::Result<()> {
        if let (Some(uid), Some(gid)) = (self.uid, self.gid) {
            nix::unistd::chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
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
