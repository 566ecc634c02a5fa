//! The fleet CA and the host CA. At first start the control plane creates a
//! fleet CA (certificate in the store and in `DATA_DIR/ca.crt`, private key
//! in `DATA_DIR/ca.key`, mode 0600, never in the store) or takes the user's
//! (`--ca-cert`, `--ca-key`). The fleet CA issues the API's server
//! certificate (unless the user gives one), the control plane's client
//! certificate and the PostgreSQL certificates.
//!
//! Host certificates (from agents' signing requests) come from a separate
//! root, the host CA (`DATA_DIR/host-ca.key`, 0600; certificate in the store
//! and in `DATA_DIR/host-ca.crt`), kept the same way. The CLI and agents
//! trust only the fleet CA for the API server, so a host certificate — even
//! one naming the API's address — never passes as the control plane.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use pgfleet_tls::install_crypto_provider;

/// How long a host certificate is valid by default (`--host-cert-validity-secs`);
/// agents renew when a third is left.
pub const DEFAULT_HOST_CERT_SECS: u64 = 90 * 86_400;

/// Where one of our own CAs is kept.
struct OwnCa {
    common_name: &'static str,
    /// File of the private key in the data dir (0600).
    key_file: &'static str,
    /// File of the certificate in the data dir.
    cert_file: &'static str,
    /// Meta key of the certificate in the store.
    cert_meta: &'static str,
    /// Meta key where older fleets kept the key (moved out at start).
    legacy_key_meta: Option<&'static str>,
}

const FLEET_CA: OwnCa = OwnCa {
    common_name: "pgfleet fleet CA",
    key_file: "ca.key",
    cert_file: "ca.crt",
    cert_meta: "ca_cert",
    legacy_key_meta: Some("ca_key"),
};

const HOST_CA: OwnCa = OwnCa {
    common_name: "pgfleet host CA",
    key_file: "host-ca.key",
    cert_file: "host-ca.crt",
    cert_meta: "host_ca_cert",
    legacy_key_meta: None,
};

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "pgfleet");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The fleet's certificate authority.
pub struct FleetCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate the CA signed for a host's own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCert {
    pub cert_pem: String,
    pub fingerprint: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The user's CA, when they bring one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl FleetCa {
    /// The user's CA, or the fleet's own (created at first start). Writes
    /// `DATA_DIR/ca.crt`. A CA key found in the store (older fleets) moves
    /// to `DATA_DIR/ca.key`.
    pub async fn load_or_create(
        store: &dyn pgfleet_store::Store,
        data_dir: &Path,
        user: &CaFiles,
    ) -> anyhow::Result<FleetCa> {
        if let (Some(cert), Some(key)) = (&user.cert, &user.key) {
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
            };
            let (cert_pem, key_pem) = (read(cert)?, read(key)?);
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, KeyPair::from_pem(&key_pem)?)
                .map_err(|e| anyhow::anyhow!("the CA in {} is not usable: {e}", cert.display()))?;
            std::fs::write(data_dir.join("ca.crt"), &cert_pem)?;
            return Ok(FleetCa { cert_pem, issuer });
        }
        if user.cert.is_some() != user.key.is_some() {
            anyhow::bail!("--ca-cert and --ca-key go together");
        }
        Self::own(store, data_dir, &FLEET_CA).await
    }

    /// The host CA, which signs host certificates only (created at first
    /// start; a lost key stops the start like the fleet CA's).
    pub async fn load_or_create_host_ca(
        store: &dyn pgfleet_store::Store,
        data_dir: &Path,
    ) -> anyhow::Result<FleetCa> {
        Self::own(store, data_dir, &HOST_CA).await
    }

    async fn own(
        store: &dyn pgfleet_store::Store,
        data_dir: &Path,
        kind: &OwnCa,
    ) -> anyhow::Result<FleetCa> {
        let key_path = data_dir.join(kind.key_file);
        let stored_cert = store.get_meta(kind.cert_meta).await?;
        if let Some(meta) = kind.legacy_key_meta {
            let legacy_key = store.get_meta(meta).await?.filter(|key| !key.is_empty());
            if let Some(key) = &legacy_key {
                pgfleet_tls::write_private(&key_path, key)?;
                store.put_meta(meta, "").await?;
            }
        }
        let (cert_pem, key_pem) = match (stored_cert, std::fs::read_to_string(&key_path).ok()) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => anyhow::bail!(
                "the key of the {} ({}) is missing: restore it from your backup",
                kind.common_name,
                key_path.display()
            ),
            (None, _) => {
                let key = KeyPair::generate()?;
                let cert = ca_params(kind.common_name).self_signed(&key)?;
                pgfleet_tls::write_private(&key_path, &key.serialize_pem())?;
                store.put_meta(kind.cert_meta, &cert.pem()).await?;
                (cert.pem(), key.serialize_pem())
            }
        };
        std::fs::write(data_dir.join(kind.cert_file), &cert_pem)?;
        let issuer = Issuer::new(ca_params(kind.common_name), KeyPair::from_pem(&key_pem)?);
        Ok(FleetCa { cert_pem, issuer })
    }

    /// Issues a server certificate for DNS names and IP addresses.
    pub fn issue(&self, common_name: &str, names: &[String]) -> anyhow::Result<IssuedCert> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans(names)?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_new_key(params)
    }

    /// Issues a client certificate (the control plane's, for its calls to
    /// monitors).
    pub fn issue_client(&self, common_name: &str) -> anyhow::Result<IssuedCert> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_new_key(params)
    }

    fn sign_new_key(&self, params: CertificateParams) -> anyhow::Result<IssuedCert> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a host's certificate signing request. Only the request's key is
    /// used (its signature proves the host holds it); the names are ours:
    /// the host name and its address. Valid for client and server use (the
    /// agent endpoint), for `validity_secs`.
    pub fn sign_host(
        &self,
        host: &str,
        address: &str,
        csr_pem: &str,
        validity_secs: u64,
    ) -> anyhow::Result<HostCert> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| anyhow::anyhow!("the certificate signing request is not valid: {e}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, host);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "pgfleet hosts");
        params.subject_alt_names = sans(&[host.to_string(), address.to_string()])?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::seconds(validity_secs as i64);
        let cert = params.signed_by(&request.public_key, &self.issuer)?;
        let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        Ok(HostCert {
            fingerprint: pgfleet_tls::fingerprint(cert.der()),
            cert_pem: cert.pem(),
            issued_at_ms: ms(now),
            expires_at_ms: ms(params.not_after),
        })
    }
}

