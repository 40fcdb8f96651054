//! Which certificate URLs a Partner Center delivery may name, and whether a downloaded
//! certificate is one to trust. The download and the cache live in the host
//! (`host/src/sources/partner_center_webhook/certificates.rs`); these are the pure checks.
//!
//! Decisions:
//! - Microsoft's documented step "verify the certificate chains to a Microsoft root" is replaced
//!   by an **https host allow-list** plus the documented issuer check (`O=Microsoft Corporation`)
//!   and the validity period. Anyone can make a self-signed certificate naming Microsoft, so the
//!   issuer check alone proves nothing; what proves the certificate is Microsoft's is that it was
//!   served over TLS (webpki roots, via rustls) by a host Microsoft controls. Building and
//!   checking X.509 chains ourselves would add a second trust store and a large attack surface
//!   for no gain over that. The URL must be https (http only if `allow_http`, meant for the
//!   emulator on loopback), on an allowed host (exact, case-insensitive), under the allowed
//!   path prefix (Microsoft's documented URL is `/cert/<name>.cer`: the container the
//!   certificate is published in, so a forged delivery cannot name any other blob of that
//!   storage host), with no user info, query or fragment; any port is accepted (the owner of
//!   the host owns its ports).
//! - A URL outside the policy is refused **before** any network call, so a forged delivery
//!   cannot make cosell fetch arbitrary URLs (SSRF).
//! - Pinned certificates (e.g. the emulator's, which is self-signed) are trusted by comparing
//!   DER bytes and skip the issuer and validity checks.
//! - The file may be PEM or DER (Microsoft serves a `.cer`; its samples read it both ways).

use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts as _;
use std::time::{Duration, SystemTime};
use url::Url;
use x509_cert::Certificate;
use x509_cert::der::{Decode, DecodePem, Encode};

/// The host Partner Center's documented sample names in `x-ms-certificate-url`
/// (`https://3psostorageacct.blob.core.windows.net/cert/pcnotifications-dispatch.microsoft.com.cer`).
pub const PARTNER_CENTER_CERTIFICATE_HOST: &str = "3psostorageacct.blob.core.windows.net";

/// The path prefix of that documented URL: the storage container the certificate is in.
pub const PARTNER_CENTER_CERTIFICATE_PATH_PREFIX: &str = "/cert/";

/// The smallest RSA key a signature is checked with (what `ring` verifies; Partner Center's
/// certificate has one of 2048 bits).
const MIN_KEY_BITS: usize = 2048;

/// The organisation Microsoft's reference receiver requires in the issuer.
const MICROSOFT_ISSUER: &str = "O=Microsoft Corporation";

/// Which certificates a delivery may be signed with.
#[derive(Debug, Clone)]
pub struct CertificatePolicy {
    /// Hosts x-ms-certificate-url may name (exact, case-insensitive host match). Empty = refuse all.
    pub allowed_hosts: Vec<String>,
    /// The path every certificate URL must start with (compared after the URL is normalised,
    /// so `..` segments cannot climb out of it); something must follow it.
    pub path_prefix: String,
    /// Allow http:// certificate URLs (only for the sandbox/emulator on loopback). Default false: https only.
    pub allow_http: bool,
    /// Certificates (DER bytes) trusted as they are, e.g. the emulator's; any certificate
    /// downloaded must either be one of these (compare bytes) or pass the checks: issuer
    /// O=Microsoft Corporation and inside its validity period.
    pub pinned: Vec<Vec<u8>>,
    /// Time limit of one certificate download (connect included).
    pub fetch_timeout: Duration,
    /// How long a downloaded certificate is used before it is fetched again.
    pub cache_ttl: Duration,
    /// How long a failed download or a refused certificate is remembered for its URL, so that
    /// deliveries naming it are refused without downloading it again meanwhile.
    pub failure_ttl: Duration,
}

impl Default for CertificatePolicy {
    /// Production: Partner Center's documented certificate host only, https, nothing pinned,
    /// under its documented path prefix, 15 s to download, cached for an hour, a failure
    /// remembered for a minute.
    fn default() -> Self {
        Self {
            allowed_hosts: vec![PARTNER_CENTER_CERTIFICATE_HOST.to_owned()],
            path_prefix: PARTNER_CENTER_CERTIFICATE_PATH_PREFIX.to_owned(),
            allow_http: false,
            pinned: Vec::new(),
            fetch_timeout: Duration::from_secs(15),
            cache_ttl: Duration::from_secs(3600),
            failure_ttl: Duration::from_secs(60),
        }
    }
}

