//! Delegated auth: the refresh-token grant and the access-token cache, one access token per
//! [`Audience`].
//!
//! Each access token is reused until [`REFRESH_MARGIN`] before it expires. Both audiences are
//! redeemed from the same refresh token, and refresh tokens may be single use (Entra ID
//! rotates them; the emulator enforces it), so every refresh, whichever audience it is for,
//! runs under one lock and each answer's new refresh token replaces the old one (and reaches
//! the [`RefreshTokenKeeper`]). The grant names its resource as the endpoint expects:
//! `scope=<resource>/.default offline_access` on the v2.0 endpoint, `resource=<resource>` on
//! v1. Tokens are held as [`Secret`] and never logged. The endpoint call and the cache entry
//! are shared with Dataverse ([`crate::connections::oauth`]).

use super::error::PartnerCenterError;
use super::{Audience, PartnerCenterSettings, Result};
use crate::connections::oauth::{CachedToken, TokenEndpoint, TokenError};
use crate::connections::telemetry::Telemetry;
use crate::secret::Secret;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

pub use crate::connections::oauth::REFRESH_MARGIN;

struct State {
    refresh_token: Secret,
    access: HashMap<Audience, Option<CachedToken>>,
}

/// The form field that names `audience`'s resource at the token endpoint `token_url`: `scope`
/// on the v2.0 endpoint, `resource` on v1.
pub fn resource_field(token_url: &str, audience: Audience) -> (&'static str, String) {
    if token_url.contains("/v2.0/") {
        (
            "scope",
            format!("{}/.default offline_access", audience.resource()),
        )
    } else {
        ("resource", audience.resource().to_owned())
    }
}

/// Where rotated refresh tokens are kept, so they survive restarts and are shared by every
/// cosell process on the same state (a setup command next to a running host): refresh tokens
/// can be single use, so whoever redeems one must publish its replacement.
pub trait RefreshTokenKeeper: Send + Sync {
    /// The newest refresh token kept, if any.
    fn load(&self) -> Option<Secret>;
    /// Keeps a new refresh token.
    fn save(&self, token: &Secret);
}

/// The token cache. One refresh runs at a time; callers waiting for it get its token.
pub struct TokenCache {
    keeper: std::sync::Mutex<Option<Arc<dyn RefreshTokenKeeper>>>,
    endpoint: TokenEndpoint,
    client_id: String,
    client_secret: Secret,
    sign_in_command: String,
    state: Mutex<State>,
}

impl TokenCache {
    /// The cache of a client configured by `settings`, reporting to nobody.
    pub fn new(settings: &PartnerCenterSettings) -> Self {
        Self::reporting_to(settings, Telemetry::new("partner-center"))
    }

    /// The cache of a client configured by `settings`, reporting to the client's `telemetry`.
    pub fn reporting_to(settings: &PartnerCenterSettings, telemetry: Arc<Telemetry>) -> Self {
        Self {
            keeper: std::sync::Mutex::new(None),
            endpoint: TokenEndpoint {
                url: settings.token_url.clone(),
                max_retries: settings.max_retries,
                telemetry,
            },
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            sign_in_command: settings.sign_in_command.clone(),
            state: Mutex::new(State {
                refresh_token: settings.refresh_token.clone(),
                access: HashMap::new(),
            }),
        }
    }

    /// Keeps every new refresh token in `keeper` from now on, and falls back to its newest
    /// one when the token endpoint refuses the token in hand.
    pub fn set_keeper(&self, keeper: Arc<dyn RefreshTokenKeeper>) {
        *self.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(keeper);
    }

    /// A valid access token for `audience`: the cached one, or a new one when it is missing,
    /// close to its expiry, or equal to `rejected` (a token the API just refused with 401).
    pub async fn token(
        &self,
        http: &reqwest::Client,
        audience: Audience,
        rejected: Option<&Secret>,
    ) -> Result<Secret> {
        let keeper = self
            .keeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut state = self.state.lock().await;
        let mut reloaded = false;
        loop {
            let State {
                refresh_token,
                access,
            } = &mut *state;
            let access = access.entry(audience).or_default();
            let (field, resource) = resource_field(&self.endpoint.url, audience);
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose()),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose()),
                (field, resource.as_str()),
            ];
            match self.endpoint.cached(http, access, rejected, &form).await {
                Ok((token, next)) => {
                    if let Some(next) = next {
                        *refresh_token = next;
                        if let Some(keeper) = &keeper {
                            keeper.save(refresh_token);
                        }
                    }
                    return Ok(token);
                }
                Err(error @ TokenError::Rejected { .. }) => {
                    // Another process on the same state may have redeemed it and kept the
                    // replacement: take that one, once.
                    let newer = keeper
                        .as_ref()
                        .and_then(|k| k.load())
                        .filter(|t| t.expose() != refresh_token.expose());
                    match newer {
                        Some(newer) if !reloaded => {
                            reloaded = true;
                            tracing::debug!(
                                "refresh token refused; using the newer one kept in the state"
                            );
                            *refresh_token = newer;
                        }
                        _ => return Err(into_error(error, &self.sign_in_command)),
                    }
                }
                Err(error) => return Err(into_error(error, &self.sign_in_command)),
            }
        }
    }
}

fn into_error(error: TokenError, sign_in_command: &str) -> PartnerCenterError {
    match error {
        // The refresh token itself was refused (revoked, expired, already used): only a new
        // sign-in helps.
        TokenError::Rejected {
            code: Some(code),
            message,
            ..
        } if code == "invalid_grant" || code == "interaction_required" => {
            PartnerCenterError::SignInRequired {
                message,
                command: sign_in_command.to_owned(),
            }
        }
        TokenError::Rejected {
            status, message, ..
        } => PartnerCenterError::Unauthorized(format!(
            "the token endpoint answered {status}: {message}"
        )),
        TokenError::Throttled { retry_after } => PartnerCenterError::Throttled { retry_after },
        TokenError::Server { status, message } => PartnerCenterError::Server { status, message },
        TokenError::Transport(m) => PartnerCenterError::Transport(m),
        TokenError::InvalidResponse(m) => PartnerCenterError::InvalidResponse(m),
    }
}
