//! pgBackRest for one node: the config file pgfleet writes in the node's
//! folder (`<node>/pgbackrest.conf`, 0600, owned by the database's OS
//! user; with its log, lock and spool folders in `<node>/pgbackrest/`), the
//! password file its connections use (`<node>/pgbackrest/pgpass`, 0600),
//! the archive settings of `pgfleet.conf`, and the commands the agent runs
//! as the database's OS user: `stanza-create`, `backup` (from a standby
//! with `--backup-standby`), `info --output=json`, `restore`. The
//! repository is `<location>/<stanza>`, a folder private to that user, or
//! `<path>/<stanza>` in an S3 bucket: then the config also holds the
//! bucket's access key (the file is 0600 in a 0700 folder, like the
//! password file) and the CA file the endpoint is checked with is
//! `<node>/pgbackrest/s3-ca.crt`.

use std::path::{Path, PathBuf};

use pgfleet_core::backup::{BackupSpec, PgLocation, RestoreSpec, RestoreTarget, S3RepoSpec};

use super::process::{run_tool, InstancePaths};
use super::user::PgUser;

/// Debian's package installs it here.
pub const PGBACKREST: &str = "/usr/bin/pgbackrest";

/// Files pgBackRest uses for one node.
pub struct BackrestPaths {
    pub config: PathBuf,
    pub dir: PathBuf,
    pub pgpass: PathBuf,
}

impl BackrestPaths {
    pub fn of(paths: &InstancePaths) -> BackrestPaths {
        let dir = paths.root.join("pgbackrest");
        BackrestPaths {
            config: paths.root.join("pgbackrest.conf"),
            pgpass: dir.join("pgpass"),
            dir,
        }
    }
}

/// `archive_command` of a node: push with this node's config file.
pub fn archive_command(paths: &InstancePaths, stanza: &str) -> String {
    format!(
        "{PGBACKREST} --config={} --stanza={stanza} archive-push %p",
        BackrestPaths::of(paths).config.display()
    )
}

/// The CA certificate an S3 endpoint is checked with.
fn s3_ca_file(dir: &Path) -> PathBuf {
    dir.join("s3-ca.crt")
}

fn global_section(
    text: &mut String,
    repo_path: &str,
    s3: Option<&S3RepoSpec>,
    dir: &Path,
    retention_full: Option<u32>,
) {
    text.push_str("[global]\n");
    text.push_str(&format!("repo1-path={repo_path}\n"));
    if let Some(s3) = s3 {
        repo_s3_lines(text, s3, dir);
    }
    if let Some(full) = retention_full {
        text.push_str(&format!("repo1-retention-full={full}\n"));
    }
    text.push_str(&format!("log-path={}\n", dir.join("log").display()));
    text.push_str(&format!("lock-path={}\n", dir.join("lock").display()));
    text.push_str(&format!("spool-path={}\n", dir.join("spool").display()));
    text.push_str("log-level-console=error\nlog-level-stderr=error\nlog-level-file=info\n");
    text.push_str("start-fast=y\ncompress-type=lz4\nprocess-max=2\n");
}

/// `repo1` in an S3 bucket, path-style addressing (works with any
/// S3-protocol server), the endpoint checked against the location's CA
/// when it has one.
fn repo_s3_lines(text: &mut String, s3: &S3RepoSpec, dir: &Path) {
    let location = &s3.location;
    let (host, port) = location
        .host_port()
        .unwrap_or_else(|| (location.endpoint.clone(), 443));
    text.push_str("repo1-type=s3\n");
    text.push_str(&format!("repo1-s3-endpoint={host}\n"));
    text.push_str(&format!("repo1-s3-port={port}\n"));
    text.push_str(&format!("repo1-s3-bucket={}\n", location.bucket));
    text.push_str(&format!("repo1-s3-region={}\n", location.region));
    text.push_str("repo1-s3-uri-style=path\n");
    if location.ca_pem.is_some() {
        text.push_str(&format!("repo1-s3-ca-file={}\n", s3_ca_file(dir).display()));
    }
    text.push_str(&format!("repo1-s3-key={}\n", s3.credentials.access_key_id));
    text.push_str(&format!(
        "repo1-s3-key-secret={}\n",
        s3.credentials.secret_access_key
    ));
}

