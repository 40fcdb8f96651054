//! The first sign-in to Partner Center: the OAuth 2.0 device authorization grant (RFC 8628)
//! as Microsoft Entra ID runs it.
//!
//! 1. [`DeviceLogin::start`] posts `client_id` and `scope` to
//!    `{tenant}/oauth2/v2.0/devicecode` and gets a user code, a verification URI and a message
//!    to show the user.
//! 2. [`DeviceLogin::finish`] polls `{tenant}/oauth2/v2.0/token` with
//!    `grant_type=urn:ietf:params:oauth:grant-type:device_code` every `interval` seconds:
//!    `authorization_pending` keeps polling, `slow_down` adds 5 s to the interval (RFC 8628
//!    §3.5), `expired_token` and `access_denied` end the sign-in with an error saying what to
//!    do. The answer's refresh token (the scope asks for `offline_access`) is what cosell keeps;
//!    its `id_token` (the scope asks for `openid`) names the user.
//!
//! Both endpoints are derived from `[partner_center] token_url` (v1 or v2.0: the tenant part is
//! kept). The `id_token` is read, not verified: it comes straight from the token endpoint over
//! the connection cosell opened (OpenID Connect Core §3.1.3.7 allows this), and it is used only
//! to show whose sign-in it is.

use super::REFERRALS_RESOURCE;
use crate::connections::{oauth, retry};
use crate::secret::Secret;
use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// The device-code grant type.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// What the sign-in asks for: Referrals API access, a refresh token, and the user's name.
pub fn login_scope() -> String {
    format!("{REFERRALS_RESOURCE}/.default offline_access openid profile")
}

/// The sign-in in progress: what to show the user, and the code to poll with.
#[derive(Debug)]
pub struct DevicePrompt {
    /// The text Entra ID wrote for the user (where to go, which code to enter).
    pub message: String,
    /// The code the user enters on the verification page.
    pub user_code: String,
    /// The page where the user signs in and enters `user_code`.
    pub verification_uri: String,
    device_code: Secret,
    expires_in: Duration,
    interval: Duration,
}

/// A completed sign-in.
pub struct SignedIn {
    /// The delegated refresh token (single use; rotates on every redemption).
    pub refresh_token: Secret,
    /// Who signed in (`preferred_username`, `upn`, `email` or `name` of the `id_token`).
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    expires_in: serde_json::Value,
    interval: Option<serde_json::Value>,
    message: Option<String>,
}

