//! PEM → DER, for certificates and private keys from files and the network.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in `pem`, in order; an error if there is none.
pub fn certificates(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in PEM");
    }
    Ok(certs)
}

/// The first certificate in `pem`.
pub fn first_certificate(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    Ok(certificates(pem)?.remove(0))
}

/// The private key in `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("bad private key PEM: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_generated_certificate_parses_back_to_its_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            first_certificate(&cert.pem()).unwrap().as_ref(),
            cert.der().as_ref()
        );
        assert!(private_key(&key.serialize_pem()).is_ok());
    }

    proptest! {
        /// Hostile PEM from the network is refused with an error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}", body in "[A-Za-z0-9+/=\n]{0,200}") {
            let _ = certificates(&text);
            let _ = private_key(&text);
            let wrapped = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
            if let Ok(certs) = certificates(&wrapped) {
                prop_assert_eq!(certs.len(), 1);
            }
        }
    }
}
