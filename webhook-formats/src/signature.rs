//! The signature of a Partner Center webhook delivery (reference §2.6, "Documented
//! verification steps"): RSA PKCS#1 v1.5 with SHA-256 over the exact raw body bytes, checked
//! with the public key of the certificate named by `x-ms-certificate-url` (judged by
//! [`crate::certificate`], downloaded and cached by the host).
//!
//! Decisions:
//! - The signature is read from `x-ms-signature` when present (registrations with
//!   `SignatureTokenToMsSignatureHeader`), else from `Authorization`. Both carry
//!   `Signature <base64>` (scheme case-insensitive). In `x-ms-signature` a bare base64 value is
//!   accepted too: that header can only hold a signature, so there is nothing to confuse it
//!   with. In `Authorization` the scheme is required, so e.g. a `Bearer` token is never read as
//!   a signature.
//! - Statuses follow Microsoft's reference receiver: **400** for a missing
//!   `x-ms-certificate-url` or `x-ms-signature-algorithm` (and for an algorithm other than
//!   `rsa-sha256`, the only one Partner Center uses: a malformed request, not a failed proof);
//!   **401** for a missing or malformed signature, a certificate URL refused by the policy
//!   (host not allowed, http, query…; an authentication failure, and nothing is fetched), a
//!   certificate that cannot be fetched or is not acceptable, and a signature that does not
//!   match the body.
//! - The body is verified as received: the caller passes the raw bytes, never re-serialised JSON.
//! - The check itself is `ring`'s (RSA PKCS#1 v1.5, SHA-256, keys of 2048 to 8192 bits), with a
//!   [`SignatureKey`] made once per certificate: the `rsa` crate's pure-Rust arithmetic took
//!   about 0.4 ms per delivery, most of the listener's time under load; `ring` takes a sixth of
//!   that. The `rsa` crate still reads the key from the certificate.
//! - Reasons are fixed phrases or our own error text; they never echo header values, so they
//!   are safe to log and to send back.

use base64::Engine as _;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use rsa::RsaPublicKey;
use rsa::traits::PublicKeyParts as _;

/// The header Partner Center puts the signature in when the registration asks for it.
pub const SIGNATURE_HEADER: &str = "x-ms-signature";
/// The header naming the certificate whose key verifies the signature.
pub const CERTIFICATE_URL_HEADER: &str = "x-ms-certificate-url";
/// The header naming the signature algorithm (`rsa-sha256`).
pub const ALGORITHM_HEADER: &str = "x-ms-signature-algorithm";
/// The only algorithm accepted (compared case-insensitively).
pub const ALGORITHM: &str = "rsa-sha256";

/// A delivery that must not be processed, with the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook delivery rejected ({status}): {reason}")]
pub struct RejectedDelivery {
    /// 400 (a required header is missing or unusable) or 401 (not proven to come from Partner
    /// Center).
    pub status: u16,
    /// Why; safe to log and to answer; never includes secrets or header values.
    pub reason: String,
}

impl RejectedDelivery {
    /// A 400: a required header is missing or unusable.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: 400,
            reason: reason.into(),
        }
    }

    /// A 401: the delivery is not proven to come from Partner Center.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self {
            status: 401,
            reason: reason.into(),
        }
    }
}

/// The RSA public key of a certificate, ready to check signatures with: its modulus and
/// exponent as big-endian bytes. Make it once per certificate, not once per delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureKey {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl SignatureKey {
    /// The key of `key`.
    pub fn new(key: &RsaPublicKey) -> Self {
        Self {
            modulus: key.n().to_bytes_be(),
            exponent: key.e().to_bytes_be(),
        }
    }
}

/// What the headers of a delivery claim: a signature and the certificate to check it with.
#[derive(Debug, Clone)]
pub struct DeliveryProof {
    /// The decoded signature bytes (not empty).
    pub signature: Vec<u8>,
    /// The `x-ms-certificate-url` value, trimmed (not yet checked against any policy).
    pub certificate_url: String,
}

