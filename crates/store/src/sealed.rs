//! Secrets at rest: databases' passwords and monitor tokens, and settings
//! kept under a key that starts with [`SECRET_META_PREFIX`] (alert targets'
//! webhook addresses and signing secrets), are sealed
//! (ChaCha20-Poly1305, from `ring`) before they reach either store, with a
//! key kept outside it in `DATA_DIR/secrets.key` (0600), like the CA key.
//!
//! [`open_sealed`] opens a store behind [`SealedStore`]: it creates the key
//! at first start, refuses to start when the key is missing but sealed
//! values exist (restoring it from a backup is the only way back), and
//! seals the clear values an older version left in the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use pgfleet_core::{Database, Host, Task};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{EventDoc, Result, Store, StoreError};

/// Prefix of a sealed value: `sealed:v1:` + base64(nonce ‖ ciphertext ‖ tag).
const PREFIX: &str = "sealed:v1:";
const KEY_LEN: usize = 32;

/// Settings (`put_meta`) under keys that start with this are sealed, bound
/// to their key.
pub const SECRET_META_PREFIX: &str = "secret/";

/// Whether `value` is sealed (generated passwords and tokens are URL-safe
/// characters, never this prefix).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The key that seals secrets in the store.
pub struct SecretsKey {
    key: LessSafeKey,
}

impl SecretsKey {
    fn from_bytes(bytes: &[u8]) -> Option<SecretsKey> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).ok()?;
        Some(SecretsKey {
            key: LessSafeKey::new(unbound),
        })
    }

    /// A new random key and its text form (for the key file).
    pub fn generate() -> (SecretsKey, String) {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random generator");
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        let key = SecretsKey::from_bytes(&bytes).expect("a 32-byte key");
        (key, text)
    }

    /// The key in `text` (the key file's content).
    pub fn parse(text: &str) -> Option<SecretsKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        (bytes.len() == KEY_LEN)
            .then(|| SecretsKey::from_bytes(&bytes))
            .flatten()
    }

    /// Seals `clear`, bound to `context` (which record and field).
    pub fn seal(&self, context: &str, clear: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random generator");
        let mut sealed = clear.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .expect("sealing a short value");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// The clear value of `value` sealed for `context`; a clear value (an
    /// older version's, before migration) is returned as it is. `None` when
    /// it does not open (another key, another record, tampered).
    pub fn open(&self, context: &str, value: &str) -> Option<String> {
        let Some(encoded) = value.strip_prefix(PREFIX) else {
            return Some(value.to_string());
        };
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).ok()?;
        let clear = self
            .key
            .open_in_place(
                nonce,
                Aad::from(context.as_bytes()),
                &mut bytes[NONCE_LEN..],
            )
            .ok()?;
        String::from_utf8(clear.to_vec()).ok()
    }
}

/// The secret fields of a database record, by name.
fn secret_fields(db: &mut Database) -> [(&'static str, &mut String); 4] {
    [
        ("admin_password", &mut db.admin_password),
        ("replication_password", &mut db.replication_password),
        ("superuser_password", &mut db.superuser_password),
        ("monitor_token", &mut db.monitor_token),
    ]
}

fn has_clear_secrets(db: &Database) -> bool {
    let mut copy = db.clone();
    secret_fields(&mut copy)
        .iter()
        .any(|(_, value)| !value.is_empty() && !is_sealed(value))
}

fn has_sealed_secrets(db: &Database) -> bool {
    let mut copy = db.clone();
    secret_fields(&mut copy)
        .iter()
        .any(|(_, value)| is_sealed(value))
}

/// A store whose database records keep their secrets sealed.
pub struct SealedStore {
    inner: Arc<dyn Store>,
    key: SecretsKey,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn Store>, key: SecretsKey) -> SealedStore {
        SealedStore { inner, key }
    }

    fn seal(&self, db: &Database) -> Database {
        let mut sealed = db.clone();
        let name = db.name.clone();
        for (field, value) in secret_fields(&mut sealed) {
            if !value.is_empty() && !is_sealed(value) {
                *value = self.key.seal(&format!("{name}/{field}"), value);
            }
        }
        sealed
    }

    fn open(&self, mut db: Database) -> Result<Database> {
        let name = db.name.clone();
        for (field, value) in secret_fields(&mut db) {
            *value = self
                .key
                .open(&format!("{name}/{field}"), value)
                .ok_or_else(|| StoreError::Unsealable {
                    record: format!("{name}/{field}"),
                })?;
        }
        Ok(db)
    }

    /// Seals the clear secrets an older version stored; returns how many
    /// records it sealed.
    pub async fn seal_clear_records(&self) -> Result<usize> {
        let mut sealed = 0;
        for db in self.inner.list_databases().await? {
            if has_clear_secrets(&db) {
                self.inner.put_database(&self.seal(&db)).await?;
                sealed += 1;
            }
        }
        Ok(sealed)
    }
}

