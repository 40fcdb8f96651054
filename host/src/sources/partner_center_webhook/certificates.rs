//! The certificates that Partner Center webhook signatures are checked against: a small cache
//! so that a certificate is downloaded once per TTL rather than once per delivery. Which URLs
//! may be fetched and how a downloaded certificate is judged are pure checks, in
//! `webhook_formats::certificate` (re-exported here), where they are fuzzed.
//!
//! Decisions:
//! - A URL outside the policy (host, path prefix, scheme) is refused **before** any network
//!   call ([`check_url`]), so a forged delivery cannot make cosell fetch arbitrary URLs (SSRF).
//!   Redirects are not followed, the download is bounded in time and size.
//! - A forged delivery can still name new URLs under the allowed prefix, each a download
//!   Microsoft's storage answers 404. So downloads are bounded four ways: one per URL at a
//!   time (each cache slot has its own async lock; concurrent first deliveries naming one URL
//!   cause one download while the others wait for it), at most
//!   [`MAX_CONCURRENT_DOWNLOADS`] at once, URLs never seen good before spend a token of a
//!   small bucket ([`NEW_URL_BURST`], one more every [`NEW_URL_REFILL`]), and a failure is
//!   remembered for the policy's `failure_ttl`, so repeating a bad URL costs nothing. A
//!   delivery refused for want of a token is answered 401 and Partner Center retries it.
//! - The cache keeps at most [`MAX_CACHED_URLS`] URLs. When full, failures and certificates
//!   past their TTL are forgotten first; a certificate within its TTL (the one genuine
//!   deliveries are checked with) is never evicted for a new URL: the new URL is refused.

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
    Accepted, CertificateError, CertificatePolicy, PARTNER_CENTER_CERTIFICATE_HOST,
    PARTNER_CENTER_CERTIFICATE_PATH_PREFIX, accept, check_url, parse_certificate,
};

/// How many certificate URLs the cache holds; a flood of distinct URLs never grows it.
pub const MAX_CACHED_URLS: usize = 16;

/// Downloads in flight at most, whatever their URLs.
pub const MAX_CONCURRENT_DOWNLOADS: usize = 4;

/// Downloads of URLs not known good that may start at once (Partner Center names one URL,
/// so a genuine sender needs one, or two while Microsoft moves the certificate).
pub const NEW_URL_BURST: u32 = 8;

/// How often one more download of a URL not known good is allowed once the burst is spent.
pub const NEW_URL_REFILL: Duration = Duration::from_secs(30);

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

/// What the cache knows about one URL.
#[derive(Default)]
enum Entry {
    /// Nothing yet (its first download is under way or failed to start).
    #[default]
    Unknown,
    /// An accepted certificate's key; known good, so refreshing it spends no token.
    Good(Cached),
    /// The last download failed or its certificate was refused; remembered until `until`.
    Failed {
        error: CertificateError,
        until: Instant,
    },
}

/// One URL's cache slot; the async lock is held during the download so others wait for it.
type Slot = Arc<tokio::sync::Mutex<Entry>>;

/// A token bucket for downloads of URLs not known good.
struct NewUrlBudget {
    tokens: f64,
    refilled_at: Instant,
}

impl NewUrlBudget {
    fn full() -> Self {
        Self {
            tokens: f64::from(NEW_URL_BURST),
            refilled_at: Instant::now(),
        }
    }

    /// Takes a token if one is left.
    fn take(&mut self, now: Instant) -> bool {
        let earned =
            now.duration_since(self.refilled_at).as_secs_f64() / NEW_URL_REFILL.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(NEW_URL_BURST));
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Downloads certificates named by deliveries, checks them against the policy and caches
/// their RSA public keys per URL, ready to check signatures with. Cheap to share behind an
/// `Arc`.
pub struct CertificateStore {
    policy: CertificatePolicy,
    http: reqwest::Client,
    slots: Mutex<HashMap<String, Slot>>,
    downloads: tokio::sync::Semaphore,
    new_urls: Mutex<NewUrlBudget>,
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
            downloads: tokio::sync::Semaphore::new(MAX_CONCURRENT_DOWNLOADS),
            new_urls: Mutex::new(NewUrlBudget::full()),
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
    /// network call, and so is one that failed less than `failure_ttl` ago.
    pub async fn signature_key(&self, url: &str) -> Result<Arc<SignatureKey>, CertificateError> {
        let url = check_url(&self.policy, url)?;
        let slot = self.slot(url.as_str())?;
        let mut entry = slot.lock().await;
        let now = Instant::now();
        let known_good = match &*entry {
            Entry::Good(c) if now < c.good_until => return Ok(c.key.clone()),
            Entry::Failed { error, until } if now < *until => return Err(error.clone()),
            Entry::Good(_) => true,
            Entry::Failed { .. } | Entry::Unknown => false,
        };
        if !known_good && !self.take_new_url_token(now) {
            return Err(CertificateError::Throttled(
                "too many certificate URLs not seen before were named recently",
            ));
        }
        let permit = tokio::time::timeout(self.policy.fetch_timeout, self.downloads.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(CertificateError::Throttled(
                "too many certificate downloads are in progress",
            ))?;
        let fetched = self.fetch_and_judge(url).await;
        drop(permit);
        *entry = match &fetched {
            Ok(cached) => Entry::Good(Cached {
                key: cached.key.clone(),
                good_until: cached.good_until,
            }),
            Err(error) => Entry::Failed {
                error: error.clone(),
                until: Instant::now() + self.policy.failure_ttl,
            },
        };
        fetched.map(|c| c.key)
    }

    fn take_new_url_token(&self, now: Instant) -> bool {
        let mut budget = self.new_urls.lock().unwrap_or_else(|p| p.into_inner());
        budget.take(now)
    }

    /// Downloads and judges the certificate at `url`; good until the TTL or its own expiry.
    async fn fetch_and_judge(&self, url: Url) -> Result<Cached, CertificateError> {
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
        Ok(Cached {
            key: Arc::new(SignatureKey::new(&accepted.key)),
            good_until,
        })
    }

    /// The slot of `url`, made if need be. When the cache is full, failures and unknown URLs
    /// are forgotten first, then certificates past their TTL; a slot being downloaded and a
    /// certificate within its TTL are kept, and if nothing else can go the new URL is refused.
    fn slot(&self, url: &str) -> Result<Slot, CertificateError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(url) {
            return Ok(slot.clone());
        }
        let now = Instant::now();
        for keep_expired_good in [true, false] {
            if slots.len() < MAX_CACHED_URLS {
                break;
            }
            // A slot whose lock is taken is being downloaded (or read) right now: keep it.
            slots.retain(|_, s| match s.try_lock() {
                Err(_) => true,
                Ok(entry) => match &*entry {
                    Entry::Good(c) => keep_expired_good || now < c.good_until,
                    Entry::Failed { .. } | Entry::Unknown => false,
                },
            });
        }
        if slots.len() >= MAX_CACHED_URLS {
            return Err(CertificateError::Throttled(
                "the certificate cache is full of certificates in use",
            ));
        }
        Ok(slots.entry(url.to_owned()).or_default().clone())
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
