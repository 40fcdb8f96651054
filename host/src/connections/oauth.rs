//! OAuth 2.0 token endpoint calls shared by the clients: one form POST to the endpoint (retrying
//! 429, 5xx and connection errors), the `access_token`/`expires_in`/`refresh_token` answer, and
//! [`CachedToken`], an access token kept until [`REFRESH_MARGIN`] before it expires.
//!
//! Which grant is sent (refresh token for Partner Center, client credentials for Dataverse) and
//! how a failure reads is up to each client: [`TokenError`] only says what happened. Tokens are
//! held as [`Secret`] and never logged.

use super::telemetry::Telemetry;
use super::{message_of, retry};
use crate::secret::Secret;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long before its expiry an access token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The lifetime assumed when the endpoint sends no usable `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// A token endpoint's answer.
pub struct Token {
    /// The access token.
    pub access_token: Secret,
    /// How long it lives from now (`expires_in`).
    pub lifetime: Duration,
    /// The replacement refresh token, when the endpoint sent one.
    pub refresh_token: Option<Secret>,
    /// The OpenID Connect `id_token` (a JWT naming the user), when `openid` was asked for.
    pub id_token: Option<String>,
}

/// Why the token endpoint gave no token; each client turns it into its own error.
#[derive(Debug)]
pub enum TokenError {
    /// A 4xx other than 429: the credentials, grant or tenant were refused.
    Rejected {
        /// The HTTP status of the refusal.
        status: reqwest::StatusCode,
        /// The OAuth `error` code, e.g. `invalid_grant` (a refused refresh token).
        code: Option<String>,
        /// The endpoint's error message (`error_description`, or the body itself).
        message: String,
    },
    /// 429 still after every retry.
    Throttled {
        /// The last `Retry-After` the endpoint sent, if it sent one.
        retry_after: Option<Duration>,
    },
    /// 5xx still after every retry.
    Server {
        /// The HTTP status of the last answer.
        status: u16,
        /// The error message of the last answer's body.
        message: String,
    },
    /// No answer (after every retry) or an unusable request.
    Transport(String),
    /// A success whose body is not a token.
    InvalidResponse(String),
}

impl TokenError {
    /// What happened, for readiness and logs (the endpoint's own message; never a secret).
    pub fn describe(&self) -> String {
        match self {
            TokenError::Rejected {
                status, message, ..
            } => format!("the token endpoint refused it ({status}): {message}"),
            TokenError::Throttled { .. } => "the token endpoint kept answering 429".into(),
            TokenError::Server { status, message } => {
                format!("the token endpoint kept failing ({status}): {message}")
            }
            TokenError::Transport(m) => format!("no answer from the token endpoint: {m}"),
            TokenError::InvalidResponse(m) => m.clone(),
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    /// Entra ID's v1 endpoint sends a string, v2 a number.
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

/// Where tokens come from and how often a failed token request is retried.
#[derive(Clone)]
pub struct TokenEndpoint {
    /// The endpoint, e.g. `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    pub url: String,
    /// Retries after a 429, a 5xx or a connection error.
    pub max_retries: u32,
    /// Where each exchange (operation `token`) and each request's result are reported: the
    /// client's own.
    pub telemetry: Arc<Telemetry>,
}