/// Opens the store at `url` with its secrets sealed by the key in
/// `key_path` (created at first start, 0600); seals clear values left by an
/// older version. A missing key while sealed values exist is an error.
pub async fn open_sealed(url: &str, key_path: &Path) -> Result<Arc<dyn Store>> {
    let sqlite = match url.strip_prefix("sqlite:") {
        Some(path) => Some(Arc::new(crate::SqliteStore::open(Path::new(path)).await?)),
        None => None,
    };
    let inner: Arc<dyn Store> = match &sqlite {
        Some(store) => store.clone(),
        None => crate::open(url).await?,
    };
    let key_error = |source| StoreError::SecretsKey {
        path: key_path.to_path_buf(),
        source,
    };
    let key = match std::fs::read_to_string(key_path) {
        Ok(text) => {
            crate::files::make_private(key_path).map_err(key_error)?;
            SecretsKey::parse(&text).ok_or_else(|| StoreError::BadSecretsKey(key_path.into()))?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let databases = inner.list_databases().await?;
            if databases.iter().any(has_sealed_secrets) {
                return Err(StoreError::MissingSecretsKey(key_path.into()));
            }
            let (key, text) = SecretsKey::generate();
            crate::files::write_private(key_path, &text).map_err(key_error)?;
            key
        }
        Err(error) => return Err(key_error(error)),
    };
    let sealed = SealedStore::new(inner, key);
    let count = sealed.seal_clear_records().await?;
    if count > 0 {
        if let Some(store) = &sqlite {
            store.purge_freed_pages().await?;
        }
        tracing::info!(
            databases = count,
            "sealed secrets an older version kept in clear"
        );
    }
    Ok(Arc::new(sealed))
}

/// Where the secrets key of a fleet in `data_dir` is kept.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets.key")
}

