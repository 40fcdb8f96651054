//! OAuth bearer tokens, as Microsoft Entra ID issues them for both services (emulated).
//!
//! The token endpoint takes `application/x-www-form-urlencoded` requests with
//! `grant_type=client_credentials` (client id + secret: an app-only token, what Dataverse
//! application users get), `grant_type=refresh_token` (a delegated App+User token, what the
//! Partner Center Referrals API requires) or the device-code grant ([`super::device_code`]: a
//! user's first sign-in). Tokens are opaque random strings here (the real ones are JWTs;
//! clients must not look inside either) and expire after the configured lifetime of emulated
//! time. Errors use Entra ID's `{"error", "error_description"}` shape.
//!
//! **Audience.** Every access token is for one resource, named by the request: `resource`
//! (v1 endpoint) or the first URL in `scope` (v2, e.g. `https://api.partner.microsoft.com/.default`);
//! the resource is the URL's origin. A request naming neither is refused with 400
//! (`AADSTS900144`), as Entra ID refuses it; each API then refuses tokens for another
//! audience (see [`Claims::audience`]). Refresh tokens are not bound to a resource: one
//! (rotating) refresh token redeems access tokens for any resource, as Entra ID's
//! multi-resource refresh tokens do.
//!
//! **Users.** Delegated tokens belong to a user: the one who completed the device-code
//! sign-in, or [`DEFAULT_USER`] for refresh tokens handed out by
//! [`TokenIssuer::grant_refresh_token`]. When `scope` contains `openid`, the answer carries an
//! `id_token`: an unsigned JWT (`alg: none`) whose `preferred_username` and `name` are the user.

use super::clock::EmulatedClock;
use super::device_code::{DeviceCodes, Poll};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The user of delegated tokens obtained without a sign-in (from
/// [`TokenIssuer::grant_refresh_token`]).
pub const DEFAULT_USER: &str = "cosell.user@fourthcoffee.example";

/// The device-code grant type (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How a token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// App-only (client id + secret).
    ClientCredentials,
    /// Delegated App+User, from a refresh token or a device-code sign-in.
    RefreshToken,
}

/// What a valid access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub client_id: String,
    pub grant: Grant,
    pub expires_at: DateTime<Utc>,
    /// The resource the token is for (an origin, e.g. `https://api.partner.microsoft.com`).
    pub audience: String,
    /// The signed-in user (delegated tokens only).
    pub user: Option<String>,
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
    #[serde(default)]
    pub device_code: Option<String>,
}

/// A token endpoint answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token_type: String,
    pub access_token: String,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When `scope` asked for `openid`: who signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
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
    /// refresh token → (client id, user).
    refresh: Arc<Mutex<HashMap<String, (String, String)>>>,
    /// Every refresh token ever granted, used or not, so a test can look for it where it
    /// must not be (logs, errors, the audit trail).
    granted_refresh: Arc<Mutex<Vec<String>>>,
    /// Device-code sign-ins in progress.
    device: DeviceCodes,
    /// Requests the token endpoint has answered, granted or refused: a test can tell a client
    /// that gives up on a refusal from one that asks again.
    endpoint_requests: Arc<std::sync::atomic::AtomicU64>,
}

/// An Entra-shaped error answer of the token endpoint.
pub type EndpointError = (StatusCode, serde_json::Value);

/// `{"error": code, "error_description": description}` with `status`.
pub fn endpoint_error(status: StatusCode, code: &str, description: &str) -> EndpointError {
    (
        status,
        serde_json::json!({ "error": code, "error_description": description }),
    )
}

/// The resource a token request names: `resource`, else the first URL among the `scope`
/// values; the origin of either (`https://api.partner.microsoft.com/.default` names
/// `https://api.partner.microsoft.com`).
pub fn audience_of(request: &TokenRequest) -> Option<String> {
    let candidate = request
        .resource
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| {
            request
                .scope
                .as_deref()?
                .split_whitespace()
                .find(|s| s.starts_with("https://") || s.starts_with("http://"))
        })?;
    let (scheme, rest) = candidate.split_once("://")?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

/// The answer to a token request that names no resource.
fn missing_resource() -> EndpointError {
    endpoint_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "AADSTS900144: The request body must contain the following parameter: 'scope' \
         (v2.0 endpoint) or 'resource' (v1 endpoint), naming the API the token is for.",
    )
}

fn wants_id_token(request: &TokenRequest) -> bool {
    request
        .scope
        .as_deref()
        .is_some_and(|s| s.split_whitespace().any(|v| v == "openid"))
}