impl TokenEndpoint {
    /// Posts the form-encoded grant `form`, retrying 429 (after `Retry-After`), 5xx and
    /// connection errors with backoff (a token request has no side effect worth guarding).
    pub async fn request(
        &self,
        http: &reqwest::Client,
        form: &[(&str, &str)],
    ) -> Result<Token, TokenError> {
        let mut attempt = 0;
        loop {
            let exchange = self.telemetry.start("token");
            let sent = http.post(&self.url).form(form).send().await;
            if sent.is_err() {
                exchange.failed();
            }
            let wait = match sent {
                Err(e) if e.is_builder() => return Err(TokenError::Transport(e.to_string())),
                Err(e) if attempt >= self.max_retries => {
                    return Err(TokenError::Transport(format!(
                        "token endpoint {}: {e}",
                        self.url
                    )));
                }
                Err(_) => retry::backoff(attempt),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = response.text().await;
                    match &body {
                        Ok(_) => exchange.answered(status.as_u16()),
                        Err(_) => exchange.failed(),
                    }
                    let body = body.map_err(|e| TokenError::Transport(e.to_string()))?;
                    if status.is_success() {
                        return parse(&body);
                    }
                    let retryable = status.as_u16() == 429 || status.is_server_error();
                    if !retryable {
                        return Err(TokenError::Rejected {
                            status,
                            code: oauth_error_code(&body),
                            message: message_of(&body),
                        });
                    }
                    if attempt >= self.max_retries {
                        return Err(if status.as_u16() == 429 {
                            TokenError::Throttled {
                                retry_after: retry::retry_after(&headers),
                            }
                        } else {
                            TokenError::Server {
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
                url = %self.url,
                "retrying a token request"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

impl TokenEndpoint {
    /// The token in `cache` while it is usable (see [`CachedToken::usable`]); otherwise a new
    /// one from [`request`](Self::request) with `form`, which replaces the cached one. Answers
    /// the access token and the rotated refresh token, if the endpoint sent one.
    pub async fn cached(
        &self,
        http: &reqwest::Client,
        cache: &mut Option<CachedToken>,
        rejected: Option<&Secret>,
        form: &[(&str, &str)],
    ) -> Result<(Secret, Option<Secret>), TokenError> {
        if let Some(token) = cache.as_ref().and_then(|c| c.usable(rejected)) {
            return Ok((token, None));
        }
        let answer = self.request(http, form).await;
        match &answer {
            Ok(_) => self.telemetry.token(Ok(())),
            Err(error) => self.telemetry.token(Err(&error.describe())),
        }
        let answer = answer?;
        *cache = Some(CachedToken::new(
            answer.access_token.clone(),
            answer.lifetime,
        ));
        tracing::debug!(
            lifetime_secs = answer.lifetime.as_secs(),
            url = %self.url,
            "access token fetched"
        );
        Ok((answer.access_token, answer.refresh_token))
    }
}

/// The `error` member of an OAuth error answer (RFC 6749 §5.2).
pub fn oauth_error_code(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value["error"].as_str().map(str::to_owned)
}

/// A token endpoint's successful answer, parsed.
pub fn parse(body: &str) -> Result<Token, TokenError> {
    let answer: Answer = serde_json::from_str(body).map_err(|e| {
        TokenError::InvalidResponse(format!("the token endpoint's answer is not a token: {e}"))
    })?;
    let lifetime = match &answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .map(Duration::from_secs)
    .unwrap_or(DEFAULT_LIFETIME);
    Ok(Token {
        access_token: Secret::new(answer.access_token),
        lifetime,
        refresh_token: answer.refresh_token.map(Secret::new),
        id_token: answer.id_token,
    })
}

/// An access token and when to replace it ([`REFRESH_MARGIN`] before it expires).
pub struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

impl CachedToken {
    /// Caches `token`, which lives `lifetime` from now.
    pub fn new(token: Secret, lifetime: Duration) -> Self {
        Self {
            token,
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
        }
    }

    /// The token while it is fresh and is not `rejected` (a token the API just refused with
    /// 401); `None` when a new one is needed.
    pub fn usable(&self, rejected: Option<&Secret>) -> Option<Secret> {
        let refused = rejected.is_some_and(|r| r.expose() == self.token.expose());
        (!refused && Instant::now() < self.refresh_at).then(|| self.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_may_be_a_number_or_a_string() {
        let t = parse(r#"{"access_token":"a","expires_in":3599}"#).unwrap();
        assert_eq!(t.lifetime, Duration::from_secs(3599));
        let t = parse(r#"{"access_token":"a","expires_in":"3600","refresh_token":"r"}"#).unwrap();
        assert_eq!(t.lifetime, Duration::from_secs(3600));
        assert_eq!(t.refresh_token.unwrap().expose(), "r");
        assert!(parse(r#"{"error":"x"}"#).is_err());
    }

    #[test]
    fn a_cached_token_is_replaced_before_expiry_or_after_a_401() {
        let fresh = CachedToken::new(Secret::new("t"), Duration::from_secs(3600));
        assert_eq!(fresh.usable(None).unwrap().expose(), "t");
        assert!(fresh.usable(Some(&Secret::new("t"))).is_none());
        assert!(fresh.usable(Some(&Secret::new("older"))).is_some());
        let closing = CachedToken::new(Secret::new("t"), REFRESH_MARGIN);
        assert!(closing.usable(None).is_none());
    }
}
