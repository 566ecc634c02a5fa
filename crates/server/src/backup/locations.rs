//! Backup locations, stored as one JSON list under the meta key
//! `backup_locations` (read-modify-write under one lock). A POSIX location
//! is checked when it is created: an absolute path of plain characters,
//! not inside the control plane's data dir (except its `backups/`), a
//! directory this process can create and write a probe file into. On a
//! local fleet every agent shares the machine, so that check is theirs
//! too; in production the folder must be a mount all hosts share. An S3
//! location is checked with a signed PUT and DELETE of a probe object
//! (`s3`); its access key is kept apart, sealed by the store under
//! `secret/backup_location/<name>`, and never returned by the API.

use std::path::{Component, Path};

use pgfleet_core::backup::{BackupLocation, CreateS3Location, S3Credentials, StanzaRecord};
use pgfleet_core::names::validate_database_name;
use pgfleet_core::time::now_ms;

use crate::error::ApiError;
use crate::state::AppState;

const META_KEY: &str = "backup_locations";

/// Where an S3 location's access key is kept (sealed: the prefix is the
/// store's `SECRET_META_PREFIX`).
fn secret_key(name: &str) -> String {
    format!(
        "{}backup_location/{name}",
        pgfleet_store::sealed::SECRET_META_PREFIX
    )
}

/// The access key of S3 location `name` (none for a POSIX one).
pub async fn credentials(state: &AppState, name: &str) -> Result<Option<S3Credentials>, ApiError> {
    let Some(text) = state.store.get_meta(&secret_key(name)).await? else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    let credentials = serde_json::from_str(&text).map_err(|e| {
        ApiError::internal(format!(
            "stored credentials of backup location {name:?} unreadable: {e}"
        ))
    })?;
    Ok(Some(credentials))
}

/// Serialises changes of the location list.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn list(state: &AppState) -> Result<Vec<BackupLocation>, ApiError> {
    let Some(text) = state.store.get_meta(META_KEY).await? else {
        return Ok(Vec::new());
    };
    serde_json::from_str(&text)
        .map_err(|e| ApiError::internal(format!("stored backup locations unreadable: {e}")))
}

async fn save(state: &AppState, locations: &[BackupLocation]) -> Result<(), ApiError> {
    let text = serde_json::to_string(locations)
        .map_err(|e| ApiError::internal(format!("backup locations: {e}")))?;
    state.store.put_meta(META_KEY, &text).await?;
    Ok(())
}

pub async fn get(state: &AppState, name: &str) -> Result<BackupLocation, ApiError> {
    let found = list(state).await?.into_iter().find(|l| l.name == name);
    found.ok_or_else(|| ApiError::not_found("backup location", name))
}

/// The control plane's data dir, absolute.
fn data_dir(state: &AppState) -> std::path::PathBuf {
    let configured = &state.config.data_dir;
    std::fs::canonicalize(configured).unwrap_or_else(|_| configured.clone())
}

/// Why `path` cannot be a POSIX location (pure part of the check).
pub fn check_path_shape(path: &str, data_dir: &Path) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/._-".contains(c);
    if !path.starts_with('/') || !path.chars().all(allowed) || path.len() > 200 {
        return Err(
            "must be an absolute path of letters, digits and / . _ - (at most 200 characters)"
                .into(),
        );
    }
    let as_path = Path::new(path);
    if as_path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err("must not contain . or .. components".into());
    }
    if as_path.parent().is_none() {
        return Err("must not be /".into());
    }
    let backups = data_dir.join("backups");
    if as_path.starts_with(data_dir) && !as_path.starts_with(&backups) {
        return Err(format!(
            "is inside the control plane's data dir (only {} is allowed there)",
            backups.display()
        ));
    }
    Ok(())
}

