//! Typed errors of the Partner Center client, each saying what to do about it.

use std::time::Duration;

/// Why a Partner Center call failed.
#[derive(Debug, thiserror::Error)]
pub enum PartnerCenterError {
    /// 412: the referral changed since its eTag was read.
    #[error(
        "Partner Center refused the write to referral {id}: its eTag changed since it was read \
         ({message}); fetch the referral again and reapply the change"
    )]
    PreconditionFailed {
        /// The referral's id.
        id: String,
        /// Partner Center's error message.
        message: String,
    },
    /// 404.
    #[error(
        "Partner Center has no {0}; check the id (it may have been deleted or belong to another partner)"
    )]
    NotFound(String),
    /// 409: the resource exists already (e.g. the tenant's one webhook registration).
    #[error("Partner Center answered 409 Conflict: {0}")]
    Conflict(String),
    /// 400 (and other refused requests).
    #[error("Partner Center rejected the request: {0}; fix the request and send it again")]
    BadRequest(String),
    /// The token endpoint refused the credentials, or the API still answered 401 after a refresh.
    #[error(
        "Partner Center authentication failed: {0}; check the client id, client secret and \
         token_url (a refused refresh token needs a new sign-in: `cosell partner-center login`)"
    )]
    Unauthorized(String),
    /// The token endpoint refused the refresh token (revoked, expired or already used).
    #[error("Partner Center refused the refresh token ({message}); sign in again with `{command}`")]
    SignInRequired {
        /// The token endpoint's error message.
        message: String,
        /// The command that signs in again, e.g. `cosell partner-center login`.
        command: String,
    },
    /// 403: the token is valid but not allowed (e.g. app-only on the Referrals API).
    #[error(
        "Partner Center refused access: {0}; the Referrals API needs a delegated (App+User) \
         token of a user with a co-sell role"
    )]
    Forbidden(String),
    /// 429 still after every retry.
    #[error(
        "Partner Center kept throttling (429) after every retry{}; send fewer requests or try later",
        .retry_after.map(|d| format!(", last Retry-After {}s", d.as_secs())).unwrap_or_default()
    )]
    Throttled {
        /// The last `Retry-After` Partner Center sent, if it sent one.
        retry_after: Option<Duration>,
    },
    /// 5xx still after every retry.
    #[error("Partner Center answered {status} after every retry: {message}; try again later")]
    Server {
        /// The HTTP status of the last answer.
        status: u16,
        /// The error message of the last answer's body.
        message: String,
    },
    /// No answer: connection refused or dropped, timeout, TLS.
    #[error(
        "could not reach Partner Center ({0}); check base_url, webhooks_url and token_url and \
         the network, then retry"
    )]
    Transport(String),
    /// A write (POST) whose answer was lost (a timeout, a dropped connection, a 5xx other than a
    /// bodiless 503): it may or may not have been applied, so it must be looked up, never
    /// sent again blindly.
    #[error(
        "Partner Center may have applied the write, but its answer was lost ({0}); a create \
         is looked up before it is sent again"
    )]
    AnswerLost(String),
    /// An answer this client does not understand.
    #[error("Partner Center sent an unexpected answer: {0}")]
    InvalidResponse(String),
}

pub(crate) use crate::connections::message_of;
