//! Typed errors of the Dataverse client, each saying what to do about it.

use std::time::Duration;

/// Why a Dataverse call failed.
#[derive(Debug, thiserror::Error)]
pub enum DataverseError {
    /// 404: the row (or table, or action) does not exist.
    #[error(
        "Dataverse has no {0}; check the entity set name and the id or key (the row may have been deleted)"
    )]
    NotFound(String),
    /// 412: the row changed since its `@odata.etag` was read, or the key is taken.
    #[error(
        "Dataverse refused the conditional write: {0}; read the row again (for its current \
         @odata.etag) and reapply the change"
    )]
    PreconditionFailed(String),
    /// 400 (and other refused requests): `code` is Dataverse's error code, e.g. `0x80060888`.
    #[error(
        "Dataverse rejected the request ({code}): {message}; fix the request (column names, \
         values, lookups) and send it again"
    )]
    BadRequest {
        /// Dataverse's error code, e.g. `0x80060888`.
        code: String,
        /// Dataverse's error message.
        message: String,
    },
    /// The token endpoint refused the credentials, or the Web API still answered 401 after a
    /// new token.
    #[error(
        "Dataverse authentication failed: {0}; check client_id and client_secret (and that the \
         secret has not expired), the tenant in token_url, the scope (default {{url}}/.default), \
         and that the app is an application user of the environment"
    )]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error(
        "Dataverse refused access: {0}; give the application user a security role with \
         privileges on this table"
    )]
    Forbidden(String),
    /// 429 still after every retry (service protection limits).
    #[error(
        "Dataverse kept throttling (429, service protection limits) after every retry{}; lower \
         max_concurrency or the request rate, or try later",
        .retry_after.map(|d| format!(", last Retry-After {}s", d.as_secs())).unwrap_or_default()
    )]
    Throttled {
        /// The last `Retry-After` Dataverse sent, if it sent one.
        retry_after: Option<Duration>,
    },
    /// 5xx still after every retry.
    #[error("Dataverse answered {status} after every retry: {message}; try again later")]
    Server {
        /// The HTTP status of the last answer.
        status: u16,
        /// What failed, with the error message of the answer's body.
        message: String,
    },
    /// No answer: connection refused or dropped, timeout, TLS.
    #[error("could not reach Dataverse ({0}); check url and token_url and the network, then retry")]
    Transport(String),
    /// An answer this client does not understand.
    #[error("Dataverse sent an unexpected answer: {0}")]
    InvalidResponse(String),
}

impl DataverseError {
    /// Whether trying the same call later may succeed: throttling, 5xx and transport errors.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Server { .. } | Self::Transport(_)
        )
    }

    /// Whether the request may have been carried out although it failed: no answer (a
    /// timeout, a dropped connection) or a server error. A create that failed so is looked up
    /// before it is sent again ([`super::creates`]).
    pub fn answer_lost(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Transport(_))
    }
}

/// The `error.code` of a Dataverse error body (often empty).
pub(crate) fn code_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_throttling_server_and_transport() {
        assert!(DataverseError::Throttled { retry_after: None }.is_transient());
        assert!(
            DataverseError::Server {
                status: 503,
                message: String::new()
            }
            .is_transient()
        );
        assert!(DataverseError::Transport("reset".into()).is_transient());
        assert!(!DataverseError::NotFound("x".into()).is_transient());
        assert!(!DataverseError::PreconditionFailed("x".into()).is_transient());
    }

    #[test]
    fn codes_come_from_the_error_body() {
        assert_eq!(
            code_of(r#"{"error":{"code":"0x80060888","message":"m"}}"#),
            "0x80060888"
        );
        assert_eq!(code_of("not json"), "");
    }
}
