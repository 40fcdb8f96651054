//! The Partner Center client: the Referrals API (list with opaque `@odata.nextLink` paging,
//! get, create, JSON Patch with `If-Match`) over delegated auth.
//!
//! - [`auth`]: the refresh-token grant and the access-token cache (single-use refresh tokens:
//!   each answer's replacement is kept).
//! - [`client`]: [`PartnerCenterClient`] and its calls.
//! - [`error`]: [`PartnerCenterError`], whose messages say what to do.
//!
//! Every request carries `MS-RequestId` (new per logical call, the same on each of its retries)
//! and `MS-CorrelationId` (see [`PartnerCenterClient::with_correlation_id`]). Secrets are held
//! as [`Secret`] and never logged.

pub mod auth;
pub mod client;
pub mod error;
pub mod webhooks;

pub use client::{PartnerCenterClient, Referral};
pub use error::PartnerCenterError;

use crate::config::Secret;
use std::time::Duration;

/// Where Partner Center is and how to authenticate against it.
#[derive(Debug, Clone)]
pub struct PartnerCenterSettings {
    /// The API root, e.g. `https://api.partner.microsoft.com` (no trailing `/v1.0`).
    pub base_url: String,
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
}

/// Results of this module.
pub type Result<T, E = PartnerCenterError> = std::result::Result<T, E>;
