//! rustls configurations.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// Whether a TLS server asks its clients for a certificate.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Clients may present a certificate issued by the CA (PEM); those that
    /// present one must present a valid one. Token-only clients still work.
    Optional(String),
    /// Every client must present a certificate issued by the CA (PEM).
    Required(String),
}

fn roots(ca_pem: &str) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in crate::certificates(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

fn builder(
    client_auth: ClientAuth,
) -> anyhow::Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>> {
    crate::install_crypto_provider();
    let builder = rustls::ServerConfig::builder();
    Ok(match client_auth {
        ClientAuth::Optional(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder(roots(&ca)?)
                .allow_unauthenticated()
                .build()?,
        ),
        ClientAuth::Required(ca) => {
            builder.with_client_cert_verifier(WebPkiClientVerifier::builder(roots(&ca)?).build()?)
        }
    })
}

fn finish(mut config: rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A server configuration presenting `cert_pem` (followed by `chain_pem`,
/// e.g. the CA) with `key_pem`; speaks h2 and HTTP/1.1.
pub fn server_config(
    cert_pem: &str,
    chain_pem: Option<&str>,
    key_pem: &str,
    client_auth: ClientAuth,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut chain = crate::certificates(cert_pem)?;
    if let Some(extra) = chain_pem {
        chain.extend(crate::certificates(extra)?);
    }
    let key = crate::private_key(key_pem)?;
    Ok(finish(builder(client_auth)?.with_single_cert(chain, key)?))
}

/// A server certificate that can be replaced while the server runs (a
/// renewed host certificate); new handshakes get the new one.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn new(cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<ReloadableCert>> {
        Ok(Arc::new(ReloadableCert {
            current: RwLock::new(certified_key(cert_pem, key_pem)?),
        }))
    }

    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        let key = certified_key(cert_pem, key_pem)?;
        *self.current.write().expect("certificate lock") = key;
        Ok(())
    }

    /// A server configuration presenting this certificate.
    pub fn server_config(
        self: &Arc<Self>,
        client_auth: ClientAuth,
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        Ok(finish(builder(client_auth)?.with_cert_resolver(
            self.clone() as Arc<dyn ResolvesServerCert>,
        )))
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

fn certified_key(cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<CertifiedKey>> {
    crate::install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .ok_or_else(|| anyhow::anyhow!("no TLS crypto provider"))?;
    let key = CertifiedKey::from_der(
        crate::certificates(cert_pem)?,
        crate::private_key(key_pem)?,
        provider,
    )?;
    Ok(Arc::new(key))
}

/// Certificate then key, the PEM form an HTTP client identity is built from.
pub fn client_identity_pem(cert_pem: &str, key_pem: &str) -> Vec<u8> {
    let mut pem = cert_pem.trim_end().to_string();
    pem.push('\n');
    pem.push_str(key_pem.trim_end());
    pem.push('\n');
    pem.into_bytes()
}
