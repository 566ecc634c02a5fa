//! Store files are private: the SQLite database and the files SQLite makes
//! beside it (`-wal`, `-shm`, `-journal`, which SQLite creates with the
//! database file's mode) and the secrets key are 0600.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `text` to `path` with mode 0600 (through a temporary file).
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Takes group and other permissions away from `path`, if it has any.
pub(crate) fn make_private(path: &Path) -> std::io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        tracing::info!(file = %path.display(), "made a store file private (0600)");
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the SQLite database file 0600 if it is missing (so the files
/// SQLite makes beside it are 0600 too) and tightens existing ones.
pub(crate) fn private_sqlite_files(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    make_private(path)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let companion = with_suffix(path, suffix);
        if companion.exists() {
            make_private(&companion)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn sqlite_files_are_private_new_and_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let store = crate::SqliteStore::open(&path).await.unwrap();
        crate::Store::put_meta(&store, "k", "v").await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = with_suffix(&path, suffix);
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        drop(store);
        // Files an older version left world-readable are tightened.
        for suffix in ["", "-wal", "-shm"] {
            let file = with_suffix(&path, suffix);
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _store = crate::SqliteStore::open(&path).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = with_suffix(&path, suffix);
            if file.exists() {
                assert_eq!(mode(&file), 0o600, "{}", file.display());
            }
        }
    }
}