/// Why no key could be had for a certificate URL. Messages never repeat header values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertificateError {
    /// The URL is malformed or outside the policy; nothing was fetched.
    #[error("certificate URL refused: {0}")]
    UrlRefused(&'static str),
    /// The download failed (network, timeout, non-2xx answer, too large).
    #[error("certificate could not be fetched: {0}")]
    Fetch(String),
    /// The certificate was fetched but is not one to trust (or not an RSA certificate).
    #[error("certificate not acceptable: {0}")]
    NotAcceptable(String),
    /// The URL is allowed but no download may start now (too many new certificate URLs
    /// recently, or too many downloads at once); Partner Center retries the delivery later.
    #[error("certificate not fetched now: {0}; the delivery can be retried later")]
    Throttled(&'static str),
}

/// Parses PEM (recognised by its `-----BEGIN` line) or else DER.
pub fn parse_certificate(bytes: &[u8]) -> Result<Certificate, String> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        Certificate::from_pem(bytes).map_err(|e| format!("invalid PEM certificate: {e}"))
    } else {
        Certificate::from_der(bytes).map_err(|e| format!("invalid DER certificate: {e}"))
    }
}

/// Checks `raw` against the policy without touching the network.
pub fn check_url(policy: &CertificatePolicy, raw: &str) -> Result<Url, CertificateError> {
    let url = Url::parse(raw).map_err(|_| CertificateError::UrlRefused("not a valid URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => {
            return Err(CertificateError::UrlRefused(
                "http is not allowed, only https",
            ));
        }
        _ => return Err(CertificateError::UrlRefused("the scheme must be https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CertificateError::UrlRefused("user info is not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CertificateError::UrlRefused(
            "a query or fragment is not allowed",
        ));
    }
    let host = url
        .host_str()
        .ok_or(CertificateError::UrlRefused("the URL has no host"))?;
    // IPv6 hosts come back bracketed; allow-list entries may be written either way.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let allowed = policy.allowed_hosts.iter().any(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(host)
    });
    if !allowed {
        return Err(CertificateError::UrlRefused(
            "the host is not on the allow-list",
        ));
    }
    // `Url::parse` has already resolved `.` and `..` segments (percent-encoded ones too).
    match url.path().strip_prefix(policy.path_prefix.as_str()) {
        Some(rest) if !rest.is_empty() => Ok(url),
        _ => Err(CertificateError::UrlRefused(
            "the path is not under the allowed certificate path prefix",
        )),
    }
}

/// A certificate judged acceptable: its key and the end of its validity (None when pinned).
#[derive(Debug)]
pub struct Accepted {
    pub key: RsaPublicKey,
    pub not_after: Option<SystemTime>,
}

/// Judges a downloaded certificate (PEM or DER) against the policy at `now`.
pub fn accept(
    policy: &CertificatePolicy,
    bytes: &[u8],
    now: SystemTime,
) -> Result<Accepted, CertificateError> {
    let cert = parse_certificate(bytes).map_err(CertificateError::NotAcceptable)?;
    let der = cert
        .to_der()
        .map_err(|e| CertificateError::NotAcceptable(format!("cannot re-encode: {e}")))?;
    let not_after = if policy.pinned.contains(&der) {
        None
    } else {
        let tbs = &cert.tbs_certificate;
        let microsoft = tbs
            .issuer
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .any(|attribute| attribute.to_string() == MICROSOFT_ISSUER);
        if !microsoft {
            return Err(CertificateError::NotAcceptable(format!(
                "the issuer is not {MICROSOFT_ISSUER} and the certificate is not pinned"
            )));
        }
        let (from, until) = (
            tbs.validity.not_before.to_system_time(),
            tbs.validity.not_after.to_system_time(),
        );
        if now < from || now > until {
            return Err(CertificateError::NotAcceptable(
                "outside its validity period".into(),
            ));
        }
        Some(until)
    };
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| CertificateError::NotAcceptable(format!("cannot read its key: {e}")))?;
    let key = RsaPublicKey::from_public_key_der(&spki)
        .map_err(|_| CertificateError::NotAcceptable("its key is not an RSA key".into()))?;
    let bits = key.size() * 8;
    if bits < MIN_KEY_BITS {
        return Err(CertificateError::NotAcceptable(format!(
            "its RSA key has {bits} bits; at least {MIN_KEY_BITS} are required"
        )));
    }
    Ok(Accepted { key, not_after })
}
