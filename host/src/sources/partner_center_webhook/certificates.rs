//! The certificates that Partner Center webhook signatures are checked against: which
//! `x-ms-certificate-url` values may be fetched, how a downloaded certificate is judged, and a
//! small cache so that a certificate is downloaded once per TTL rather than once per delivery.
//!
//! Decisions:
//! - Microsoft's documented step "verify the certificate chains to a Microsoft root" is replaced
//!   by an **https host allow-list** plus the documented issuer check (`O=Microsoft Corporation`)
//!   and the validity period. Anyone can make a self-signed certificate naming Microsoft, so the
//!   issuer check alone proves nothing; what proves the certificate is Microsoft's is that it was
//!   served over TLS (webpki roots, via rustls) by a host Microsoft controls. Building and
//!   checking X.509 chains ourselves would add a second trust store and a large attack surface
//!   for no gain over that. The URL must be https (http only if `allow_http`, meant for the
//!   emulator on loopback), on an allowed host (exact, case-insensitive), with no user info,
//!   query or fragment; any port is accepted (the owner of the host owns its ports). Redirects
//!   are not followed, the download is bounded in time and size.
//! - A URL outside the policy is refused **before** any network call, so a forged delivery
//!   cannot make cosell fetch arbitrary URLs (SSRF).
//! - Pinned certificates (e.g. the emulator's, which is self-signed) are trusted by comparing
//!   DER bytes and skip the issuer and validity checks.
//! - The file may be PEM or DER (Microsoft serves a `.cer`; its samples read it both ways).
//! - The cache keeps at most [`MAX_CACHED_URLS`] URLs. Each entry has its own async lock, so
//!   concurrent first deliveries naming one URL cause one download while the others wait for it.
//!   Failures are not cached: the next delivery tries again.

use anyhow::Context as _;
use reqwest::Url;
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use x509_cert::Certificate;
use x509_cert::der::{Decode, DecodePem, Encode};

/// The host Partner Center's documented sample names in `x-ms-certificate-url`
/// (`https://3psostorageacct.blob.core.windows.net/cert/pcnotifications-dispatch.microsoft.com.cer`).
pub const PARTNER_CENTER_CERTIFICATE_HOST: &str = "3psostorageacct.blob.core.windows.net";

/// How many certificate URLs the cache holds; a flood of distinct URLs evicts, never grows it.
pub const MAX_CACHED_URLS: usize = 16;

/// A certificate is a few kilobytes; anything larger than this is refused while downloading.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// The organisation Microsoft's reference receiver requires in the issuer.
const MICROSOFT_ISSUER: &str = "O=Microsoft Corporation";

/// Which certificates a delivery may be signed with.
#[derive(Debug, Clone)]
pub struct CertificatePolicy {
    /// Hosts x-ms-certificate-url may name (exact, case-insensitive host match). Empty = refuse all.
    pub allowed_hosts: Vec<String>,
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
}

impl Default for CertificatePolicy {
    /// Production: Partner Center's documented certificate host only, https, nothing pinned,
    /// 15 s to download, cached for an hour.
    fn default() -> Self {
        Self {
            allowed_hosts: vec![PARTNER_CENTER_CERTIFICATE_HOST.to_owned()],
            allow_http: false,
            pinned: Vec::new(),
            fetch_timeout: Duration::from_secs(15),
            cache_ttl: Duration::from_secs(3600),
        }
    }
}

/// Why no key could be had for a certificate URL. Messages never repeat header values.
#[derive(Debug, thiserror::Error)]
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
}

/// Reads a certificate file, PEM or DER, into DER bytes (for config `trusted_certificates = [paths]`).
pub fn load_certificate_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    let cert = parse_certificate(&bytes)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{} is not a PEM or DER certificate", path.display()))?;
    cert.to_der().context("re-encoding the certificate as DER")
}

/// Parses PEM (recognised by its `-----BEGIN` line) or else DER.
fn parse_certificate(bytes: &[u8]) -> Result<Certificate, String> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        Certificate::from_pem(bytes).map_err(|e| format!("invalid PEM certificate: {e}"))
    } else {
        Certificate::from_der(bytes).map_err(|e| format!("invalid DER certificate: {e}"))
    }
}

