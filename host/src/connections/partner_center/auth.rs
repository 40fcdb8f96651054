//! Delegated auth: the refresh-token grant and the access-token cache.
//!
//! The access token is reused until [`REFRESH_MARGIN`] before it expires. Refresh tokens may be
//! single use (Entra ID rotates them; the emulator enforces it), so each answer's new refresh
//! token replaces the old one. Tokens are held as [`Secret`] and never logged.

use super::error::{PartnerCenterError, message_of};
use super::retry;
use super::{PartnerCenterSettings, Result};
use crate::config::Secret;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long before its expiry an access token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

struct State {
    refresh_token: Secret,
    access: Option<Cached>,
}

/// The token cache. One refresh runs at a time; callers waiting for it get its token.
pub struct TokenCache {
    token_url: String,
    client_id: String,
    client_secret: Secret,
    max_retries: u32,
    state: Mutex<State>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Entra ID's v1 endpoint sends a string, v2 a number.
    expires_in: serde_json::Value,
    refresh_token: Option<String>,
}

impl TokenCache {
    pub fn new(settings: &PartnerCenterSettings) -> Self {
        Self {
            token_url: settings.token_url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            max_retries: settings.max_retries,
            state: Mutex::new(State {
                refresh_token: settings.refresh_token.clone(),
                access: None,
            }),
        }
    }

    /// A valid access token: the cached one, or a new one when it is missing, close to its
    /// expiry, or equal to `rejected` (a token the API just refused with 401).
    pub async fn token(&self, http: &reqwest::Client, rejected: Option<&Secret>) -> Result<Secret> {
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.access {
            let refused = rejected.is_some_and(|r| r.expose() == cached.token.expose());
            if !refused && Instant::now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        let answer = self.redeem(http, &state.refresh_token).await?;
        let lifetime = match &answer.expires_in {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
        let token = Secret::new(answer.access_token);
        if let Some(next) = answer.refresh_token {
            state.refresh_token = Secret::new(next);
        }
        state.access = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
        });
        tracing::debug!(
            lifetime_secs = lifetime.as_secs(),
            "Partner Center access token refreshed"
        );
        Ok(token)
    }

    /// Posts the refresh-token grant, retrying 429, 5xx and connection errors.
    async fn redeem(&self, http: &reqwest::Client, refresh_token: &Secret) -> Result<TokenAnswer> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let mut attempt = 0;
        loop {
            let wait = match http.post(&self.token_url).form(&form).send().await {
                Err(e) if e.is_builder() => {
                    return Err(PartnerCenterError::Transport(e.to_string()));
                }
                Err(e) if attempt >= self.max_retries => {
                    return Err(PartnerCenterError::Transport(format!(
                        "token endpoint {}: {e}",
                        self.token_url
                    )));
                }
                Err(_) => retry::backoff(attempt),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = response
                        .text()
                        .await
                        .map_err(|e| PartnerCenterError::Transport(e.to_string()))?;
                    if status.is_success() {
                        return serde_json::from_str(&body).map_err(|e| {
                            PartnerCenterError::InvalidResponse(format!(
                                "the token endpoint's answer is not a token: {e}"
                            ))
                        });
                    }
                    let retryable = status.as_u16() == 429 || status.is_server_error();
                    if !retryable {
                        return Err(PartnerCenterError::Unauthorized(format!(
                            "the token endpoint answered {status}: {}",
                            message_of(&body)
                        )));
                    }
                    if attempt >= self.max_retries {
                        return Err(if status.as_u16() == 429 {
                            PartnerCenterError::Throttled {
                                retry_after: retry::retry_after(&headers),
                            }
                        } else {
                            PartnerCenterError::Server {
                                status: status.as_u16(),
                                message: message_of(&body),
                            }
                        });
                    }
                    retry::retry_after(&headers).unwrap_or_else(|| retry::backoff(attempt))
                }
            };
            attempt += 1;
            tracing::debug!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying the Partner Center token request"
            );
            tokio::time::sleep(wait).await;
        }
    }
}
