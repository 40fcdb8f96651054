//! What processing one event can end in, and how a failure is treated.

use crate::pipeline::PipelineError;
use crate::runtime::CallErrorKind;
use crate::sinks::SinkError;
use crate::store::Side;

/// A successful run: what was done, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// `created`, `updated`, `unchanged`, `echo`, `skipped`.
    pub outcome: &'static str,
    /// What was done, in words (the audit trail's `detail`).
    pub detail: String,
}

impl Done {
    /// A run that ended in `outcome`, described by `detail`.
    pub fn new(outcome: &'static str, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            detail: detail.into(),
        }
    }
}

/// A failed run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// The record itself is the problem (a mapping rejected it, Partner Center refused it as
    /// invalid): retrying the same content cannot help. The seller sees the reason in the
    /// CRM and the record syncs again when it changes.
    #[error("{0}")]
    Rejected(String),
    /// Anything that may pass later: throttling, a 412 race, a mapping that failed in a way
    /// a second run may not repeat (its time limit, a full instance pool, its own retryable
    /// error). Retried with backoff, then dead-lettered.
    #[error("{0}")]
    Transient(String),
    /// A mapping step failed in a way the same record on the same version repeats every time
    /// (a fuel, memory or output limit, a trap, output that is not JSON: the sandbox is
    /// deterministic). Retrying cannot help, so the event is parked at once and queued again
    /// when another version of `step` is activated (or the host restarts, which may bring
    /// new limits).
    #[error("{reason}")]
    Parked {
        /// The step that failed.
        step: String,
        /// The version it failed on.
        version: String,
        /// Why the step failed.
        reason: String,
    },
    /// The record was made for a pair whose link the run that made it has not saved yet
    /// (`super::pairing`): retried like a transient failure, but behind `lock_key`, the key
    /// that run holds, so it runs after that run rather than during it.
    #[error("{reason}")]
    AwaitingLink {
        /// The key of the run that is making the link.
        lock_key: String,
        /// Why the record waits.
        reason: String,
    },
    /// A service did not answer, or answered 5xx, after its client's own retries. One of
    /// these is an ordinary transient failure; several in a row are an outage, and the
    /// engine pauses instead of spending every event's attempts (`super::availability`).
    #[error("{reason}")]
    Unavailable {
        /// The service whose call failed (a read or a write: the client that failed says
        /// which, whatever side the event came from).
        service: Side,
        /// How the service showed it is unavailable.
        cause: OutageCause,
        /// The failure, as the client reported it.
        reason: String,
    },
}

/// How a service showed it is unavailable; a label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageCause {
    /// No answer: connection refused or dropped, timeout, TLS failure, a lost answer.
    NoAnswer,
    /// An answer 500 or above (a 503 included).
    ServerError,
}

impl OutageCause {
    /// The metric label: `no_answer` or `server_error`.
    pub fn label(self) -> &'static str {
        match self {
            OutageCause::NoAnswer => "no_answer",
            OutageCause::ServerError => "server_error",
        }
    }
}

impl SyncError {
    /// A [`SyncError::Transient`] with `message`.
    pub fn transient(message: impl std::fmt::Display) -> Self {
        SyncError::Transient(message.to_string())
    }
}

/// A sink's failure for the event: a refusal (of the service, or the sink's own: a record
/// naming what the service lacks) is the record's problem; a service that did not answer, or
/// answered 5xx, is unavailable (several in a row pause the engine); anything else (a row
/// changed underneath, a record not readable yet, throttling) may pass and is retried.
impl From<SinkError> for SyncError {
    fn from(error: SinkError) -> Self {
        let (service, cause, reason) = match error {
            SinkError::Refused(reason) | SinkError::Unresolvable(reason) => {
                return SyncError::Rejected(reason);
            }
            SinkError::NotFound(reason)
            | SinkError::Changed(reason)
            | SinkError::Failed(reason) => {
                return SyncError::Transient(reason);
            }
            SinkError::Store(e) => return e.into(),
            SinkError::NoAnswer { service, message } => (service, OutageCause::NoAnswer, message),
            SinkError::ServerError { service, message } => {
                (service, OutageCause::ServerError, message)
            }
        };
        SyncError::Unavailable {
            service,
            cause,
            reason,
        }
    }
}

