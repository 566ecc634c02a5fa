//! New primaries from a template instead of a fresh initdb: initdb runs
//! once per host and PostgreSQL version (`<host dir>/templates/pg<version>`,
//! a cleanly stopped cluster with no password), and every new database gets
//! a copy of it with an identity of its own:
//!
//! 1. the copy is owned by the database's OS user;
//! 2. its system identifier is replaced by a new one in `global/pg_control`
//!    (and the control file's CRC-32C recomputed), then `pg_resetwal -f`
//!    writes a fresh WAL segment carrying it, so no two databases ever share
//!    a cluster identity (WAL of one is refused by the other);
//! 3. the `pgfleet` superuser's password is set in single-user mode as a
//!    SCRAM verifier (the plain password is never given to a process).
//!
//! The template is remade when the binaries' version line changes. Its
//! folder is private to the agent (0700).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::bin::PgBin;
use super::process::{prepare_dirs, run_tool, sync_filesystem, InstancePaths, INITDB_ARGS};
use super::user::PgUser;

/// One template is made at a time (agents are one process per host).
static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes `paths.data` a copy of the host's template for `bin`, with a new
/// system identifier and `superuser_password` for `pgfleet`.
pub async fn instantiate(
    bin: &PgBin,
    host_dir: &Path,
    template_user: &PgUser,
    user: &PgUser,
    paths: &InstancePaths,
    superuser_password: &str,
) -> anyhow::Result<()> {
    let template = ensure(bin, host_dir, template_user).await?;
    prepare_dirs(paths, user)?;
    if paths.data.exists() {
        std::fs::remove_dir_all(&paths.data)?;
    }
    {
        let (data, user) = (paths.data.clone(), *user);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            copy_tree(&template, &data)?;
            user.own_tree(&data)?;
            set_system_identifier(&data.join("global/pg_control"), new_system_identifier())
        })
        .await??;
    }
    let mut resetwal = user.command(&bin.tool("pg_resetwal"));
    resetwal.arg("-f").arg("-D").arg(&paths.data);
    run_tool(resetwal, "pg_resetwal").await?;
    set_password(bin, user, &paths.data, superuser_password).await?;
    sync_filesystem(&paths.data);
    Ok(())
}

/// The template's data folder, made first if missing or made by other binaries.
async fn ensure(bin: &PgBin, host_dir: &Path, user: &PgUser) -> anyhow::Result<PathBuf> {
    let _making = MAKING.lock().await;
    let version = bin.version_line().await?;
    let root = host_dir.join("templates");
    std::fs::create_dir_all(&root)?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))?;
    let dir = root.join(format!("pg{}", bin.version));
    let marker = dir.join("made-by");
    if std::fs::read_to_string(&marker).is_ok_and(|made| made == version) {
        return Ok(dir.join("data"));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    user.own(&dir)?;
    let mut command = user.command(&bin.tool("initdb"));
    // The template never runs: every copy's pg_hba.conf is written before
    // its first start, so its own authentication does not matter.
    command
        .arg("-D")
        .arg(dir.join("data"))
        .args(INITDB_ARGS)
        .args(["-A", "trust"]);
    run_tool(command, "initdb (template)").await?;
    pgfleet_tls::write_durable(&marker, version.as_bytes())?;
    tracing::info!(template = %dir.display(), "initdb template made");
    Ok(dir.join("data"))
}

/// Copies a data folder (files, folders, modes; no links in a fresh
/// cluster), except its WAL segments: `pg_resetwal -f` writes the copy a
/// new one anyway (a 16 MiB segment was 40 % of the copy).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = pending.pop() {
        if is_wal_segment(&src) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&src)?;
        if meta.is_dir() {
            std::fs::create_dir(&dst)
                .map_err(|e| anyhow::anyhow!("create {}: {e}", dst.display()))?;
            std::fs::set_permissions(&dst, meta.permissions())?;
            for entry in std::fs::read_dir(&src)? {
                let entry = entry?;
                pending.push((entry.path(), dst.join(entry.file_name())));
            }
        } else if meta.is_file() {
            std::fs::copy(&src, &dst)
                .map_err(|e| anyhow::anyhow!("copy {}: {e}", src.display()))?;
        } else {
            anyhow::bail!("unexpected file type in the template: {}", src.display());
        }
    }
    Ok(())
}

/// A WAL segment file: 24 hexadecimal digits, in `pg_wal`.
fn is_wal_segment(path: &Path) -> bool {
    let in_wal = path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "pg_wal");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    in_wal && name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A system identifier as PostgreSQL makes them: seconds in the high half,