/// Checks `raw` against the policy without touching the network.
fn check_url(policy: &CertificatePolicy, raw: &str) -> Result<Url, CertificateError> {
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
    Ok(url)
}

/// A certificate judged acceptable: its key and the end of its validity (None when pinned).
struct Accepted {
    key: RsaPublicKey,
    not_after: Option<SystemTime>,
}

/// Judges a downloaded certificate (PEM or DER) against the policy at `now`.
fn accept(
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
    Ok(Accepted { key, not_after })
}

struct Cached {
    key: RsaPublicKey,
    good_until: Instant,
}

/// One URL's cache slot; the async lock is held during the download so others wait for it.
type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Downloads certificates named by deliveries, checks them against the policy and caches
/// their RSA public keys per URL. Cheap to share behind an `Arc`.
pub struct CertificateStore {
    policy: CertificatePolicy,
    http: reqwest::Client,
    slots: Mutex<HashMap<String, Slot>>,
    fetches: AtomicU64,
}

impl CertificateStore {
    /// A store for `policy`; fails if a pinned certificate is not a DER certificate.
    pub fn new(policy: CertificatePolicy) -> anyhow::Result<Self> {
        for (i, der) in policy.pinned.iter().enumerate() {
            Certificate::from_der(der)
                .with_context(|| format!("pinned certificate #{i} is not a DER certificate"))?;
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(policy.fetch_timeout)
            .connect_timeout(policy.fetch_timeout)
            .build()
            .context("building the certificate HTTP client")?;
        Ok(Self {
            policy,
            http,
            slots: Mutex::default(),
            fetches: AtomicU64::new(0),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &CertificatePolicy {
        &self.policy
    }

    /// How many downloads were started so far (for tests and metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The RSA public key of the certificate at `url`: from the cache while it is fresh,
    /// otherwise downloaded and checked. A URL outside the policy is refused without any
    /// network call.
    pub async fn public_key(&self, url: &str) -> Result<RsaPublicKey, CertificateError> {
        let url = check_url(&self.policy, url)?;
        let slot = self.slot(url.as_str());
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.good_until) {
            return Ok(c.key.clone());
        }
        let bytes = self.download(url).await?;
        let accepted = accept(&self.policy, &bytes, SystemTime::now())?;
        let mut good_until = Instant::now() + self.policy.cache_ttl;
        if let Some(end) = accepted.not_after {
            // Never use a certificate from the cache past its own expiry.
            let left = end
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            good_until = good_until.min(Instant::now() + left);
        }
        *cached = Some(Cached {
            key: accepted.key.clone(),
            good_until,
        });
        Ok(accepted.key)
    }

    /// The slot of `url`, made if need be; evicts stale slots (then any) when full.
    fn slot(&self, url: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(url) {
            return slot.clone();
        }
        if slots.len() >= MAX_CACHED_URLS {
            let now = Instant::now();
            // A locked slot is being fetched right now: keep it.
            slots.retain(|_, s| {
                s.try_lock()
                    .map(|c| c.as_ref().is_some_and(|c| now < c.good_until))
                    .unwrap_or(true)
            });
        }
        if slots.len() >= MAX_CACHED_URLS
            && let Some(victim) = slots.keys().next().cloned()
        {
            // Its waiters keep their Arc; only the cache forgets it.
            slots.remove(&victim);
        }
        slots.entry(url.to_owned()).or_default().clone()
    }

    async fn download(&self, url: Url) -> Result<Vec<u8>, CertificateError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetch = |e: reqwest::Error| CertificateError::Fetch(e.without_url().to_string());
        let mut response = self.http.get(url).send().await.map_err(fetch)?;
        if !response.status().is_success() {
            // Redirects land here too: they are not followed.
            return Err(CertificateError::Fetch(format!(
                "the certificate host answered {}",
                response.status()
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch)? {
            if bytes.len() + chunk.len() > MAX_CERTIFICATE_BYTES {
                return Err(CertificateError::Fetch(format!(
                    "larger than {MAX_CERTIFICATE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

// Unit tests of the URL and certificate checks, in `certificates/tests.rs`.
#[cfg(test)]
mod tests;
