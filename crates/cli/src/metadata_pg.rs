//! A PostgreSQL server for the control plane's metadata (`--store
//! postgres://…`) in tests and benchmarks: initdb in a new directory under
//! /tmp, Unix socket only, the `pgfleet` role with a random password
//! (scram-sha-256). Stopped and removed on drop.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use pgfleet_agent::pg::bin::PgBin;
use pgfleet_agent::pg::user::PgUser;

pub struct MetadataPostgres {
    dir: PathBuf,
    bin: PgBin,
    user: PgUser,
    /// `postgres://pgfleet:…@localhost/postgres?host=<socket dir>`
    pub url: String,
}

fn counter() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

impl MetadataPostgres {
    pub fn start() -> anyhow::Result<MetadataPostgres> {
        let bin = PgBin::find(None)?;
        let user = PgUser::detect()?;
        // Short: the socket path must fit in 107 bytes.
        let dir = PathBuf::from(format!(
            "/tmp/pgfleet-meta-{}-{}",
            std::process::id(),
            counter()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        user.own(&dir)?;
        let password = pgfleet_core::secrets::random_token(24);
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, &password)?;
        user.own(&pwfile)?;
        let server = MetadataPostgres {
            url: format!(
                "postgres://pgfleet:{password}@localhost/postgres?host={}",
                dir.display()
            ),
            dir,
            bin,
            user,
        };
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "pgfleet".as_ref(),
                "-A".as_ref(),
                "scram-sha-256".as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
            ],
        )?;
        std::fs::remove_file(&pwfile)?;
        let options = format!("-c listen_addresses='' -k {}", server.dir.display());
        server.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                server.dir.join("postgres.log").as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        )?;
        Ok(server)
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let mut command = Command::new(self.bin.tool(tool));
        command.args(args).current_dir(&self.dir);
        if let (Some(uid), Some(gid)) = (self.user.uid, self.user.gid) {
            command.uid(uid).gid(gid);
        }
        let output = command
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !output.status.success() {
            anyhow::bail!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for MetadataPostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
