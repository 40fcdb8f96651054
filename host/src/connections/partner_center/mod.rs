//! The Partner Center client: the Referrals API (list with opaque `@odata.nextLink` paging,
//! get, create, JSON Patch with `If-Match`) and the Webhooks API (the tenant's registration)
//! over delegated auth.
//!
//! The two APIs are two hosts and two token audiences ([`Audience`]): the Referrals API at
//! `base_url` takes tokens for `https://api.partner.microsoft.com`, the Webhooks API at
//! `webhooks_url` tokens for `https://api.partnercenter.microsoft.com`. Both are redeemed from
//! the same rotating refresh token.
//!
//! - [`auth`]: the refresh-token grant and the access-token cache, one token per audience
//!   (single-use refresh tokens: each answer's replacement is kept).
//! - [`device_login`]: the first sign-in, by the OAuth device-code flow.
//! - [`client`]: [`PartnerCenterClient`] and its calls.
//! - [`error`]: [`PartnerCenterError`], whose messages say what to do.
//!
//! Every request carries `MS-RequestId` (new per logical call, the same on each of its retries)
//! and `MS-CorrelationId` (see [`PartnerCenterClient::with_correlation_id`]). Secrets are held
//! as [`Secret`] and never logged.

pub mod auth;
pub mod client;
pub mod device_login;
pub mod error;
pub mod webhooks;

pub use client::{PartnerCenterClient, Referral};
pub use error::PartnerCenterError;

use crate::secret::Secret;
use std::time::Duration;

/// The Referrals API's resource (its tokens' audience).
pub const REFERRALS_RESOURCE: &str = "https://api.partner.microsoft.com";

/// The Webhooks API's resource (its tokens' audience).
pub const WEBHOOKS_RESOURCE: &str = "https://api.partnercenter.microsoft.com";

/// The default Webhooks API root.
pub const DEFAULT_WEBHOOKS_URL: &str = "https://api.partnercenter.microsoft.com";

/// Which API a token is for: each refuses the other's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The Referrals API (`api.partner.microsoft.com`).
    Referrals,
    /// The Webhooks API (`api.partnercenter.microsoft.com`).
    Webhooks,
}

impl Audience {
    /// The resource a token request names for this audience.
    pub fn resource(self) -> &'static str {
        match self {
            Audience::Referrals => REFERRALS_RESOURCE,
            Audience::Webhooks => WEBHOOKS_RESOURCE,
        }
    }
}

/// Where Partner Center is and how to authenticate against it.
#[derive(Debug, Clone)]
pub struct PartnerCenterSettings {
    /// The Referrals API root, e.g. `https://api.partner.microsoft.com` (no trailing `/v1.0`).
    pub base_url: String,
    /// The Webhooks API root, e.g. `https://api.partnercenter.microsoft.com` (no trailing
    /// `/webhooks`).
    pub webhooks_url: String,
    /// The OAuth token endpoint, e.g. `https://login.microsoftonline.com/{tenant}/oauth2/token`.
    pub token_url: String,
    /// The registered application's client id.
    pub client_id: String,
    /// The application's secret.
    pub client_secret: Secret,
    /// The delegated refresh token (single use: the client keeps each replacement).
    pub refresh_token: Secret,
    /// How long one HTTP request may take.
    pub timeout: Duration,
    /// How many times a call is retried after a 429, a 5xx or a connection error.
    pub max_retries: u32,
    /// The command that gets a new refresh token, named when the token endpoint refuses the
    /// one in hand (e.g. `cosell partner-center login --config cosell.toml`).
    pub sign_in_command: String,
}

/// [`PartnerCenterSettings::sign_in_command`] for the configuration file `config`.
pub fn sign_in_command(config: Option<&std::path::Path>) -> String {
    match config {
        Some(path) => format!("cosell partner-center login --config {}", path.display()),
        None => "cosell partner-center login --config <your cosell.toml>".into(),
    }
}

/// Results of this module.
pub type Result<T, E = PartnerCenterError> = std::result::Result<T, E>;