/// Writes the S3 location's CA certificate where the config names it.
fn write_s3_ca(s3: Option<&S3RepoSpec>, dir: &Path, user: &PgUser) -> anyhow::Result<()> {
    let Some(pem) = s3.and_then(|s| s.location.ca_pem.as_ref()) else {
        return Ok(());
    };
    let path = s3_ca_file(dir);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str()) {
        super::conf::write_owned(&path, pem, user)?;
    }
    Ok(())
}

/// The config of a data node: repository, retention, this node as `pg1`.
pub fn render(spec: &BackupSpec, paths: &InstancePaths, port: u16) -> String {
    let dir = BackrestPaths::of(paths).dir;
    let mut text = String::from("# Written by the pgfleet agent; do not edit.\n");
    global_section(
        &mut text,
        &spec.repo_path,
        spec.s3.as_ref(),
        &dir,
        Some(spec.retention_full),
    );
    text.push_str(&format!("\n[{}]\n", spec.stanza));
    text.push_str(&format!("pg1-path={}\n", paths.data.display()));
    text.push_str(&format!("pg1-port={port}\n"));
    text.push_str(&format!("pg1-socket-path={}\n", paths.socket_dir.display()));
    text.push_str("pg1-user=pgfleet\n");
    text
}

/// Writes the node's config, password file and pgBackRest folders.
pub fn write(
    spec: &BackupSpec,
    paths: &InstancePaths,
    port: u16,
    superuser_password: &str,
    user: &PgUser,
) -> anyhow::Result<()> {
    let files = BackrestPaths::of(paths);
    make_private_dirs(&files.dir, user)?;
    write_s3_ca(spec.s3.as_ref(), &files.dir, user)?;
    let text = render(spec, paths, port);
    if std::fs::read_to_string(&files.config).ok().as_deref() != Some(text.as_str()) {
        super::conf::write_owned(&files.config, &text, user)?;
    }
    let pgpass = format!("*:*:*:pgfleet:{superuser_password}\n");
    if std::fs::read_to_string(&files.pgpass).ok().as_deref() != Some(pgpass.as_str()) {
        super::conf::write_owned(&files.pgpass, &pgpass, user)?;
    }
    Ok(())
}

fn make_private_dirs(dir: &Path, user: &PgUser) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for sub in [
        dir.to_path_buf(),
        dir.join("log"),
        dir.join("lock"),
        dir.join("spool"),
    ] {
        if !sub.exists() {
            std::fs::create_dir_all(&sub)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", sub.display()))?;
            std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700))?;
            user.own(&sub)?;
        }
    }
    Ok(())
}

/// Creates the stanza's repository folder (0700, the database's OS user)
/// when it is missing. An existing folder is left as it is; an S3
/// repository needs nothing (pgBackRest makes its objects).
pub fn ensure_repository(spec: &BackupSpec, user: &PgUser) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if spec.s3.is_some() {
        return Ok(());
    }
    let repo = Path::new(&spec.repo_path);
    if repo.exists() {
        return Ok(());
    }
    let location = repo.parent().unwrap_or(repo);
    if !location.is_dir() {
        anyhow::bail!(
            "the backup location {} is not reachable from this host (not a directory here)",
            location.display()
        );
    }
    std::fs::create_dir(repo)
        .map_err(|e| anyhow::anyhow!("creating the repository {}: {e}", repo.display()))?;
    std::fs::set_permissions(repo, std::fs::Permissions::from_mode(0o700))?;
    user.own(repo)
}

fn command(user: &PgUser, paths: &InstancePaths, stanza: &str) -> tokio::process::Command {
    let files = BackrestPaths::of(paths);
    let mut command = user.command(Path::new(PGBACKREST));
    command.env("PGPASSFILE", &files.pgpass);
    command.arg(format!("--config={}", files.config.display()));
    command.arg(format!("--stanza={stanza}"));
    command
}