/// Creates the folder if needed (0711: the stanza folders inside are each
/// private to their database's OS user) and writes and removes a probe file.
fn check_writable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return Err("is a symbolic link".into());
        }
        if !meta.is_dir() {
            return Err("exists and is not a directory".into());
        }
    } else {
        std::fs::create_dir_all(path).map_err(|e| format!("cannot be created: {e}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| format!("cannot set its mode: {e}"))?;
    }
    let probe = path.join(".pgfleet-probe");
    std::fs::write(&probe, b"probe").map_err(|e| format!("is not writable: {e}"))?;
    std::fs::remove_file(&probe).map_err(|e| format!("probe file cannot be removed: {e}"))?;
    Ok(())
}

/// Creates an S3 location once a probe object could be written and
/// deleted with its credentials; the error says what failed.
pub async fn create_s3(
    state: &AppState,
    name: &str,
    request: &CreateS3Location,
) -> Result<BackupLocation, ApiError> {
    validate_database_name(name)
        .map_err(|e| ApiError::bad_request(format!("invalid backup location name: {e}")))?;
    let checked = super::s3::check_shape(request)
        .map_err(|e| ApiError::bad_request(format!("backup location {name:?}: {e}")))?;
    if list(state).await?.iter().any(|l| l.name == name) {
        return Err(ApiError::conflict(format!(
            "backup location {name:?} already exists"
        )));
    }
    super::s3::probe(&checked, &request.credentials)
        .await
        .map_err(|e| {
            ApiError::bad_request(format!(
                "backup location {name:?}: bucket {:?} at {} cannot be used: {e}",
                checked.location.bucket, checked.location.endpoint
            ))
        })?;
    let _guard = LOCK.lock().await;
    let mut locations = list(state).await?;
    if locations.iter().any(|l| l.name == name) {
        return Err(ApiError::conflict(format!(
            "backup location {name:?} already exists"
        )));
    }
    let secret = serde_json::to_string(&request.credentials)
        .map_err(|e| ApiError::internal(format!("backup location credentials: {e}")))?;
    state.store.put_meta(&secret_key(name), &secret).await?;
    let location = BackupLocation {
        name: name.to_string(),
        kind: "s3".into(),
        path: checked.path.clone(),
        s3: Some(checked.location.clone()),
        created_at_ms: now_ms(),
        stanzas: Vec::new(),
    };
    locations.push(location.clone());
    save(state, &locations).await?;
    tracing::info!(location = %name, endpoint = %checked.location.endpoint, bucket = %checked.location.bucket, path = %checked.path, "s3 backup location created");
    Ok(location)
}

pub async fn create(state: &AppState, name: &str, path: &str) -> Result<BackupLocation, ApiError> {
    validate_database_name(name)
        .map_err(|e| ApiError::bad_request(format!("invalid backup location name: {e}")))?;
    check_path_shape(path, &data_dir(state))
        .map_err(|e| ApiError::bad_request(format!("backup location path {path:?} {e}")))?;
    let owned = path.to_string();
    let checked = tokio::task::spawn_blocking(move || check_writable(Path::new(&owned)))
        .await
        .map_err(|e| ApiError::internal(format!("location check: {e}")))?;
    checked.map_err(|e| ApiError::bad_request(format!("backup location path {path:?} {e}")))?;
    let _guard = LOCK.lock().await;
    let mut locations = list(state).await?;
    if locations.iter().any(|l| l.name == name) {
        return Err(ApiError::conflict(format!(
            "backup location {name:?} already exists"
        )));
    }
    let location = BackupLocation {
        name: name.to_string(),
        kind: "posix".into(),
        path: path.trim_end_matches('/').to_string(),
        s3: None,
        created_at_ms: now_ms(),
        stanzas: Vec::new(),
    };
    locations.push(location.clone());
    save(state, &locations).await?;
    tracing::info!(location = %name, path = %path, "backup location created");
    Ok(location)
}

/// The local fleet's default location `local` in `DATA_DIR/backups/local`,
/// made once (`pgfleet up`); a location of that name the user made stays.
pub async fn ensure_local(state: &AppState) -> Result<(), ApiError> {
    if list(state).await?.iter().any(|l| l.name == "local") {
        return Ok(());
    }
    let path = data_dir(state).join("backups").join("local");
    let path = path.display().to_string();
    create(state, "local", &path).await.map(|_| ())
}

/// Deletes a location no database's policy names. Its files stay.
pub async fn delete(state: &AppState, name: &str) -> Result<(), ApiError> {
    let _guard = LOCK.lock().await;
    let mut locations = list(state).await?;
    if !locations.iter().any(|l| l.name == name) {
        return Err(ApiError::not_found("backup location", name));
    }
    let databases = state.store.list_databases().await?;
    let users: Vec<&str> = databases
        .iter()
        .filter(|d| {
            d.backup.policy.as_ref().is_some_and(|p| p.location == name)
                || d.backup.restore.as_ref().is_some_and(|r| {
                    let from_here = match &r.location {
                        Some(location) => location == name,
                        None => r
                            .repo_path
                            .starts_with(&format!("{}/", location_path(&locations, name))),
                    };
                    d.status == pgfleet_core::DbStatus::Creating && from_here
                })
        })
        .map(|d| d.name.as_str())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "backup location {name:?} is used by {}",
            users.join(", ")
        )));
    }
    let was_s3 = locations.iter().any(|l| l.name == name && l.s3.is_some());
    locations.retain(|l| l.name != name);
    save(state, &locations).await?;
    if was_s3 {
        state.store.put_meta(&secret_key(name), "").await?;
    }
    tracing::info!(location = %name, "backup location deleted");
    Ok(())
}

