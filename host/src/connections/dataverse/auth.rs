//! Client-credentials auth (an application user): the token request and its cache.
//!
//! The access token is reused until [`crate::connections::oauth::REFRESH_MARGIN`] before it
//! expires, or until the Web API refuses it. One token request runs at a time; callers waiting
//! for it get its token. Secrets are held as [`Secret`] and never logged.

use super::error::DataverseError;
use super::{DataverseSettings, Result};
use crate::connections::oauth::{CachedToken, TokenEndpoint, TokenError};
use crate::connections::telemetry::Telemetry;
use crate::secret::Secret;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The token cache of one client.
pub(crate) struct TokenCache {
    endpoint: TokenEndpoint,
    client_id: String,
    client_secret: Secret,
    scope: String,
    cached: Mutex<Option<CachedToken>>,
}

impl TokenCache {
    pub(crate) fn new(settings: &DataverseSettings, root: &str, telemetry: Arc<Telemetry>) -> Self {
        Self {
            endpoint: TokenEndpoint {
                url: settings.token_url.clone(),
                max_retries: settings.max_retries,
                telemetry,
            },
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            scope: settings
                .scope
                .clone()
                .unwrap_or_else(|| format!("{root}/.default")),
            cached: Mutex::new(None),
        }
    }

    /// A valid access token: the cached one, or a new one when it is missing, close to its
    /// expiry, or equal to `rejected` (a token the API just refused with 401).
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        rejected: Option<&Secret>,
    ) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let (token, _) = self
            .endpoint
            .cached(http, &mut cached, rejected, &form)
            .await
            .map_err(|e| self.error_of(e))?;
        Ok(token)
    }

    fn error_of(&self, error: TokenError) -> DataverseError {
        match error {
            TokenError::Rejected {
                status, message, ..
            } => DataverseError::Unauthorized(format!(
                "the token endpoint {} answered {status} for client id {}: {message}",
                self.endpoint.url, self.client_id
            )),
            TokenError::Throttled { retry_after } => DataverseError::Throttled { retry_after },
            TokenError::Server { status, message } => DataverseError::Server { status, message },
            TokenError::Transport(m) => DataverseError::Transport(m),
            TokenError::InvalidResponse(m) => DataverseError::InvalidResponse(m),
        }
    }
}
