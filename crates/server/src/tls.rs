//! The fleet CA and TLS for the API. At first start the control plane creates
//! a CA (kept in the store; its certificate written to `DATA_DIR/ca.crt`)
//! and issues a server certificate for the API address. Clients (CLI, agents,
//! tests) trust `ca.crt`. The CA also issues PostgreSQL server certificates.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "pgfleet fleet CA");
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

impl FleetCa {
    /// Loads the CA from the store, or creates it; writes `DATA_DIR/ca.crt`.
    pub async fn load_or_create(
        store: &dyn pgfleet_store::Store,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<FleetCa> {
        let (cert_pem, key_pem) = match (
            store.get_meta("ca_cert").await?,
            store.get_meta("ca_key").await?,
        ) {
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                let key = KeyPair::generate()?;
                let cert = ca_params().self_signed(&key)?;
                let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
                store.put_meta("ca_key", &key_pem).await?;
                store.put_meta("ca_cert", &cert_pem).await?;
                (cert_pem, key_pem)
            }
        };
        std::fs::write(data_dir.join("ca.crt"), &cert_pem)?;
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&key_pem)?);
        Ok(FleetCa { cert_pem, issuer })
    }

    /// Issues a server certificate for DNS names and IP addresses.
    pub fn issue(&self, common_name: &str, names: &[String]) -> anyhow::Result<IssuedCert> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The PostgreSQL server certificate of `node` (issued once, kept in the store).
pub async fn node_certificate(
    state: &crate::state::AppState,
    db: &str,
    node: &str,
    address: &str,
) -> Result<pgfleet_core::protocol::TlsMaterial, crate::error::ApiError> {
    let key = format!("tls/{db}/{node}/{address}");
    if let Some(text) = state.store.get_meta(&key).await? {
        if let Ok(material) = serde_json::from_str(&text) {
            return Ok(material);
        }
    }
    let zone = state.zone.zone();
    let names = vec![
        format!("{node}.{db}.{zone}"),
        format!("{db}.{zone}"),
        format!("primary.{db}.{zone}"),
        address.to_string(),
    ];
    let issued = state
        .ca
        .issue(&format!("{node}.{db}.{zone}"), &names)
        .map_err(crate::error::ApiError::internal)?;
    let material = pgfleet_core::protocol::TlsMaterial {
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    };
    state
        .store
        .put_meta(
            &key,
            &serde_json::to_string(&material).map_err(crate::error::ApiError::internal)?,
        )
        .await?;
    Ok(material)
}

/// A rustls server configuration from PEM certificate and key.
pub fn server_config(cert: &IssuedCert, ca_pem: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    install_crypto_provider();
    let mut chain = Vec::new();
    for pem in [cert.cert_pem.as_str(), ca_pem] {
        for item in rustls_pemfile_certs(pem)? {
            chain.push(item);
        }
    }
    let key = rustls::pki_types::PrivateKeyDer::try_from(pem_der(&cert.key_pem, "PRIVATE KEY")?)
        .map_err(|e| anyhow::anyhow!("bad private key: {e}"))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn rustls_pemfile_certs(
    pem: &str,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    Ok(vec![rustls::pki_types::CertificateDer::from(pem_der(
        pem,
        "CERTIFICATE",
    )?)])
}

/// The DER bytes of the first PEM block of `label` in `pem`.
fn pem_der(pem: &str, label: &str) -> anyhow::Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| anyhow::anyhow!("no {label} in PEM"))?
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .ok_or_else(|| anyhow::anyhow!("unterminated {label} PEM"))?
        + start;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64_decode(&body)
}

fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        if byte == b'=' {
            break;
        }
        let value = ALPHABET
            .iter()
            .position(|&c| c == byte)
            .ok_or_else(|| anyhow::anyhow!("bad base64 in PEM"))? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_decodes_to_der() {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params().self_signed(&key).unwrap();
        let der = pem_der(&cert.pem(), "CERTIFICATE").unwrap();
        assert_eq!(der, cert.der().to_vec());
    }
}