pub async fn stanza_create(
    user: &PgUser,
    paths: &InstancePaths,
    stanza: &str,
) -> anyhow::Result<()> {
    let mut command = command(user, paths, stanza);
    command.arg("stanza-create");
    run_tool(command, "pgbackrest stanza-create").await
}

/// Pushes the complete WAL segments of the timelines before `timeline`
/// still in `pg_wal`, up to where each one forked (from the timeline's
/// history file; segments recycled past a fork hold no history).
/// pgBackRest accepts a segment it already holds unchanged.
pub async fn push_older_timelines(
    user: &PgUser,
    paths: &InstancePaths,
    stanza: &str,
    timeline: u32,
) -> anyhow::Result<()> {
    let wal = paths.data.join("pg_wal");
    let history = wal.join(format!("{timeline:08X}.history"));
    let Ok(history) = std::fs::read_to_string(&history) else {
        return Ok(());
    };
    let forks = fork_segments(&history);
    let mut segments: Vec<String> = std::fs::read_dir(&wal)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| before_fork(name, &forks))
        .collect();
    segments.sort();
    for segment in segments {
        let mut command = command(user, paths, stanza);
        command.arg("archive-push").arg(wal.join(&segment));
        run_tool(command, "pgbackrest archive-push").await?;
    }
    Ok(())
}

/// WAL segment size (initdb's default; pgfleet does not change it).
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Each parent timeline of a history file with the segment its switch
/// point is in (`1\t0/7000100\treason` → (1, 7)).
fn fork_segments(history: &str) -> Vec<(u32, u64)> {
    let mut forks = Vec::new();
    for line in history.lines() {
        let mut fields = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((high, low)) = lsn.split_once('/') else {
            continue;
        };
        let parsed = (
            tli.parse::<u32>(),
            u64::from_str_radix(high, 16),
            u64::from_str_radix(low, 16),
        );
        if let (Ok(tli), Ok(high), Ok(low)) = parsed {
            forks.push((tli, ((high << 32) | low) / SEGMENT_BYTES));
        }
    }
    forks
}

/// A complete segment's name (24 hex digits) on a parent timeline, before
/// the segment where that timeline forked.
fn before_fork(name: &str, forks: &[(u32, u64)]) -> bool {
    if name.len() != 24 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
        return false;
    }
    let (Ok(tli), Ok(log), Ok(seg)) = (
        u32::from_str_radix(&name[..8], 16),
        u64::from_str_radix(&name[8..16], 16),
        u64::from_str_radix(&name[16..24], 16),
    ) else {
        return false;
    };
    let segno = log * (0x1_0000_0000 / SEGMENT_BYTES) + seg;
    forks
        .iter()
        .any(|(parent, fork_segno)| *parent == tli && segno < *fork_segno)
}

/// A backup of type `kind`. With `primary`, this node is a standby: its
/// files are copied (`--backup-standby`), the primary only starts and
/// stops the backup.
pub async fn backup(
    user: &PgUser,
    paths: &InstancePaths,
    port: u16,
    stanza: &str,
    kind: &str,
    primary: Option<&PgLocation>,
) -> anyhow::Result<()> {
    let mut command = command(user, paths, stanza);
    command.arg(format!("--type={kind}"));
    if let Some(primary) = primary {
        command.arg(format!("--pg1-path={}", primary.data_dir));
        command.arg(format!("--pg1-port={}", primary.port));
        command.arg(format!("--pg1-socket-path={}", primary.socket_dir));
        command.arg(format!("--pg2-path={}", paths.data.display()));
        command.arg(format!("--pg2-port={port}"));
        command.arg(format!("--pg2-socket-path={}", paths.socket_dir.display()));
        command.arg("--pg2-user=pgfleet");
        command.arg("--backup-standby");
    }
    command.arg("backup");
    run_tool(command, "pgbackrest backup").await
}

