//! HTTPS for an emulator: a self-signed certificate for `localhost` and `127.0.0.1`, made at
//! start, and the acceptor [`super::server::serve_with`] terminates TLS with.
//!
//! Why: the real services are HTTPS only, and some clients refuse anything else (Microsoft's
//! Python SDK for Dataverse rejects an `http://` URL). A client trusts the certificate by its
//! PEM ([`SelfSignedTls::certificate_pem`]), e.g. `REQUESTS_CA_BUNDLE` for Python's requests.

use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// A fresh self-signed identity and its acceptor.
#[derive(Clone)]
pub struct SelfSignedTls {
    acceptor: TlsAcceptor,
    certificate_pem: String,
}

impl std::fmt::Debug for SelfSignedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSignedTls").finish_non_exhaustive()
    }
}

impl SelfSignedTls {
    /// A new key pair and certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Self, String> {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("making the emulator's TLS certificate: {e}"))?;
        let certificate = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("the emulator's TLS settings: {e}"))?
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)
            .map_err(|e| format!("the emulator's TLS certificate: {e}"))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate_pem: certified.cert.pem(),
        })
    }

    /// The certificate, PEM-encoded: what a client adds to its trusted roots.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
