//! The certificates that Partner Center webhook signatures are checked against: a small cache
//! so that a certificate is downloaded once per TTL rather than once per delivery. Which URLs
//! may be fetched and how a downloaded certificate is judged are pure checks, in
//! `webhook_formats::certificate` (re-exported here), where they are fuzzed.
//!
//! Decisions:
//! - A URL outside the policy is refused **before** any network call ([`check_url`]), so a
//!   forged delivery cannot make cosell fetch arbitrary URLs (SSRF). Redirects are not
//!   followed, the download is bounded in time and size.
//! - The cache keeps at most [`MAX_CACHED_URLS`] URLs. Each entry has its own async lock, so
//!   concurrent first deliveries naming one URL cause one download while the others wait for it.
//!   Failures are not cached: the next delivery tries again.

use anyhow::Context as _;
use reqwest::Url;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use webhook_formats::signature::SignatureKey;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

pub use webhook_formats::certificate::{
    Accepted, CertificateError, CertificatePolicy, PARTNER_CENTER_CERTIFICATE_HOST, accept,
    check_url, parse_certificate,
};

/// How many certificate URLs the cache holds; a flood of distinct URLs evicts, never grows it.
pub const MAX_CACHED_URLS: usize = 16;

/// A certificate is a few kilobytes; anything larger than this is refused while downloading.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// Reads a certificate file, PEM or DER, into DER bytes (for config `trusted_certificates = [paths]`).
pub fn load_certificate_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    let cert = parse_certificate(&bytes)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{} is not a PEM or DER certificate", path.display()))?;
    cert.to_der().context("re-encoding the certificate as DER")
}

struct Cached {
    key: Arc<SignatureKey>,
    good_until: Instant,
}

/// One URL's cache slot; the async lock is held during the download so others wait for it.
type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Downloads certificates named by deliveries, checks them against the policy and caches
/// their RSA public keys per URL, ready to check signatures with. Cheap to share behind an
/// `Arc`.
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
    pub async fn signature_key(&self, url: &str) -> Result<Arc<SignatureKey>, CertificateError> {
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
        let key = Arc::new(SignatureKey::new(&accepted.key));
        *cached = Some(Cached {
            key: key.clone(),
            good_until,
        });
        Ok(key)
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