fn sans(names: &[String]) -> anyhow::Result<Vec<SanType>> {
    names
        .iter()
        .map(|name| {
            Ok(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            })
        })
        .collect()
}

/// A PostgreSQL certificate from the in-memory cache, or made by `issue`
/// and cached. Entries an older version kept in the store are scrubbed.
async fn cached<T, F>(
    state: &crate::state::AppState,
    key: &str,
    issue: F,
) -> Result<T, crate::error::ApiError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce() -> anyhow::Result<T>,
{
    use crate::error::ApiError;
    let found = state
        .pg_certificates
        .lock()
        .expect("certificates lock")
        .get(key)
        .cloned();
    if let Some(text) = found {
        if let Ok(value) = serde_json::from_str(&text) {
            return Ok(value);
        }
    }
    if state
        .store
        .get_meta(key)
        .await?
        .is_some_and(|stored| !stored.is_empty())
    {
        state.store.put_meta(key, "").await?;
    }
    let value = issue().map_err(ApiError::internal)?;
    let text = serde_json::to_string(&value).map_err(ApiError::internal)?;
    state
        .pg_certificates
        .lock()
        .expect("certificates lock")
        .insert(key.to_string(), text);
    Ok(value)
}

/// The PostgreSQL server certificate of `node`: its names include
/// `<node>.<db>.<zone>`, `<db>.<zone>`, `primary.<db>.<zone>` and the address.
pub async fn node_certificate(
    state: &crate::state::AppState,
    db: &str,
    node: &str,
    address: &str,
) -> Result<pgfleet_core::protocol::TlsMaterial, crate::error::ApiError> {
    let zone = state.zone.zone();
    let names = vec![
        format!("{node}.{db}.{zone}"),
        format!("{db}.{zone}"),
        format!("primary.{db}.{zone}"),
        address.to_string(),
    ];
    cached(state, &format!("tls/{db}/{node}/{address}"), || {
        let issued = state.ca.issue(&format!("{node}.{db}.{zone}"), &names)?;
        Ok(pgfleet_core::protocol::TlsMaterial {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            client: None,
        })
    })
    .await
}