/// randomness (not a pid) in the low half, so two made in one second differ.
fn new_system_identifier() -> u64 {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut random = [0u8; 4];
    getrandom(&mut random);
    (seconds << 32) | u64::from(u32::from_le_bytes(random))
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut file) = std::fs::File::open("/dev/urandom") {
        let _ = file.read_exact(buf);
    }
}

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Where the control file's CRC sits: the first 4-byte aligned offset whose
/// value is the CRC-32C of everything before it (the CRC is the last field
/// of `ControlFileData`, whose size differs between versions).
fn crc_offset(control: &[u8]) -> Option<usize> {
    let last = control.len().min(1024).checked_sub(4)?;
    (8..=last).step_by(4).find(|&offset| {
        let stored = u32::from_le_bytes([
            control[offset],
            control[offset + 1],
            control[offset + 2],
            control[offset + 3],
        ]);
        CRC32C.checksum(&control[..offset]) == stored
    })
}

/// Replaces the system identifier (the control file's first field) and
/// recomputes its CRC; written durably.
pub fn set_system_identifier(pg_control: &Path, identifier: u64) -> anyhow::Result<()> {
    let mut control = std::fs::read(pg_control)?;
    let offset = crc_offset(&control).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no valid CRC found: not a PostgreSQL control file",
            pg_control.display()
        )
    })?;
    control[..8].copy_from_slice(&identifier.to_le_bytes());
    let crc = CRC32C.checksum(&control[..offset]);
    control[offset..offset + 4].copy_from_slice(&crc.to_le_bytes());
    let mut file = std::fs::OpenOptions::new().write(true).open(pg_control)?;
    file.write_all(&control)?;
    file.sync_all()?;
    Ok(())
}

/// Sets `pgfleet`'s password in single-user mode, as a SCRAM verifier on stdin.
async fn set_password(
    bin: &PgBin,
    user: &PgUser,
    data: &Path,
    password: &str,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let mut command = user.command(&bin.tool("postgres"));
    command
        .arg("--single")
        .arg("-F")
        .arg("-D")
        .arg(data)
        .args(["-c", "exit_on_error=on", "postgres"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("postgres --single: cannot start: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("ALTER ROLE pgfleet PASSWORD '{verifier}'\n").as_bytes())
        .await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        anyhow::bail!(
            "postgres --single failed ({}): {}",
            output.status,
            last.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_file_crc_is_found_and_recomputed() {
        // A synthetic control file: 8-byte identifier, some fields, CRC at 40.
        let mut control = vec![0u8; 8192];
        for (i, byte) in control.iter_mut().enumerate().take(40).skip(8) {
            *byte = i as u8;
        }
        let crc = CRC32C.checksum(&control[..40]);
        control[40..44].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(crc_offset(&control), Some(40));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg_control");
        std::fs::write(&path, &control).unwrap();
        set_system_identifier(&path, 0x1122_3344_5566_7788).unwrap();
        let patched = std::fs::read(&path).unwrap();
        assert_eq!(&patched[..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(crc_offset(&patched), Some(40));
        assert_eq!(&patched[8..40], &control[8..40]);
    }

    #[test]
    fn a_file_without_a_valid_crc_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg_control");
        std::fs::write(&path, vec![0xabu8; 8192]).unwrap();
        assert!(set_system_identifier(&path, 1).is_err());
    }

    #[test]
    fn only_wal_segments_are_left_out_of_a_copy() {
        let from = tempfile::tempdir().unwrap();
        let wal = from.path().join("pg_wal");
        std::fs::create_dir_all(wal.join("archive_status")).unwrap();
        std::fs::write(wal.join("000000010000000000000001"), b"segment").unwrap();
        std::fs::write(wal.join("00000002.history"), b"history").unwrap();
        std::fs::create_dir(from.path().join("base")).unwrap();
        std::fs::write(
            from.path().join("base/000000010000000000000001"),
            b"not wal",
        )
        .unwrap();
        let to = tempfile::tempdir().unwrap();
        let copy = to.path().join("data");
        copy_tree(from.path(), &copy).unwrap();
        assert!(!copy.join("pg_wal/000000010000000000000001").exists());
        assert!(copy.join("pg_wal/archive_status").is_dir());
        assert!(copy.join("pg_wal/00000002.history").exists());
        assert!(copy.join("base/000000010000000000000001").exists());
    }

    #[test]
    fn identifiers_differ_and_carry_the_time() {
        let a = new_system_identifier();
        let b = new_system_identifier();
        assert_ne!(a, b);
        assert!(a >> 32 > 1_700_000_000);
    }
}
