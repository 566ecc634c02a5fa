//! TLS for connections to PostgreSQL (tokio-postgres over rustls): the
//! server is verified against the fleet CA, by the host name or address
//! the connection names; a client certificate is presented when given.

/// A tokio-postgres TLS connector trusting `ca_pem`, presenting
/// `client` (certificate and key, PEM) when given.
pub fn postgres_tls(
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    crate::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::certificates(ca_pem)? {
        roots.add(cert)?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(crate::certificates(cert_pem)?, crate::private_key(key_pem)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
