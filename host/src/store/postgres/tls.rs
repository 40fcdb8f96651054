//! TLS to the PostgreSQL server: rustls (ring), verifying the server's certificate against the
//! public (Mozilla) roots, or against the authorities of `[state] ca_file` when it is set.
//! Whether TLS is used is the URL's `sslmode` (`disable`, `prefer`, `require`); when it is,
//! the certificate is always verified.

use anyhow::{Context as _, Result, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::path::Path;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS connector for the pool.
pub(super) fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect> {
    let Some(path) = ca_file else {
        return Ok(MakeRustlsConnect::with_webpki_roots());
    };
    let pem =
        std::fs::read(path).with_context(|| format!("reading state.ca_file {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("state.ca_file {} is not PEM", path.display()))?;
        roots.add(cert).with_context(|| {
            format!(
                "state.ca_file {} holds a certificate rustls refuses",
                path.display()
            )
        })?;
    }
    if roots.is_empty() {
        bail!(
            "state.ca_file {} holds no certificate (it must be PEM, -----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(MakeRustlsConnect::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[cfg(test)]
mod tests;