fn location_path(locations: &[BackupLocation], name: &str) -> String {
    let found = locations.iter().find(|l| l.name == name);
    found.map(|l| l.path.clone()).unwrap_or_default()
}

/// Records `record` in location `name` (once per stanza).
pub async fn add_stanza(
    state: &AppState,
    name: &str,
    record: StanzaRecord,
) -> Result<BackupLocation, ApiError> {
    let _guard = LOCK.lock().await;
    let mut locations = list(state).await?;
    let Some(location) = locations.iter_mut().find(|l| l.name == name) else {
        return Err(ApiError::bad_request(format!(
            "no backup location {name:?} (see `pgfleet backup-location list`)"
        )));
    };
    if !location.stanzas.iter().any(|s| s.stanza == record.stanza) {
        location.stanzas.push(record);
    }
    let updated = location.clone();
    save(state, &locations).await?;
    Ok(updated)
}

/// The newest stanza of a database named `db` in any location (the
/// database may be deleted), with its location.
pub async fn find_stanza(
    state: &AppState,
    db: &str,
) -> Result<Option<(BackupLocation, StanzaRecord)>, ApiError> {
    let mut best: Option<(BackupLocation, StanzaRecord)> = None;
    for location in list(state).await? {
        for record in location.stanzas.iter().filter(|s| s.db == db) {
            let newer = best
                .as_ref()
                .is_none_or(|(_, b)| record.db_created_at_ms > b.db_created_at_ms);
            if newer {
                best = Some((location.clone(), record.clone()));
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_paths_are_absolute_plain_and_outside_the_data_dir() {
        let data = Path::new("/var/lib/pgfleet");
        assert!(check_path_shape("/srv/backups", data).is_ok());
        assert!(check_path_shape("/var/lib/pgfleet/backups/local", data).is_ok());
        assert!(check_path_shape("relative/dir", data).is_err());
        assert!(check_path_shape("/srv/../etc", data).is_err());
        assert!(check_path_shape("/srv/with space", data).is_err());
        assert!(check_path_shape("/srv/x\n[global]", data).is_err());
        assert!(check_path_shape("/", data).is_err());
        let inside = check_path_shape("/var/lib/pgfleet/hosts", data).unwrap_err();
        assert!(inside.contains("data dir"), "{inside}");
    }
}
