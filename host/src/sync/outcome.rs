//! What processing one event can end in, and how a failure is treated.

use crate::connections::dataverse::DataverseError;
use crate::connections::partner_center::PartnerCenterError;
use crate::pipeline::PipelineError;
use crate::runtime::CallErrorKind;

/// A successful run: what was done, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// `created`, `updated`, `unchanged`, `echo`, `skipped`.
    pub outcome: &'static str,
    pub detail: String,
}

impl Done {
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
    /// Anything that may pass later: a service down or throttling, a 412 race, a mapping
    /// that trapped or ran out of a limit (a fixed version may be deployed). Retried with
    /// backoff, then dead-lettered.
    #[error("{0}")]
    Transient(String),
}

impl SyncError {
    pub fn transient(message: impl std::fmt::Display) -> Self {
        SyncError::Transient(message.to_string())
    }
}

impl From<PartnerCenterError> for SyncError {
    fn from(error: PartnerCenterError) -> Self {
        match error {
            PartnerCenterError::BadRequest(_) => SyncError::Rejected(error.to_string()),
            other => SyncError::Transient(other.to_string()),
        }
    }
}

impl From<DataverseError> for SyncError {
    fn from(error: DataverseError) -> Self {
        match error {
            DataverseError::BadRequest { .. } => SyncError::Rejected(error.to_string()),
            other => SyncError::Transient(other.to_string()),
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
    Output(String),
    Skipped(String),
}

/// Sorts a pipeline error into skip, rejection or transient failure.
pub fn classify_pipeline(result: Result<String, PipelineError>) -> Result<Mapped, SyncError> {
    match result {
        Ok(document) => Ok(Mapped::Output(document)),
        Err(e) => match &e.error.kind {
            CallErrorKind::Skipped(reason) => Ok(Mapped::Skipped(reason.clone())),
            CallErrorKind::Rejected(_) => Err(SyncError::Rejected(e.to_string())),
            _ => Err(SyncError::Transient(e.to_string())),
        },
    }
}