/// An unsigned JWT naming `user`, as an `id_token` (clients read it, never trust it for auth).
fn id_token(client_id: &str, user: &str, issued: DateTime<Utc>) -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let header = b64(serde_json::json!({"alg": "none", "typ": "JWT"}));
    let payload = b64(serde_json::json!({
        "aud": client_id,
        "iat": issued.timestamp(),
        "exp": (issued + Duration::hours(1)).timestamp(),
        "preferred_username": user,
        "name": user,
        "sub": user,
    }));
    format!("{header}.{payload}.")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TokenIssuer {
    /// An issuer whose tokens live `lifetime` of emulated time (Entra ID: about an hour).
    pub fn new(clock: EmulatedClock, lifetime: Duration) -> Self {
        Self {
            device: DeviceCodes::new(clock.clone()),
            clock,
            lifetime,
            clients: Default::default(),
            access: Default::default(),
            refresh: Default::default(),
            granted_refresh: Default::default(),
            endpoint_requests: Default::default(),
        }
    }

    /// How many requests the token endpoint has answered, granted or refused.
    pub fn endpoint_requests(&self) -> u64 {
        self.endpoint_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The device-code sign-ins (start, approve, deny).
    pub fn device_codes(&self) -> &DeviceCodes {
        &self.device
    }

    /// Registers an application that may ask for tokens.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        lock(&self.clients).insert(client_id.to_owned(), secret.to_owned());
    }

    /// Creates a refresh token for `client_id` of [`DEFAULT_USER`], as a user's consent would.
    pub fn grant_refresh_token(&self, client_id: &str) -> String {
        self.grant_refresh_token_for(client_id, DEFAULT_USER)
    }

    /// Creates a refresh token for `client_id` of `user`.
    pub fn grant_refresh_token_for(&self, client_id: &str, user: &str) -> String {
        let token = format!("rt-{}", uuid::Uuid::new_v4().simple());
        lock(&self.refresh).insert(token.clone(), (client_id.to_owned(), user.to_owned()));
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

    fn mint(
        &self,
        client_id: &str,
        grant: Grant,
        audience: String,
        user: Option<&str>,
        request: &TokenRequest,
    ) -> TokenResponse {
        let token = format!("at-{}", uuid::Uuid::new_v4().simple());
        let now = self.clock.now();
        let claims = Claims {
            client_id: client_id.to_owned(),
            grant,
            expires_at: now + self.lifetime,
            audience,
            user: user.map(str::to_owned),
        };
        lock(&self.access).insert(token.clone(), claims);
        TokenResponse {
            token_type: "Bearer".into(),
            access_token: token,
            expires_in: self.lifetime.num_seconds(),
            refresh_token: user.map(|u| self.grant_refresh_token_for(client_id, u)),
            id_token: user
                .filter(|_| wants_id_token(request))
                .map(|u| id_token(client_id, u, now)),
        }
    }

    /// Checks `client_secret` when the request sends one (a confidential client's
    /// device-code and refresh-token requests may; a wrong one is refused).
    fn check_optional_secret(&self, request: &TokenRequest) -> Result<(), EndpointError> {
        let (Some(id), Some(secret)) = (&request.client_id, &request.client_secret) else {
            return Ok(());
        };
        if lock(&self.clients).get(id) != Some(secret) {
            return Err(endpoint_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            ));
        }
        Ok(())
    }

    /// Answers a token endpoint request: the token, or a status and an Entra-shaped error.
    pub fn token_endpoint(&self, request: &TokenRequest) -> Result<TokenResponse, EndpointError> {
        self.endpoint_requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let error = endpoint_error;
        let known_grant = ["client_credentials", "refresh_token", DEVICE_CODE_GRANT]
            .contains(&request.grant_type.as_str());
        if !known_grant {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!(
                    "AADSTS70003: The grant type '{}' is not supported.",
                    request.grant_type
                ),
            ));
        }
        if request.grant_type == DEVICE_CODE_GRANT {
            return self.redeem_device_code(request);
        }
        let Some(audience) = audience_of(request) else {
            return Err(missing_resource());
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
                Ok(self.mint(id, Grant::ClientCredentials, audience, None, request))
            }
            "refresh_token" => {
                let Some(refresh) = &request.refresh_token else {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "AADSTS900144: refresh_token is required.",
                    ));
                };
                self.check_optional_secret(request)?;
                // A refresh token is single use: the answer carries its replacement.
                let Some((client_id, user)) = lock(&self.refresh).remove(refresh) else {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "AADSTS70000: The provided refresh token is invalid or expired.",
                    ));
                };
                Ok(self.mint(
                    &client_id,
                    Grant::RefreshToken,
                    audience,
                    Some(&user),
                    request,
                ))
            }
            other => unreachable!("grant type {other} was checked above"),
        }
    }

    /// The device-code grant: the tokens are for the scope the sign-in started with.
    fn redeem_device_code(&self, request: &TokenRequest) -> Result<TokenResponse, EndpointError> {
        self.check_optional_secret(request)?;
        let (Some(client_id), Some(code)) = (&request.client_id, &request.device_code) else {
            return Err(endpoint_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "AADSTS900144: client_id and device_code are required.",
            ));
        };
        match self.device.poll(client_id, code) {
            Poll::Approved(user, scope) => {
                let granted = TokenRequest {
                    scope: Some(scope),
                    ..request.clone()
                };
                let audience = audience_of(&granted).ok_or_else(missing_resource)?;
                Ok(self.mint(
                    client_id,
                    Grant::RefreshToken,
                    audience,
                    Some(&user),
                    &granted,
                ))
            }
            Poll::Refused(code, description) => {
                Err(endpoint_error(StatusCode::BAD_REQUEST, code, &description))
            }
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
            scope: Some("https://example.crm.dynamics.com/.default".into()),
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
            resource: Some("https://api.partner.microsoft.com".into()),
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

    #[test]
    fn a_request_must_name_its_resource_and_the_token_records_it() {
        let issuer = TokenIssuer::new(EmulatedClock::new(), Duration::hours(1));
        let mut request = TokenRequest {
            grant_type: "refresh_token".into(),
            refresh_token: Some(issuer.grant_refresh_token("app")),
            ..Default::default()
        };
        let (status, body) = issuer.token_endpoint(&request).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_request");
        request.scope =
            Some("https://api.partnercenter.microsoft.com/.default offline_access".into());
        let token = issuer.token_endpoint(&request).unwrap();
        let claims = issuer.check(&bearer(&token.access_token)).unwrap();
        assert_eq!(claims.audience, "https://api.partnercenter.microsoft.com");
        assert_eq!(claims.user.as_deref(), Some(DEFAULT_USER));
        assert!(token.id_token.is_none(), "no openid, no id_token");
    }
}