fn seconds(value: &serde_json::Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The device-code sign-in against one tenant's endpoints.
pub struct DeviceLogin {
    http: reqwest::Client,
    devicecode_url: String,
    token_url: String,
    client_id: String,
    client_secret: Option<Secret>,
}

impl DeviceLogin {
    /// The sign-in for the application `client_id` (with its secret, for a confidential
    /// client) at the tenant of `token_url`.
    pub fn new(token_url: &str, client_id: &str, client_secret: Option<Secret>) -> Result<Self> {
        let Some(at) = token_url.find("/oauth2/") else {
            bail!(
                "[partner_center] token_url {token_url} does not look like an Entra ID token endpoint \
                 (https://login.microsoftonline.com/<tenant>/oauth2/token); fix it, then sign in again"
            );
        };
        let prefix = &token_url[..at];
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?,
            devicecode_url: format!("{prefix}/oauth2/v2.0/devicecode"),
            token_url: format!("{prefix}/oauth2/v2.0/token"),
            client_id: client_id.to_owned(),
            client_secret,
        })
    }

    /// Starts the sign-in: the code and the message to show the user.
    pub async fn start(&self) -> Result<DevicePrompt> {
        let scope = login_scope();
        let form = [
            ("client_id", self.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        let (status, body) = post_form(&self.http, &self.devicecode_url, &form).await?;
        if !status.is_success() {
            bail!(
                "Entra ID refused to start the sign-in ({status}: {}); check [partner_center] \
                 client_id and token_url, and that the application allows public client flows",
                crate::connections::message_of(&body)
            );
        }
        let answer: DeviceAnswer = serde_json::from_str(&body)
            .context("the device authorization answer is not what RFC 8628 describes")?;
        let expires_in = Duration::from_secs(seconds(&answer.expires_in).unwrap_or(900));
        let interval = Duration::from_secs(
            answer
                .interval
                .as_ref()
                .and_then(seconds)
                .unwrap_or(5)
                .max(1),
        );
        Ok(DevicePrompt {
            message: answer.message.unwrap_or_else(|| {
                format!(
                    "To sign in, open {} and enter the code {}.",
                    answer.verification_uri, answer.user_code
                )
            }),
            user_code: answer.user_code,
            verification_uri: answer.verification_uri,
            device_code: Secret::new(answer.device_code),
            expires_in,
            interval,
        })
    }

    /// Polls the token endpoint until the user has signed in (or declined, or the code
    /// expired), honouring `interval` and `slow_down`.
    pub async fn finish(&self, prompt: &DevicePrompt) -> Result<SignedIn> {
        let deadline = Instant::now() + prompt.expires_in;
        let mut interval = prompt.interval;
        loop {
            tokio::time::sleep(interval).await;
            if Instant::now() > deadline {
                bail!(
                    "the sign-in code {} expired before the sign-in was completed; run the \
                     command again and finish the sign-in within {} minutes",
                    prompt.user_code,
                    prompt.expires_in.as_secs() / 60
                );
            }
            let mut form = vec![
                ("grant_type", GRANT_TYPE),
                ("client_id", self.client_id.as_str()),
                ("device_code", prompt.device_code.expose()),
            ];
            if let Some(secret) = &self.client_secret {
                form.push(("client_secret", secret.expose()));
            }
            let (status, body) = post_form(&self.http, &self.token_url, &form).await?;
            if status.is_success() {
                let token = oauth::parse(&body).map_err(|e| {
                    anyhow::anyhow!("the token endpoint's answer is not a token: {e:?}")
                })?;
                let refresh_token = token.refresh_token.context(
                    "the sign-in gave no refresh token (the application must be allowed \
                     offline_access); cosell cannot keep a sign-in without one",
                )?;
                return Ok(SignedIn {
                    refresh_token,
                    user: token.id_token.as_deref().and_then(user_of_id_token),
                });
            }
            match oauth::oauth_error_code(&body).as_deref() {
                Some("authorization_pending") => {}
                Some("slow_down") => interval += Duration::from_secs(5),
                Some("expired_token") => bail!(
                    "the sign-in code {} expired before the sign-in was completed; run the \
                     command again",
                    prompt.user_code
                ),
                Some("access_denied") | Some("authorization_declined") => bail!(
                    "the sign-in was declined; run the command again and accept it (the user \
                     needs a Partner Center Referrals admin or Referrals user role)"
                ),
                _ => bail!(
                    "Entra ID refused the sign-in ({status}: {}); check [partner_center] \
                     client_id and client_secret, then run the command again",
                    crate::connections::message_of(&body)
                ),
            }
        }
    }
}

/// Posts `form`, retrying a few times after 429, 5xx or no answer; answers the last status and
/// body.
async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(reqwest::StatusCode, String)> {
    const RETRIES: u32 = 3;
    let mut attempt = 0;
    loop {
        let wait = match http.post(url).form(form).send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry::retry_after(response.headers());
                let body = response
                    .text()
                    .await
                    .with_context(|| format!("reading the answer of {url}"))?;
                let retryable = status.as_u16() == 429 || status.is_server_error();
                if !retryable || attempt >= RETRIES {
                    return Ok((status, body));
                }
                retry_after.unwrap_or_else(|| retry::backoff(attempt))
            }
            Err(e) if attempt >= RETRIES => {
                return Err(e).with_context(|| format!("could not reach {url}"));
            }
            Err(_) => retry::backoff(attempt),
        };
        attempt += 1;
        tokio::time::sleep(wait).await;
    }
}

/// The user an `id_token` names, read from its (unverified) payload.
pub fn user_of_id_token(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    ["preferred_username", "upn", "email", "name"]
        .iter()
        .find_map(|k| claims[*k].as_str().filter(|v| !v.is_empty()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_read_from_the_id_token_payload() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"name":"Alice","preferred_username":"alice@contoso.example"}"#)
        );
        assert_eq!(
            user_of_id_token(&token).as_deref(),
            Some("alice@contoso.example")
        );
        assert_eq!(user_of_id_token("not a jwt"), None);
    }

    #[test]
    fn endpoints_keep_the_tenant_of_either_token_url() {
        for url in [
            "https://login.microsoftonline.com/contoso/oauth2/token",
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
        ] {
            let login = DeviceLogin::new(url, "app", None).unwrap();
            assert_eq!(
                login.devicecode_url,
                "https://login.microsoftonline.com/contoso/oauth2/v2.0/devicecode"
            );
            assert_eq!(
                login.token_url,
                "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
            );
        }
        assert!(DeviceLogin::new("https://example.com/token", "app", None).is_err());
    }
}
