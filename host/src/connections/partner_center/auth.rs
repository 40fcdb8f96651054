//! Delegated auth: the refresh-token grant and the access-token cache.
//!
//! The access token is reused until [`REFRESH_MARGIN`] before it expires. Refresh tokens may be
//! single use (Entra ID rotates them; the emulator enforces it), so each answer's new refresh
//! token replaces the old one. Tokens are held as [`Secret`] and never logged. The endpoint
//! call and the cache entry are shared with Dataverse ([`crate::connections::oauth`]).

use super::error::PartnerCenterError;
use super::{PartnerCenterSettings, Result};
use crate::config::Secret;
use crate::connections::oauth::{CachedToken, TokenEndpoint, TokenError};
use tokio::sync::Mutex;

pub use crate::connections::oauth::REFRESH_MARGIN;

struct State {
    refresh_token: Secret,
    access: Option<CachedToken>,
}

/// Called with each new refresh token, so it can be kept across restarts.
pub type RotationHook = std::sync::Arc<dyn Fn(&Secret) + Send + Sync>;

/// The token cache. One refresh runs at a time; callers waiting for it get its token.
pub struct TokenCache {
    rotation_hook: std::sync::Mutex<Option<RotationHook>>,
    endpoint: TokenEndpoint,
    client_id: String,
    client_secret: Secret,
    state: Mutex<State>,
}

impl TokenCache {
    pub fn new(settings: &PartnerCenterSettings) -> Self {
        Self {
            rotation_hook: std::sync::Mutex::new(None),
            endpoint: TokenEndpoint {
                url: settings.token_url.clone(),
                max_retries: settings.max_retries,
            },
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            state: Mutex::new(State {
                refresh_token: settings.refresh_token.clone(),
                access: None,
            }),
        }
    }

    /// Calls `hook` with every new refresh token from now on.
    pub fn set_rotation_hook(&self, hook: RotationHook) {
        *self.rotation_hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// A valid access token: the cached one, or a new one when it is missing, close to its
    /// expiry, or equal to `rejected` (a token the API just refused with 401).
    pub async fn token(&self, http: &reqwest::Client, rejected: Option<&Secret>) -> Result<Secret> {
        let mut state = self.state.lock().await;
        let State {
            refresh_token,
            access,
        } = &mut *state;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let (token, next) = self
            .endpoint
            .cached(http, access, rejected, &form)
            .await
            .map_err(into_error)?;
        if let Some(next) = next {
            *refresh_token = next;
            let hook = self
                .rotation_hook
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(hook) = hook {
                hook(refresh_token);
            }
        }
        Ok(token)
    }
}

fn into_error(error: TokenError) -> PartnerCenterError {
    match error {
        TokenError::Rejected { status, message } => PartnerCenterError::Unauthorized(format!(
            "the token endpoint answered {status}: {message}"
        )),
        TokenError::Throttled { retry_after } => PartnerCenterError::Throttled { retry_after },
        TokenError::Server { status, message } => PartnerCenterError::Server { status, message },
        TokenError::Transport(m) => PartnerCenterError::Transport(m),
        TokenError::InvalidResponse(m) => PartnerCenterError::InvalidResponse(m),
    }
}