/// `pgbackrest info --output=json` of the stanza.
pub async fn info(
    user: &PgUser,
    paths: &InstancePaths,
    stanza: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut command = command(user, paths, stanza);
    command.args(["--output=json", "info"]);
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("pgbackrest info: cannot start: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!(
            "pgbackrest info failed ({}): {}",
            output.status,
            stderr.trim()
        );
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| anyhow::anyhow!("pgbackrest info printed no JSON: {e}"))
}

/// The label of the newest backup in an `info` answer.
pub fn newest_label(info: &serde_json::Value) -> Option<String> {
    let stanza = info.as_array()?.first()?;
    let backups = stanza["backup"].as_array()?;
    backups.last()?["label"].as_str().map(str::to_string)
}

/// Restores `restore` into the node's (empty) data directory, with the
/// recovery target and a `restore_command` that reads the same repository.
pub async fn restore(
    user: &PgUser,
    paths: &InstancePaths,
    restore: &RestoreSpec,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let files = BackrestPaths::of(paths);
    make_private_dirs(&files.dir, user)?;
    write_s3_ca(restore.s3.as_ref(), &files.dir, user)?;
    let restore_config = files.dir.join("restore.conf");
    let mut text = String::from("# Written by the pgfleet agent for a restore.\n");
    global_section(
        &mut text,
        &restore.repo_path,
        restore.s3.as_ref(),
        &files.dir,
        None,
    );
    text.push_str(&format!(
        "\n[{}]\npg1-path={}\n",
        restore.stanza,
        paths.data.display()
    ));
    super::conf::write_owned(&restore_config, &text, user)?;
    std::fs::create_dir_all(&paths.data)?;
    std::fs::set_permissions(&paths.data, std::fs::Permissions::from_mode(0o700))?;
    user.own(&paths.data)?;
    let mut command = user.command(Path::new(PGBACKREST));
    command.arg(format!("--config={}", restore_config.display()));
    command.arg(format!("--stanza={}", restore.stanza));
    match &restore.target {
        RestoreTarget::Latest => {}
        RestoreTarget::Time { time } => {
            command.args(["--type=time", "--target-action=promote"]);
            command.arg(format!("--target={time}"));
        }
        RestoreTarget::Backup { label } => {
            command.args(["--type=immediate", "--target-action=promote"]);
            command.arg(format!("--set={label}"));
        }
    }
    command.arg(format!(
        "--recovery-option=restore_command={PGBACKREST} --config={} --stanza={} archive-get %f \"%p\"",
        restore_config.display(),
        restore.stanza
    ));
    command.arg("restore");
    run_tool(command, "pgbackrest restore").await
}

/// Below this much free space a failing archive's reason names it.
pub const LOW_SPACE_BYTES: u64 = 64 * 1024 * 1024;

/// Free bytes (for unprivileged users) of the filesystem holding `path`.
pub fn free_bytes(path: &str) -> Option<u64> {
    let stats = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stats.blocks_available() * stats.fragment_size())
}