impl From<anyhow::Error> for SyncError {
    fn from(error: anyhow::Error) -> Self {
        SyncError::Transient(format!("{error:#}"))
    }
}

/// A pipeline's result: the output, a skip (with its reason), or an error.
pub enum Mapped {
    /// The last step's output document.
    Output(String),
    /// A step skipped the record; the reason it gave.
    Skipped(String),
}

/// Sorts a pipeline error into skip, rejection, parking (a failure the same version repeats)
/// or transient failure.
pub fn classify_pipeline(result: Result<String, PipelineError>) -> Result<Mapped, SyncError> {
    match result {
        Ok(document) => Ok(Mapped::Output(document)),
        Err(e) => match &e.error.kind {
            CallErrorKind::Skipped(reason) => Ok(Mapped::Skipped(reason.clone())),
            CallErrorKind::Rejected(_) => Err(SyncError::Rejected(e.to_string())),
            // The runtime's own classification: what is not worth retrying on the same
            // version is deterministic, since the sandbox is (frozen clock, seeded randomness).
            kind if !kind.is_retryable() => Err(SyncError::Parked {
                step: e.error.mapping.to_string(),
                version: e.error.version.to_string(),
                reason: e.to_string(),
            }),
            _ => Err(SyncError::Transient(e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{CallError, Direction, Limit};

    fn failing(kind: CallErrorKind) -> Result<String, PipelineError> {
        Err(PipelineError {
            direction: Direction::PartnerCenterToCrm,
            position: 1,
            error: CallError {
                mapping: "referral-to-opportunity".into(),
                version: "sha256:v1".into(),
                kind,
            },
            completed: Vec::new(),
        })
    }

    fn limit(limit: Limit) -> CallErrorKind {
        CallErrorKind::LimitExceeded {
            limit,
            detail: "over".into(),
        }
    }

    #[test]
    fn a_failure_the_version_repeats_parks_and_one_that_may_pass_is_retried() {
        let deterministic = [
            limit(Limit::Fuel),
            limit(Limit::Memory),
            limit(Limit::OutputSize),
            CallErrorKind::Trapped("panicked".into()),
            CallErrorKind::InvalidOutput("not JSON".into()),
        ];
        for kind in deterministic {
            match classify_pipeline(failing(kind.clone())) {
                Err(SyncError::Parked {
                    step,
                    version,
                    reason,
                }) => {
                    assert_eq!(
                        (step.as_str(), version.as_str()),
                        ("referral-to-opportunity", "sha256:v1")
                    );
                    assert!(reason.contains(&kind.to_string()), "{reason}");
                }
                _ => panic!("{kind:?} parks"),
            }
        }
        let may_pass = [
            limit(Limit::Timeout),
            CallErrorKind::Failed("upstream".into()),
            CallErrorKind::Instantiation("pool full".into()),
        ];
        for kind in may_pass {
            assert!(
                matches!(
                    classify_pipeline(failing(kind.clone())),
                    Err(SyncError::Transient(_))
                ),
                "{kind:?} is retried"
            );
        }
    }

    #[test]
    fn an_unanswered_call_is_attributed_to_the_service_whose_sink_failed() {
        let down = |e: SinkError| match SyncError::from(e) {
            SyncError::Unavailable { service, cause, .. } => Some((service, cause)),
            _ => None,
        };
        let server = SinkError::ServerError {
            service: Side::Dataverse,
            message: "503".into(),
        };
        assert_eq!(
            down(server),
            Some((Side::Dataverse, OutageCause::ServerError))
        );
        let lost = SinkError::NoAnswer {
            service: Side::PartnerCenter,
            message: "timeout".into(),
        };
        assert_eq!(
            down(lost),
            Some((Side::PartnerCenter, OutageCause::NoAnswer))
        );
        // Throttling, a race and a refusal are answers: no outage.
        let throttled = SinkError::Failed("throttled".into());
        assert!(matches!(
            SyncError::from(throttled),
            SyncError::Transient(_)
        ));
        let race = SinkError::Changed("etag".into());
        assert!(matches!(SyncError::from(race), SyncError::Transient(_)));
        let refused = SinkError::Refused("bad".into());
        assert!(matches!(SyncError::from(refused), SyncError::Rejected(_)));
        let unknown = SinkError::Unresolvable("no currency XYZ".into());
        assert!(matches!(SyncError::from(unknown), SyncError::Rejected(_)));
    }
}
