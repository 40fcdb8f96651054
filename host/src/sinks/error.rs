//! What a sink answers when it cannot write (or read) a record: the service's own error, or
//! what the sink found wrong itself. Whether that is worth retrying, pauses the engine or is
//! shown to the seller is the engine's to decide (its `SyncError`), not the sink's: the sinks
//! know the services, the engine knows what an event's failure means.

use crate::connections::dataverse::DataverseError;

/// Why a sink call failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Dataverse's error, as its client answered it.
    #[error(transparent)]
    Dataverse(#[from] DataverseError),
    /// Someone else changed the row between the read the mapping used and this write (a 412
    /// on the write's eTag): the record is processed again on the new state.
    #[error("{0}")]
    Changed(String),
    /// The record names something the service does not have and cosell must not create
    /// (e.g. a currency that is not set up): the same record fails the same way every time.
    #[error("{0}")]
    Unresolvable(String),
    /// The state store failed (a customer's lock).
    #[error("{0:#}")]
    Store(#[from] anyhow::Error),
}
