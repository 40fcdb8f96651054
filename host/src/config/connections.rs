//! `[partner_center]`, `[dataverse]` and `[webhooks]`: where the two Microsoft services are, how
//! cosell authenticates against them, and how their webhooks reach cosell.
//!
//! Secrets are never written in the file: a [`SecretRef`] names the environment variable or the
//! file that holds each one, and is read only when the host starts.

use super::Secret;
use anyhow::{Context as _, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use webhook_formats::certificate::{
    PARTNER_CENTER_CERTIFICATE_HOST, PARTNER_CENTER_CERTIFICATE_PATH_PREFIX,
};

/// Where a secret is: `{ env = "VAR" }` or `{ file = "path" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The environment variable that holds the secret.
    pub env: Option<String>,
    /// The file that holds the secret (wins over `env`); relative to the configuration file.
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// Reads the secret; `what` names it in the error.
    pub fn read(&self, what: &str) -> Result<Secret> {
        match (&self.file, &self.env) {
            (Some(file), _) => Secret::from_file(file),
            (None, Some(var)) => Secret::from_env(var),
            (None, None) => anyhow::bail!("{what} needs `env = \"VAR\"` or `file = \"path\"`"),
        }
        .with_context(|| format!("reading {what}"))
    }

    pub(super) fn resolve(&mut self, base: &std::path::Path) {
        if let Some(file) = self.file.as_mut().filter(|f| f.is_relative()) {
            *file = base.join(&*file);
        }
    }
}

fn default_timeout_secs() -> u64 {
    30
}
fn default_max_retries() -> u32 {
    6
}

fn default_webhooks_url() -> String {
    crate::connections::partner_center::DEFAULT_WEBHOOKS_URL.into()
}

/// `[partner_center]`: the Referrals and Webhooks APIs, with delegated (App+User) auth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerCenterConfig {
    /// The Referrals API root, `https://api.partner.microsoft.com`.
    pub base_url: String,
    /// The Webhooks API root, another host: `https://api.partnercenter.microsoft.com` (the
    /// default).
    #[serde(default = "default_webhooks_url")]
    pub webhooks_url: String,
    /// `https://login.microsoftonline.com/<tenant>/oauth2/token` (or `.../oauth2/v2.0/token`).
    pub token_url: String,
    /// The delegated (App+User) application's id.
    pub client_id: String,
    /// The application's client secret.
    pub client_secret: SecretRef,
    /// Accept `http://` in `base_url`, `webhooks_url` and `token_url` (a local emulator only:
    /// the client secret and tokens travel on them).
    #[serde(default)]
    pub allow_http: bool,
    /// The delegated refresh token of a user with a co-sell role; optional once
    /// `cosell partner-center login` has kept one in the state database. Refresh tokens
    /// rotate: the host keeps the newest one in its state database and uses the one here only
    /// when it is new (a value different from the one last read replaces the kept one).
    pub refresh_token: Option<SecretRef>,
    /// Per-request timeout, in seconds (default 30); see [`PartnerCenterConfig::timeout`].
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries of 429s, 5xx and connection errors (default 6); a create is retried only when it
    /// surely did not land.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// How webhook deliveries are authenticated.
    #[serde(default)]
    pub webhooks: PartnerCenterWebhookConfig,
}

impl PartnerCenterConfig {
    /// The per-request timeout, `timeout_secs` (at least one second).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// Checks its URLs (see [`check_service_url`]).
    pub fn validate(&self) -> Result<()> {
        check_service_url(
            "partner_center.base_url",
            &self.base_url,
            self.allow_http,
            "partner_center",
        )?;
        check_service_url(
            "partner_center.webhooks_url",
            &self.webhooks_url,
            self.allow_http,
            "partner_center",
        )?;
        check_service_url(
            "partner_center.token_url",
            &self.token_url,
            self.allow_http,
            "partner_center",
        )
    }
}

/// Checks that `value`, the service URL at `key`, is an https URL, or an http one when the
/// `section`'s `allow_http` is set: a client secret, a refresh token or an access token goes
/// with every request to it, and anyone on the path could read them over plain http.
pub(super) fn check_service_url(
    key: &str,
    value: &str,
    allow_http: bool,
    section: &str,
) -> Result<()> {
    let url = url::Url::parse(value).with_context(|| {
        format!("{key} = \"{value}\" is not a URL; write the full address, e.g. https://contoso.crm.dynamics.com")
    })?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => anyhow::bail!(
            "{key} = \"{value}\" is not an https URL: credentials and tokens travel on it, and Microsoft's services are only reachable over https. Use https; for a local emulator only, set {section}.allow_http = true"
        ),
        other => anyhow::bail!(
            "{key} = \"{value}\" is not an https URL (its scheme is `{other}`); use https"
        ),
    }
}

/// `[partner_center.webhooks]`: which certificates may sign deliveries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartnerCenterWebhookConfig {
    /// Hosts `x-ms-certificate-url` may name.
    pub certificate_hosts: Vec<String>,
    /// The path every `x-ms-certificate-url` must start with (Microsoft's documented one).
    pub certificate_path_prefix: String,
    /// Accept `http://` certificate URLs (the sandbox's emulator only).
    pub allow_http: bool,
    /// Certificate files (PEM or DER) trusted as they are, e.g. the emulator's.
    pub trusted_certificates: Vec<PathBuf>,
}