/// The last archive failure pgBackRest wrote to the server's log.
pub fn last_archive_error(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(64 * 1024)))
        .ok()?;
    let mut tail = String::new();
    file.read_to_string(&mut tail).ok()?;
    let lines: Vec<&str> = tail.lines().collect();
    let index = lines.iter().rposition(|l| l.contains("ERROR: ["))?;
    let first = lines[index];
    let mut message = first[first.find("ERROR: [")?..].to_string();
    // pgBackRest puts each repository's cause on indented lines below.
    for detail in lines[index + 1..].iter().take_while(|l| l.starts_with(' ')) {
        message.push(' ');
        message.push_str(detail.trim());
    }
    Some(message.chars().take(400).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_config_names_the_repository_and_this_node_as_pg1() {
        let paths = InstancePaths::new(Path::new("/h"), "db-a", "db-a", "127.0.0.2", 5433);
        let spec = BackupSpec {
            stanza: "db-a-1".into(),
            repo_path: "/backups/db-a-1".into(),
            s3: None,
            retention_full: 3,
            archive_timeout_secs: 60,
            run: None,
        };
        let text = render(&spec, &paths, 5433);
        assert!(text.contains("repo1-path=/backups/db-a-1\n"));
        assert!(text.contains("repo1-retention-full=3\n"));
        assert!(text.contains("[db-a-1]\npg1-path=/h/pg/db-a.db-a/data\npg1-port=5433\n"));
        assert!(text.contains("lock-path=/h/pg/db-a.db-a/pgbackrest/lock\n"));
        assert!(!text.contains("pgfleet:"), "no password in the config");
        assert_eq!(
            archive_command(&paths, "db-a-1"),
            "/usr/bin/pgbackrest --config=/h/pg/db-a.db-a/pgbackrest.conf --stanza=db-a-1 archive-push %p"
        );
    }

    #[test]
    fn an_s3_repository_is_repo1_with_its_bucket_key_and_ca_file() {
        use pgfleet_core::backup::{S3Credentials, S3Location};
        let paths = InstancePaths::new(Path::new("/h"), "db-a", "db-a", "127.0.0.2", 5433);
        let spec = BackupSpec {
            stanza: "db-a-1".into(),
            repo_path: "/fleet/db-a-1".into(),
            s3: Some(S3RepoSpec {
                location: S3Location {
                    endpoint: "https://127.0.0.9:9443".into(),
                    bucket: "backups".into(),
                    region: "us-east-1".into(),
                    ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
                },
                credentials: S3Credentials {
                    access_key_id: "AKID".into(),
                    secret_access_key: "s3cr3t".into(),
                },
            }),
            retention_full: 3,
            archive_timeout_secs: 60,
            run: None,
        };
        let text = render(&spec, &paths, 5433);
        for line in [
            "repo1-path=/fleet/db-a-1\n",
            "repo1-type=s3\n",
            "repo1-s3-endpoint=127.0.0.9\n",
            "repo1-s3-port=9443\n",
            "repo1-s3-bucket=backups\n",
            "repo1-s3-region=us-east-1\n",
            "repo1-s3-uri-style=path\n",
            "repo1-s3-ca-file=/h/pg/db-a.db-a/pgbackrest/s3-ca.crt\n",
            "repo1-s3-key=AKID\n",
            "repo1-s3-key-secret=s3cr3t\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let secret = format!("{:?}", spec.s3);
        assert!(
            !secret.contains("s3cr3t"),
            "Debug hides the secret: {secret}"
        );
    }

    #[test]
    fn only_complete_segments_of_parent_timelines_before_their_fork_are_pushed() {
        let history = "1\t0/7000100\tno recovery target specified\n\n2\t1/2000000\tswitchover\n";
        let forks = fork_segments(history);
        assert_eq!(forks, vec![(1, 7), (2, 0x102)]);
        assert!(before_fork("000000010000000000000006", &forks));
        // The fork's own segment is the .partial one; later ones are recycled files.
        assert!(!before_fork("000000010000000000000007", &forks));
        assert!(!before_fork("000000010000000000000009", &forks));
        assert!(before_fork("000000020000000100000001", &forks));
        assert!(!before_fork("000000030000000000000006", &forks));
        assert!(!before_fork("000000010000000000000006.partial", &forks));
        assert!(!before_fork("00000002.history", &forks));
    }

    #[test]
    fn the_last_pgbackrest_error_is_read_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("postgres.log");
        std::fs::write(
            &log,
            "x LOG: ok\nERROR: [104]: archive-push command encountered error(s):\n       repo1: [FileOpenError] unable to open file '/b/x' for write: [13] Permission denied\nLOG: archive command failed with exit code 104\n",
        )
        .unwrap();
        let error = last_archive_error(&log).unwrap();
        assert_eq!(
            error,
            "ERROR: [104]: archive-push command encountered error(s): repo1: [FileOpenError] unable to open file '/b/x' for write: [13] Permission denied"
        );
    }
}
