//! OAuth bearer tokens, as Microsoft Entra ID issues them for both services (emulated).
//!
//! The token endpoint takes `application/x-www-form-urlencoded` requests with
//! `grant_type=client_credentials` (client id + secret: an app-only token, what Dataverse
//! application users get) or `grant_type=refresh_token` (a delegated App+User token, what the
//! Partner Center Referrals API requires). Tokens are opaque random strings here (the real ones
//! are JWTs; clients must not look inside either) and expire after the configured lifetime of
//! emulated time. Errors use Entra ID's `{"error", "error_description"}` shape.

use super::clock::EmulatedClock;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// App-only (client id + secret).
    ClientCredentials,
    /// Delegated App+User, from a refresh token.
    RefreshToken,
}

/// What a valid access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub client_id: String,
    pub grant: Grant,
    pub expires_at: DateTime<Utc>,
}

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the Authorization header with a Bearer token is missing")]
    Missing,
    #[error("the bearer token is not valid")]
    Unknown,
    #[error("the bearer token has expired")]
    Expired,
}

/// A token endpoint request (form fields).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
}

/// A token endpoint answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token_type: String,
    pub access_token: String,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Every token an issuer handed out ([`TokenIssuer::issued`]).
#[derive(Debug, Clone, Default)]
pub struct IssuedTokens {
    pub access: Vec<String>,
    pub refresh: Vec<String>,
}

/// Issues and checks tokens for one emulator.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    clock: EmulatedClock,
    lifetime: Duration,
    /// client id → secret of the registered applications.
    clients: Arc<Mutex<HashMap<String, String>>>,
    access: Arc<Mutex<HashMap<String, Claims>>>,
    /// refresh token → client id.
    refresh: Arc<Mutex<HashMap<String, String>>>,
    /// Every refresh token ever granted, used or not, so a test can look for it where it
    /// must not be (logs, errors, the audit trail).
    granted_refresh: Arc<Mutex<Vec<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TokenIssuer {
    /// An issuer whose tokens live `lifetime` of emulated time (Entra ID: about an hour).
    pub fn new(clock: EmulatedClock, lifetime: Duration) -> Self {
        Self {
            clock,
            lifetime,
            clients: Default::default(),
            access: Default::default(),
            refresh: Default::default(),
            granted_refresh: Default::default(),
        }
    }

    /// Registers an application that may ask for tokens.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        lock(&self.clients).insert(client_id.to_owned(), secret.to_owned());
    }

    /// Creates a refresh token for `client_id`, as a user's consent would.
    pub fn grant_refresh_token(&self, client_id: &str) -> String {
        let token = format!("rt-{}", uuid::Uuid::new_v4().simple());
        lock(&self.refresh).insert(token.clone(), client_id.to_owned());
        lock(&self.granted_refresh).push(token.clone());
        token
    }

    /// Every secret this issuer ever handed out: access tokens (expired ones too) and refresh
    /// tokens (used ones too). For tests that prove a client never reveals them.
    pub fn issued(&self) -> IssuedTokens {
        IssuedTokens {
            access: lock(&self.access).keys().cloned().collect(),
            refresh: lock(&self.granted_refresh).clone(),
        }
    }

    fn mint(&self, client_id: &str, grant: Grant) -> TokenResponse {
        let token = format!("at-{}", uuid::Uuid::new_v4().simple());
        let claims = Claims {
            client_id: client_id.to_owned(),
            grant,
            expires_at: self.clock.now() + self.lifetime,
        };
        lock(&self.access).insert(token.clone(), claims);
        TokenResponse {
            token_type: "Bearer".into(),
            access_token: token,
            expires_in: self.lifetime.num_seconds(),
            refresh_token: (grant == Grant::RefreshToken)
                .then(|| self.grant_refresh_token(client_id)),
        }
    }

    /// Answers a token endpoint request: the token, or a status and an Entra-shaped error.
    pub fn token_endpoint(
        &self,
        request: &TokenRequest,
    ) -> Result<TokenResponse, (StatusCode, serde_json::Value)> {
        let error = |status, code: &str, description: &str| {
            (
                status,
                serde_json::json!({ "error": code, "error_description": description }),
            )
        };
        match request.grant_type.as_str() {
            "client_credentials" => {
                let (Some(id), Some(secret)) = (&request.client_id, &request.client_secret) else {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "AADSTS900144: client_id and client_secret are required.",
                    ));
                };
                if lock(&self.clients).get(id) != Some(secret) {
                    return Err(error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "AADSTS7000215: Invalid client secret provided.",
                    ));
                }
                Ok(self.mint(id, Grant::ClientCredentials))
            }
            "refresh_token" => {
                let Some(refresh) = &request.refresh_token else {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "AADSTS900144: refresh_token is required.",
                    ));
                };
                // A refresh token is single use: the answer carries its replacement.
                let Some(client_id) = lock(&self.refresh).remove(refresh) else {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "AADSTS70000: The provided refresh token is invalid or expired.",
                    ));
                };
                Ok(self.mint(&client_id, Grant::RefreshToken))
            }
            other => Err(error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("AADSTS70003: The grant type '{other}' is not supported."),
            )),
        }
    }

    /// Checks the request's `Authorization: Bearer` token.
    pub fn check(&self, headers: &HeaderMap) -> Result<Claims, TokenError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(TokenError::Missing)?;
        let claims = lock(&self.access)
            .get(token.trim())
            .cloned()
            .ok_or(TokenError::Unknown)?;
        if claims.expires_at <= self.clock.now() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[test]
    fn tokens_work_until_they_expire_and_secrets_are_checked() {
        let clock = EmulatedClock::new();
        let issuer = TokenIssuer::new(clock.clone(), Duration::hours(1));
        issuer.register_client("app", "secret");
        let wrong = TokenRequest {
            grant_type: "client_credentials".into(),
            client_id: Some("app".into()),
            client_secret: Some("nope".into()),
            ..Default::default()
        };
        assert_eq!(
            issuer.token_endpoint(&wrong).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        let good = TokenRequest {
            client_secret: Some("secret".into()),
            ..wrong
        };
        let token = issuer.token_endpoint(&good).unwrap();
        assert_eq!(
            issuer.check(&bearer(&token.access_token)).unwrap().grant,
            Grant::ClientCredentials
        );
        assert_eq!(issuer.check(&HeaderMap::new()), Err(TokenError::Missing));
        clock.advance(Duration::minutes(61));
        assert_eq!(
            issuer.check(&bearer(&token.access_token)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn refresh_tokens_are_single_use_and_delegated() {
        let issuer = TokenIssuer::new(EmulatedClock::new(), Duration::hours(1));
        let refresh = issuer.grant_refresh_token("app");
        let request = TokenRequest {
            grant_type: "refresh_token".into(),
            refresh_token: Some(refresh),
            ..Default::default()
        };
        let token = issuer.token_endpoint(&request).unwrap();
        assert!(token.refresh_token.is_some());
        assert_eq!(
            issuer.check(&bearer(&token.access_token)).unwrap().grant,
            Grant::RefreshToken
        );
        assert_eq!(
            issuer.token_endpoint(&request).unwrap_err().1["error"],
            "invalid_grant"
        );
    }
}
