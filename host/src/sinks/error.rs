//! What a sink answers when it cannot write (or read) a record: the service's failure, sorted
//! into what it says about the record and the service, or what the sink found wrong itself.
//! Whether that is worth retrying, pauses the engine or is shown to the seller is the
//! engine's to decide (its `SyncError`), not the sink's: the sinks know the services (so the
//! clients' typed errors stop here), the engine knows what an event's failure means.
//!
//! Each variant carries the client's message as it was, so what the audit trail and the
//! seller read is the service's own wording.

use crate::connections::dataverse::DataverseError;
use crate::connections::partner_center::PartnerCenterError;
use crate::domain::Side;

/// Why a sink call failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The service refused the request as invalid (a 400): the same record is refused the
    /// same way until it changes.
    #[error("{0}")]
    Refused(String),
    /// The service has no such record (a 404): deleted, or not readable yet.
    #[error("{0}")]
    NotFound(String),
    /// Someone else changed the record between the read the mapping used and this write (a
    /// 412 on the write's eTag): the record is processed again on the new state.
    #[error("{0}")]
    Changed(String),
    /// The service did not answer (connection refused or dropped, a timeout, TLS; a write
    /// whose answer was lost) after its client's retries.
    #[error("{message}")]
    NoAnswer {
        /// The service that did not answer.
        service: Side,
        /// The client's message.
        message: String,
    },
    /// The service answered 500 or above after its client's retries.
    #[error("{message}")]
    ServerError {
        /// The service that failed.
        service: Side,
        /// The client's message.
        message: String,
    },
    /// Any other failure of the service that may pass later: still throttled after every
    /// retry, credentials or access refused, an answer the client did not understand.
    #[error("{0}")]
    Failed(String),
    /// The record names something the service does not have and cosell must not create
    /// (e.g. a currency that is not set up): the same record fails the same way every time.
    #[error("{0}")]
    Unresolvable(String),
    /// The state store failed (a customer's lock).
    #[error("{0:#}")]
    Store(#[from] anyhow::Error),
}

impl From<DataverseError> for SinkError {
    fn from(error: DataverseError) -> Self {
        let message = error.to_string();
        match error {
            DataverseError::BadRequest { .. } => SinkError::Refused(message),
            DataverseError::NotFound(_) => SinkError::NotFound(message),
            DataverseError::PreconditionFailed(_) => SinkError::Changed(message),
            DataverseError::Server { .. } => SinkError::ServerError {
                service: Side::Dataverse,
                message,
            },
            DataverseError::Transport(_) => SinkError::NoAnswer {
                service: Side::Dataverse,
                message,
            },
            DataverseError::Unauthorized(_)
            | DataverseError::Forbidden(_)
            | DataverseError::Throttled { .. }
            | DataverseError::InvalidResponse(_) => SinkError::Failed(message),
        }
    }
}

impl From<PartnerCenterError> for SinkError {
    fn from(error: PartnerCenterError) -> Self {
        let message = error.to_string();
        match error {
            PartnerCenterError::BadRequest(_) => SinkError::Refused(message),
            PartnerCenterError::NotFound(_) => SinkError::NotFound(message),
            PartnerCenterError::PreconditionFailed { .. } => SinkError::Changed(message),
            PartnerCenterError::Server { .. } => SinkError::ServerError {
                service: Side::PartnerCenter,
                message,
            },
            // A write whose answer was lost is no answer, as a dropped connection is.
            PartnerCenterError::Transport(_) | PartnerCenterError::AnswerLost(_) => {
                SinkError::NoAnswer {
                    service: Side::PartnerCenter,
                    message,
                }
            }
            _ => SinkError::Failed(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_error_is_sorted_by_what_it_says_and_keeps_its_message() {
        let dv_503 = DataverseError::Server {
            status: 503,
            message: "down".into(),
        };
        let text = dv_503.to_string();
        match SinkError::from(dv_503) {
            SinkError::ServerError { service, message } => {
                assert_eq!((service, message), (Side::Dataverse, text));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            DataverseError::Transport("reset".into()).into(),
            SinkError::NoAnswer {
                service: Side::Dataverse,
                ..
            }
        ));
        assert!(matches!(
            PartnerCenterError::Transport("refused".into()).into(),
            SinkError::NoAnswer {
                service: Side::PartnerCenter,
                ..
            }
        ));
        assert!(matches!(
            PartnerCenterError::AnswerLost("timeout".into()).into(),
            SinkError::NoAnswer {
                service: Side::PartnerCenter,
                ..
            }
        ));
        let refused = DataverseError::BadRequest {
            code: "0x1".into(),
            message: "bad".into(),
        };
        assert!(matches!(refused.into(), SinkError::Refused(_)));
        assert!(matches!(
            PartnerCenterError::BadRequest("bad".into()).into(),
            SinkError::Refused(_)
        ));
        assert!(matches!(
            DataverseError::PreconditionFailed("etag".into()).into(),
            SinkError::Changed(_)
        ));
        let pc_412 = PartnerCenterError::PreconditionFailed {
            id: "r".into(),
            message: "etag".into(),
        };
        assert!(matches!(pc_412.into(), SinkError::Changed(_)));
        assert!(matches!(
            PartnerCenterError::NotFound("referral r".into()).into(),
            SinkError::NotFound(_)
        ));
        // Throttling is an answer: no outage.
        let throttled = PartnerCenterError::Throttled { retry_after: None };
        let text = throttled.to_string();
        match SinkError::from(throttled) {
            SinkError::Failed(message) => assert_eq!(message, text),
            other => panic!("{other:?}"),
        }
    }
}
