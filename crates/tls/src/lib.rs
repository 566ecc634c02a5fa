//! TLS plumbing shared by the control plane and the agents: PEM parsing,
//! certificate fingerprints, rustls server configurations with optional or
//! required client certificates, an HTTP(S) accept loop that hands the peer's
//! certificate and address to handlers (with timeouts, a connection limit and
//! early answers delivered whole), and key + CSR generation for host
//! identities.
//!
//! Identities are pinned by fingerprint (SHA-256 of the certificate's DER):
//! the control plane records which certificate it issued to which host, so
//! forgetting a fingerprint revokes a certificate without a CRL.

mod activity;
mod config;
mod early_answer;
mod pem;
mod postgres;
mod serve;

pub use config::{client_identity_pem, server_config, ClientAuth, ReloadableCert};
pub use early_answer::{finish_request_body, DRAIN_BYTES, DRAIN_TIME};
pub use pem::{certificates, first_certificate, private_key};
pub use postgres::postgres_tls;
pub use serve::{serve, HttpLimits, PeerCertificate};

use sha2::{Digest, Sha256};

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// SHA-256 of a certificate's DER bytes, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fingerprint of the first certificate in `pem`.
pub fn pem_fingerprint(pem: &str) -> anyhow::Result<String> {
    Ok(fingerprint(first_certificate(pem)?.as_ref()))
}

/// The DER bytes of a PEM certificate signing request.
pub fn csr_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    Ok(
        rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("bad signing request PEM: {e}"))?
            .as_ref()
            .to_vec(),
    )
}

/// A certificate signing request as PEM.
pub fn csr_pem(der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", der.to_vec()))
}

/// A new private key (PEM) and a certificate signing request for
/// `common_name`, signed with that key. The key never leaves the caller.
pub fn key_and_csr(common_name: &str) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// Writes a secret (key, credential, password) to `path`, mode 0600,
/// atomically and durably ([`write_durable`]).
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    write_durable(path, text.as_bytes())
}

/// Replaces `path` with `bytes` (mode 0600) so that after a crash it holds
/// either the old or the new content, and the new one once this returns:
/// writes `<name>.tmp` beside it, syncs it, renames it over `path` and syncs
/// the folder. Every failure is returned; callers that persist before acting
/// (fencing state) must not act on an error.
pub fn write_durable(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durable_owned(path, bytes, None)
}

/// [`write_durable`], the file owned by `owner` (uid, gid) before it takes
/// its name. Safe in a folder someone else owns (a database's OS user):
/// the temporary file is made new (an existing name, a link included, is
/// removed first and never followed), owned through its descriptor, and
/// renamed over `path` (a link there is replaced, its target untouched).
pub fn write_durable_owned(
    path: &std::path::Path,
    bytes: &[u8],
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(name) = path.file_name() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        ));
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    match std::fs::remove_file(&tmp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    std::fs::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn durable_writes_replace_the_file_privately_and_report_failures() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        super::write_durable(&path, b"one").expect("first write");
        super::write_durable(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("state.json.tmp").exists());

        // A folder where the file should be: the rename fails and says so.
        let blocked = dir.path().join("blocked.json");
        std::fs::create_dir_all(blocked.join("inside")).expect("folder");
        assert!(super::write_durable(&blocked, b"x").is_err());
        assert!(super::write_durable(&dir.path().join("missing/x.json"), b"x").is_err());
    }

    /// In a folder another user controls, links are never followed: one at
    /// the temporary name or at the file's name leaves its target untouched.
    #[test]
    fn durable_writes_never_follow_links() {
        let dir = tempfile::tempdir().expect("temp dir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        let path = dir.path().join("role");
        std::os::unix::fs::symlink(&victim, dir.path().join("role.tmp")).expect("link");
        super::write_durable(&path, b"primary").expect("write beside a planted link");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        std::fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink(&victim, &path).expect("link at the name");
        super::write_durable(&path, b"standby").expect("write over a link");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert!(!std::fs::symlink_metadata(&path)
            .expect("metadata")
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&path).expect("read"), b"standby");
    }
}
