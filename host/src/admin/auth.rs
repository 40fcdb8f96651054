//! Bearer-token authentication of the admin API.
//!
//! Every route under `/admin/v1` goes through [`require_bearer`]: the `Authorization` header
//! must be the `Bearer` scheme (case-insensitive, RFC 7235) followed by exactly the admin
//! token, compared in constant time ([`crate::config::Secret::matches`]). Anything else (no
//! header, another scheme, a prefix or extension of the token) is 401 with the same body, so
//! the answer tells an attacker nothing about how close a guess was.
//!
//! [`check_token`] is the start-up rule: a token shorter than [`MIN_TOKEN_LEN`] characters is
//! refused before anything listens, since the admin API deploys code into the host and a short
//! token can be guessed or brute-forced.

use super::AdminState;
use crate::config::Secret;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The shortest admin token the host accepts: 32 characters, what `openssl rand -hex 16`
/// prints (128 bits); `openssl rand -hex 32` is what the documentation suggests.
pub const MIN_TOKEN_LEN: usize = 32;

/// Refuses an admin token shorter than [`MIN_TOKEN_LEN`] characters, saying how to make one.
/// The message never contains the token.
pub fn check_token(token: &Secret) -> anyhow::Result<()> {
    let len = token.expose().chars().count();
    if len < MIN_TOKEN_LEN {
        anyhow::bail!(
            "the admin token is {len} characters long; it must be at least {MIN_TOKEN_LEN}: make one with `openssl rand -hex 32` and put it in COSELL_ADMIN_TOKEN (or the file admin.token_file names)"
        );
    }
    Ok(())
}

/// Lets the request through only with `Authorization: Bearer <the admin token>`.
pub(super) async fn require_bearer(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    match presented {
        Some(token) if state.token.matches(token.trim()) => next.run(request).await,
        _ => {
            discard(request.into_body(), super::body_limit(&state)).await;
            let mut response = (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({
                    "error": "missing or wrong admin token: send `Authorization: Bearer <token>` with the token the host was started with"
                })),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Reads and drops what is left of a refused request's body, at most `limit` bytes. Answering
/// before a client has finished sending (a deploy uploads megabytes) makes the server close a
/// socket with unread data, which resets the connection, and the client would see "connection
/// reset" instead of the 401 that tells it what is wrong. Nothing is kept, and a body over the
/// limit is cut off like any other, and so is one that trickles in for longer than
/// [`DISCARD_TIME`] (an unauthenticated client must not hold a connection open).
pub(super) async fn discard(body: Body, limit: usize) {
    let drain = async {
        let mut body = std::pin::pin!(body);
        let mut read = 0;
        while let Some(Ok(frame)) =
            std::future::poll_fn(|cx| HttpBody::poll_frame(body.as_mut(), cx)).await
        {
            read += frame.data_ref().map_or(0, |data| data.len());
            if read > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// How long a refused request's body is read before the 401 goes out regardless.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_admin_tokens_are_refused_with_how_to_make_one() {
        let short = Secret::new("local-dev-token");
        let error = check_token(&short).unwrap_err().to_string();
        assert!(error.contains("at least 32"), "{error}");
        assert!(error.contains("openssl rand -hex 32"), "{error}");
        assert!(!error.contains("local-dev-token"), "{error}");
        assert!(check_token(&Secret::new("a".repeat(31))).is_err());
        assert!(check_token(&Secret::new("a".repeat(32))).is_ok());
    }
}