/// `host`'s PostgreSQL client certificates (common names `pgfleet` and
/// `pgfleet_replication`), with the fleet CA.
pub async fn pg_client_tls(
    state: &crate::state::AppState,
    host: &str,
) -> Result<pgfleet_core::protocol::PgClientTls, crate::error::ApiError> {
    cached(state, &format!("tls/pg-client/{host}"), || {
        let superuser = state.ca.issue_client("pgfleet")?;
        let replication = state.ca.issue_client("pgfleet_replication")?;
        Ok(pgfleet_core::protocol::PgClientTls {
            ca_pem: state.ca.cert_pem.clone(),
            superuser_cert_pem: superuser.cert_pem,
            superuser_key_pem: superuser.key_pem,
            replication_cert_pem: replication.cert_pem,
            replication_key_pem: replication.key_pem,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> FleetCa {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params("test CA").self_signed(&key).unwrap();
        FleetCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(ca_params("test CA"), key),
        }
    }

    #[test]
    fn a_host_certificate_carries_our_names_not_the_requested_ones() {
        let (_key, csr) = pgfleet_tls::key_and_csr("someone-else").unwrap();
        let cert = ca()
            .sign_host("host-1", "127.0.0.2", &csr, DEFAULT_HOST_CERT_SECS)
            .unwrap();
        let der = pgfleet_tls::first_certificate(&cert.cert_pem).unwrap();
        let bytes = String::from_utf8_lossy(der.as_ref()).to_string();
        assert!(!bytes.contains("someone-else") && bytes.contains("host-1"));
        assert_eq!(
            cert.fingerprint,
            pgfleet_tls::pem_fingerprint(&cert.cert_pem).unwrap()
        );
        let secs = (cert.expires_at_ms - pgfleet_core::time::now_ms()) / 1000;
        assert!(
            (DEFAULT_HOST_CERT_SECS as i64 - 5..=DEFAULT_HOST_CERT_SECS as i64).contains(&secs)
        );
    }

    #[test]
    fn a_tampered_signing_request_is_refused() {
        let (_key, csr) = pgfleet_tls::key_and_csr("host-1").unwrap();
        let mut lines: Vec<String> = csr.lines().map(String::from).collect();
        let flipped: String = lines[3]
            .chars()
            .map(|c| {
                if c == 'A' {
                    'B'
                } else if c == 'B' {
                    'A'
                } else {
                    c
                }
            })
            .collect();
        lines[3] = flipped;
        let tampered = lines.join("\n");
        assert!(ca()
            .sign_host("host-1", "127.0.0.2", &tampered, 60)
            .is_err());
        assert!(ca()
            .sign_host("host-1", "127.0.0.2", "not a csr", 60)
            .is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Signing requests come from the network: arbitrary text, and valid
        /// requests with bytes flipped, are refused or signed — never a
        /// panic — and whatever is signed carries our names only.
        #[test]
        fn hostile_signing_requests_are_refused_or_signed_with_our_names(
            text in ".{0,200}",
            flip in 0usize..2000,
            bit in 0u8..8,
        ) {
            let ca = ca();
            let _ = ca.sign_host("host-1", "127.0.0.2", &text, 60);
            let (_key, csr) = pgfleet_tls::key_and_csr("evil.example").unwrap();
            let mut der = pgfleet_tls::csr_der(&csr).unwrap();
            let index = flip % der.len();
            der[index] ^= 1 << bit;
            let mutated = pgfleet_tls::csr_pem(&der);
            if let Ok(cert) = ca.sign_host("host-1", "127.0.0.2", &mutated, 60) {
                let parsed = pgfleet_tls::first_certificate(&cert.cert_pem).unwrap();
                let text = String::from_utf8_lossy(parsed.as_ref()).to_string();
                proptest::prop_assert!(!text.contains("evil.example"));
                proptest::prop_assert!(text.contains("host-1"));
            }
        }
    }
}