#[async_trait]
impl Store for SealedStore {
    async fn put_host(&self, host: &Host) -> Result<()> {
        self.inner.put_host(host).await
    }
    async fn list_hosts(&self) -> Result<Vec<Host>> {
        self.inner.list_hosts().await
    }
    async fn delete_host(&self, name: &str) -> Result<()> {
        self.inner.delete_host(name).await
    }
    async fn insert_database(&self, db: &Database) -> Result<()> {
        self.inner.insert_database(&self.seal(db)).await
    }
    async fn insert_database_with_task(&self, db: &Database, task: &Task) -> Result<Task> {
        self.inner
            .insert_database_with_task(&self.seal(db), task)
            .await
    }
    async fn put_database(&self, db: &Database) -> Result<()> {
        self.inner.put_database(&self.seal(db)).await
    }
    async fn get_database(&self, name: &str) -> Result<Option<Database>> {
        match self.inner.get_database(name).await? {
            Some(db) => Ok(Some(self.open(db)?)),
            None => Ok(None),
        }
    }
    async fn list_databases(&self) -> Result<Vec<Database>> {
        let mut opened = Vec::new();
        for db in self.inner.list_databases().await? {
            opened.push(self.open(db)?);
        }
        Ok(opened)
    }
    async fn delete_database(&self, name: &str) -> Result<()> {
        self.inner.delete_database(name).await
    }
    async fn insert_task(&self, task: &Task) -> Result<Task> {
        self.inner.insert_task(task).await
    }
    async fn submit_task_if_idle(&self, task: &Task) -> Result<crate::Submission> {
        self.inner.submit_task_if_idle(task).await
    }
    async fn put_task(&self, task: &Task) -> Result<()> {
        self.inner.put_task(task).await
    }
    async fn get_task(&self, id: i64) -> Result<Option<Task>> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, limit: i64) -> Result<Vec<Task>> {
        self.inner.list_tasks(limit).await
    }
    async fn unfinished_tasks(&self) -> Result<Vec<Task>> {
        self.inner.unfinished_tasks().await
    }
    async fn insert_event(&self, db: &str, event: &EventDoc) -> Result<i64> {
        self.inner.insert_event(db, event).await
    }
    async fn list_events(&self, db: &str) -> Result<Vec<EventDoc>> {
        self.inner.list_events(db).await
    }
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let Some(value) = self.inner.get_meta(key).await? else {
            return Ok(None);
        };
        if !key.starts_with(SECRET_META_PREFIX) || value.is_empty() {
            return Ok(Some(value));
        }
        let clear = self
            .key
            .open(key, &value)
            .ok_or_else(|| StoreError::Unsealable {
                record: key.to_string(),
            })?;
        Ok(Some(clear))
    }
    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        if key.starts_with(SECRET_META_PREFIX) && !value.is_empty() {
            return self.inner.put_meta(key, &self.key.seal(key, value)).await;
        }
        self.inner.put_meta(key, value).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(name: &str) -> Database {
        Database {
            status: pgfleet_core::DbStatus::Creating,
            version: 15,
            admin_password: "admin-secret".into(),
            replication_password: "repl-secret".into(),
            superuser_password: "su-secret".into(),
            monitor_token: "monitor-secret".into(),
            nodes: vec![],
            ..Database::fixture(name)
        }
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let (key, text) = SecretsKey::generate();
        let sealed = key.seal("db-1/admin_password", "s3cret");
        assert!(is_sealed(&sealed) && !sealed.contains("s3cret"));
        assert_ne!(
            sealed,
            key.seal("db-1/admin_password", "s3cret"),
            "random nonces"
        );
        assert_eq!(
            key.open("db-1/admin_password", &sealed).as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            key.open("db-2/admin_password", &sealed),
            None,
            "another record"
        );
        let (other, _) = SecretsKey::generate();
        assert_eq!(
            other.open("db-1/admin_password", &sealed),
            None,
            "another key"
        );
        let reloaded = SecretsKey::parse(&text).unwrap();
        assert_eq!(
            reloaded.open("db-1/admin_password", &sealed).as_deref(),
            Some("s3cret")
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert_eq!(key.open("db-1/admin_password", &tampered), None);
        assert!(SecretsKey::parse("short").is_none());
        assert_eq!(
            key.open("x", "clear").as_deref(),
            Some("clear"),
            "older clear values"
        );
    }

    #[tokio::test]
    async fn clear_secrets_are_sealed_at_open_and_a_lost_key_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("m.db").display());
        let key_path = key_path(dir.path());
        // An older version kept the secrets in clear.
        crate::open(&url)
            .await
            .unwrap()
            .insert_database(&database("db-1"))
            .await
            .unwrap();
        let store = open_sealed(&url, &key_path).await.unwrap();
        let mode = std::fs::metadata(&key_path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(
            store.get_database("db-1").await.unwrap().unwrap(),
            database("db-1")
        );
        store.put_database(&database("db-2")).await.unwrap();
        let file = std::fs::read(dir.path().join("m.db")).unwrap();
        let wal = std::fs::read(dir.path().join("m.db-wal")).unwrap_or_default();
        for bytes in [file, wal] {
            let text = String::from_utf8_lossy(&bytes).to_string();
            assert!(
                !text.contains("-secret"),
                "a clear secret is left in a file"
            );
        }
        let raw = crate::open(&url).await.unwrap();
        for db in raw.list_databases().await.unwrap() {
            let text = serde_json::to_string(&db).unwrap();
            assert!(!text.contains("-secret"), "{text}");
            assert!(is_sealed(&db.admin_password) && is_sealed(&db.monitor_token));
        }
        drop(store);
        // Opened again with the key: the same records.
        let again = open_sealed(&url, &key_path).await.unwrap();
        assert_eq!(
            again.list_databases().await.unwrap(),
            vec![database("db-1"), database("db-2")]
        );
        drop(again);
        // Without it: a clear error naming the file, not a new key.
        std::fs::remove_file(&key_path).unwrap();
        let error = open_sealed(&url, &key_path).await.err().unwrap();
        assert!(matches!(error, StoreError::MissingSecretsKey(_)), "{error}");
        assert!(!key_path.exists());
    }
}

#[cfg(test)]
mod meta_tests {
    use super::*;

    #[tokio::test]
    async fn secret_settings_are_sealed_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("m.db").display());
        let store = open_sealed(&url, &key_path(dir.path())).await.unwrap();
        let secret_key = format!("{SECRET_META_PREFIX}alert_target/pager");
        store.put_meta(&secret_key, "hook-secret").await.unwrap();
        store.put_meta("plain", "visible").await.unwrap();
        assert_eq!(
            store.get_meta(&secret_key).await.unwrap().as_deref(),
            Some("hook-secret")
        );
        let raw = crate::open(&url).await.unwrap();
        let stored = raw.get_meta(&secret_key).await.unwrap().unwrap();
        assert!(
            is_sealed(&stored) && !stored.contains("hook-secret"),
            "{stored}"
        );
        assert_eq!(
            raw.get_meta("plain").await.unwrap().as_deref(),
            Some("visible")
        );
        // A sealed value moved to another key does not open.
        raw.put_meta("secret/alert_target/other", &stored)
            .await
            .unwrap();
        assert!(store.get_meta("secret/alert_target/other").await.is_err());
    }
}