impl DeliveryProof {
    /// Reads the signature, certificate URL and algorithm headers, in the reference receiver's
    /// order (signature first).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, RejectedDelivery> {
        let signature = signature_from(headers)?;
        let certificate_url = header_text(headers, CERTIFICATE_URL_HEADER)?;
        let algorithm = header_text(headers, ALGORITHM_HEADER)?;
        if !algorithm.trim().eq_ignore_ascii_case(ALGORITHM) {
            return Err(RejectedDelivery::bad_request(format!(
                "unsupported {ALGORITHM_HEADER}; only {ALGORITHM} is accepted"
            )));
        }
        Ok(Self {
            signature,
            certificate_url: certificate_url.trim().to_owned(),
        })
    }

    /// Ok when the signature is `key`'s over exactly `body`.
    pub fn verify(&self, key: &SignatureKey, body: &[u8]) -> Result<(), RejectedDelivery> {
        RsaPublicKeyComponents {
            n: &key.modulus,
            e: &key.exponent,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, body, &self.signature)
        .map_err(|_| RejectedDelivery::unauthorized("the signature does not match the body"))
    }
}

/// The value of a header that the reference receiver answers 400 for when missing.
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, RejectedDelivery> {
    let value = headers
        .get(name)
        .ok_or_else(|| RejectedDelivery::bad_request(format!("missing {name} header")))?;
    value
        .to_str()
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| RejectedDelivery::bad_request(format!("unreadable {name} header")))
}

/// The decoded signature bytes, from `x-ms-signature` if present, else `Authorization`.
fn signature_from(headers: &HeaderMap) -> Result<Vec<u8>, RejectedDelivery> {
    let (value, name, bare_allowed) = match headers.get(SIGNATURE_HEADER) {
        Some(v) => (v, SIGNATURE_HEADER, true),
        None => match headers.get(AUTHORIZATION) {
            Some(v) => (v, "authorization", false),
            None => {
                return Err(RejectedDelivery::unauthorized(
                    "missing signature (neither Authorization nor x-ms-signature)",
                ));
            }
        },
    };
    let text = value
        .to_str()
        .map_err(|_| RejectedDelivery::unauthorized(format!("unreadable {name} header")))?
        .trim();
    let encoded = match text.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("Signature") => rest.trim(),
        None if bare_allowed => text,
        _ => {
            return Err(RejectedDelivery::unauthorized(format!(
                "the {name} header does not use the Signature scheme"
            )));
        }
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| RejectedDelivery::unauthorized("the signature is not valid base64"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_signature_is_read_from_either_header_with_the_scheme() {
        let from_auth = headers(&[("authorization", "Signature AQID")]);
        assert_eq!(signature_from(&from_auth).unwrap(), vec![1, 2, 3]);
        let lower_scheme = headers(&[("authorization", "signature  AQID ")]);
        assert_eq!(signature_from(&lower_scheme).unwrap(), vec![1, 2, 3]);
        let from_ms = headers(&[("x-ms-signature", "Signature AQID")]);
        assert_eq!(signature_from(&from_ms).unwrap(), vec![1, 2, 3]);
        // x-ms-signature wins over an unrelated Authorization header.
        let both = headers(&[("authorization", "Bearer abc"), ("x-ms-signature", "AQID")]);
        assert_eq!(signature_from(&both).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn a_missing_or_foreign_signature_is_401() {
        for bad in [
            headers(&[]),
            headers(&[("authorization", "Bearer AQID")]),
            headers(&[("authorization", "AQID")]),
            headers(&[("x-ms-signature", "Signature not*base64")]),
            headers(&[("x-ms-signature", "Signature ")]),
        ] {
            let err = signature_from(&bad).unwrap_err();
            assert_eq!(err.status, 401, "{bad:?}: {err}");
        }
    }

    #[test]
    fn missing_certificate_url_or_algorithm_is_400_and_other_algorithms_too() {
        let url = "https://3psostorageacct.blob.core.windows.net/cert/x.cer";
        for (bad, what) in [
            (headers(&[(ALGORITHM_HEADER, ALGORITHM)]), "url"),
            (headers(&[(CERTIFICATE_URL_HEADER, url)]), "algorithm"),
            (
                headers(&[
                    (CERTIFICATE_URL_HEADER, url),
                    (ALGORITHM_HEADER, "rsa-sha1"),
                ]),
                "sha1",
            ),
        ] {
            let mut bad = bad;
            bad.insert(AUTHORIZATION, HeaderValue::from_static("Signature AQID"));
            let err = DeliveryProof::from_headers(&bad).unwrap_err();
            assert_eq!(err.status, 400, "{what}: {err}");
        }
    }
}
