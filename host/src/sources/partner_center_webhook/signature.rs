//! Verifies that a Partner Center webhook delivery was signed by Partner Center: the headers
//! are read and the RSA-SHA256 signature over the raw body is checked by
//! `webhook_formats::signature` (re-exported here; its docs hold the decisions and the
//! 400/401 rules), with the key of the certificate named by `x-ms-certificate-url`, fetched,
//! judged and cached by [`super::certificates`]. This module only joins the two: the one
//! network step sits between reading the headers and checking the body.

use super::certificates::{CertificatePolicy, CertificateStore};
use reqwest::header::HeaderMap;

pub use webhook_formats::signature::{
    ALGORITHM, ALGORITHM_HEADER, CERTIFICATE_URL_HEADER, DeliveryProof, RejectedDelivery,
    SIGNATURE_HEADER, SignatureKey,
};

/// Checks the signature of webhook deliveries; share one per process (it holds the
/// certificate cache).
pub struct SignatureVerifier {
    certificates: CertificateStore,
}

impl SignatureVerifier {
    /// A verifier trusting the certificates `policy` allows.
    pub fn new(policy: CertificatePolicy) -> anyhow::Result<Self> {
        Ok(Self {
            certificates: CertificateStore::new(policy)?,
        })
    }

    /// The certificate store (its policy and download count).
    pub fn certificates(&self) -> &CertificateStore {
        &self.certificates
    }

    /// Ok when the body is signed by an acceptable certificate. Headers are read before any
    /// download, so a malformed delivery never reaches the certificate host.
    pub async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), RejectedDelivery> {
        self.verify_proof(&DeliveryProof::from_headers(headers)?, body)
            .await
    }

    /// Ok when `body` is signed as `proof` (read from the delivery's headers before its body
    /// was, see [`DeliveryProof::from_headers`]) says, by an acceptable certificate.
    pub async fn verify_proof(
        &self,
        proof: &DeliveryProof,
        body: &[u8],
    ) -> Result<(), RejectedDelivery> {
        let key = self
            .certificates
            .signature_key(&proof.certificate_url)
            .await
            .map_err(|e| RejectedDelivery::unauthorized(e.to_string()))?;
        proof.verify(&key, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{AUTHORIZATION, HeaderValue};

    #[tokio::test]
    async fn missing_or_unsupported_headers_are_400_before_any_download() {
        let verifier = SignatureVerifier::new(CertificatePolicy::default()).unwrap();
        let url = "https://3psostorageacct.blob.core.windows.net/cert/x.cer";
        for pairs in [
            vec![(ALGORITHM_HEADER, ALGORITHM)],
            vec![(CERTIFICATE_URL_HEADER, url)],
            vec![
                (CERTIFICATE_URL_HEADER, url),
                (ALGORITHM_HEADER, "rsa-sha1"),
            ],
        ] {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(name, HeaderValue::from_static(value));
            }
            headers.insert(AUTHORIZATION, HeaderValue::from_static("Signature AQID"));
            let err = verifier.verify(&headers, b"{}").await.unwrap_err();
            assert_eq!(err.status, 400, "{headers:?}: {err}");
        }
        assert_eq!(verifier.certificates().fetches(), 0);
    }
}