impl Default for PartnerCenterWebhookConfig {
    fn default() -> Self {
        Self {
            // The host the certificate was observed on (reference §2.6); not documented by
            // Microsoft as fixed, so operators can extend it.
            certificate_hosts: vec![PARTNER_CENTER_CERTIFICATE_HOST.into()],
            certificate_path_prefix: PARTNER_CENTER_CERTIFICATE_PATH_PREFIX.into(),
            allow_http: false,
            trusted_certificates: Vec::new(),
        }
    }
}

/// `[dataverse]`: the environment's Web API, as an application user (client credentials).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataverseConfig {
    /// The environment root, `https://<org>.crm.dynamics.com`.
    pub url: String,
    /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.
    pub token_url: String,
    /// Accept `http://` in `url` and `token_url` (a local emulator only: the client secret
    /// and tokens travel on them).
    #[serde(default)]
    pub allow_http: bool,
    /// The application user's app id.
    pub client_id: String,
    /// The application's client secret.
    pub client_secret: SecretRef,
    /// Defaults to `<url>/.default`.
    pub scope: Option<String>,
    /// Per-request timeout, in seconds (default 30); see [`DataverseConfig::timeout`].
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries of 429s, 5xx and connection errors (default 6).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Requests in flight at most; lowered automatically while Dataverse throttles (its limit
    /// is 52 concurrent requests per user).
    #[serde(default = "default_dataverse_concurrency")]
    pub max_concurrency: usize,
}

fn default_dataverse_concurrency() -> usize {
    16
}

impl DataverseConfig {
    /// The per-request timeout, `timeout_secs` (at least one second).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// Checks its URLs (see [`check_service_url`]).
    pub fn validate(&self) -> Result<()> {
        check_service_url("dataverse.url", &self.url, self.allow_http, "dataverse")?;
        check_service_url(
            "dataverse.token_url",
            &self.token_url,
            self.allow_http,
            "dataverse",
        )
    }
}

/// `[webhooks]`: the listener both services deliver to.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Where `/webhooks/partner-center` and `/webhooks/dataverse` are served. Put a TLS
    /// reverse proxy in front of it for the real services.
    pub listen: SocketAddr,
    /// Larger bodies are refused with 413.
    pub max_body_bytes: usize,
    /// How Dataverse's webhook authenticates (the service endpoint's auth type and value).
    pub dataverse: Option<DataverseWebhookAuth>,
    /// The listener's limits (see [`WebhooksConfig::limits`]).
    pub header_read_timeout_ms: u64,
    /// A delivery's body must arrive in full within this many milliseconds of its head, else 408.
    pub body_timeout_ms: u64,
    /// A delivery not answered within this many milliseconds gets 503 (its sender retries).
    pub request_timeout_ms: u64,
    /// Open connections at most; further ones wait to be accepted.
    pub max_connections: usize,
    /// Deliveries handled at once at most (each may hold `max_body_bytes` while it is read);
    /// beyond it the answer is 503.
    pub max_in_flight: usize,
}

impl WebhooksConfig {
    /// The webhook listener's timeouts and caps.
    pub fn limits(&self) -> anyhow::Result<super::ListenerLimits> {
        super::listener::ListenerKeys {
            header_read_timeout_ms: self.header_read_timeout_ms,
            body_timeout_ms: self.body_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            max_connections: self.max_connections,
            max_in_flight: self.max_in_flight,
        }
        .limits("webhooks")
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8689)),
            max_body_bytes: 256 * 1024,
            dataverse: None,
            // Both senders send a delivery at once, in well under a second.
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 4096,
            // Each may hold up to max_body_bytes while it is read: 128 MiB at most.
            max_in_flight: 512,
        }
    }
}

/// How a Dataverse service endpoint authenticates its deliveries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataverseWebhookAuth {
    /// `http-header` (header `name: value`), `webhook-key` (query `code=value`) or
    /// `query-string` (query `name=value`).
    pub kind: DataverseAuthKind,
    /// Header or query parameter name (not used by `webhook-key`).
    #[serde(default = "default_auth_name")]
    pub name: String,
    /// The key Dataverse sends (the header's or query parameter's value).
    pub value: SecretRef,
}

fn default_auth_name() -> String {
    "x-cosell-key".into()
}

/// The Dataverse service endpoint auth types cosell accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataverseAuthKind {
    /// `http-header`: the key comes in the header `name: value`.
    HttpHeader,
    /// `webhook-key`: the key comes in the query parameter `code=value`.
    WebhookKey,
    /// `query-string`: the key comes in the query parameter `name=value`.
    QueryString,
}

impl DataverseAuthKind {
    /// The `authtype` value of a `serviceendpoint` row.
    pub fn authtype(self) -> i64 {
        match self {
            DataverseAuthKind::WebhookKey => 4,
            DataverseAuthKind::HttpHeader => 5,
            DataverseAuthKind::QueryString => 6,
        }
    }
}
