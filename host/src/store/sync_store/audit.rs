//! What the sync engine did: the audit trail of outcomes, and the last pipeline run of each
//! record and direction (what a mapping replay runs again).

use crate::store::audit_query::{AuditPage, AuditQuery};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When it was recorded (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// `referral:<id>` or `opportunity:<id>`.
    pub record: String,
    /// `partner-center-to-crm` or `crm-to-partner-center`.
    pub direction: String,
    /// One of [`AUDIT_OUTCOMES`].
    pub outcome: String,
    /// What was done or went wrong, in words.
    pub detail: String,
}

/// The outcomes the audit trail records. Echoes and runs that changed nothing are counted in
/// the metrics, not kept in the trail.
pub const AUDIT_OUTCOMES: &[&str] = &[
    "created",
    "updated",
    "skipped",
    "conflict",
    "rejected",
    "retry",
    "parked",
    "dead-letter",
];

/// Keeps a run's pipeline runs for `cosell mapping replay`. Only for replays: a failure is
/// logged and fails nothing.
pub fn keep_for_replays<S: AuditStore + ?Sized>(store: &S, runs: &[LastRun]) {
    for run in runs {
        if let Err(e) = store.save_last_run(run) {
            tracing::warn!(record = %run.record, error = %format!("{e:#}"), "could not keep the pipeline run for replays");
        }
    }
}

/// The audit trail and the last pipeline runs.
pub trait AuditStore: Send + Sync {
    /// Adds `entry` to the audit trail.
    fn audit(&self, entry: &AuditEntry) -> Result<()>;
    /// The entries `query` matches, newest first, one page.
    fn audit_search(&self, query: &AuditQuery) -> Result<AuditPage>;
    /// The newest `limit` entries of a record (all records with `None`), newest first.
    fn audit_trail(&self, record: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let query = AuditQuery {
            record: record.map(str::to_owned),
            limit,
            ..AuditQuery::default()
        };
        Ok(self.audit_search(&query)?.entries)
    }
    /// Deletes the audit entries written before `before` (RFC 3339, UTC) and all but the
    /// newest `keep`; answers how many were deleted.
    fn prune_audit(&self, before: &str, keep: usize) -> Result<u64>;

    /// Keeps `run` as the last pipeline run of its record and direction, replacing the one
    /// before.
    fn save_last_run(&self, run: &LastRun) -> Result<()>;

    /// The last pipeline runs of `record` (`referral:<id>` or `opportunity:<id>`), one per
    /// direction it was mapped in.
    fn last_runs(&self, record: &str) -> Result<Vec<LastRun>>;

    /// Deletes the last runs made before `before` (RFC 3339, UTC); answers how many.
    fn prune_last_runs(&self, before: &str) -> Result<u64>;
}

/// The last pipeline run of one record in one direction: what `cosell mapping replay` runs
/// again and compares with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// `referral:<id>` or `opportunity:<id>`.
    pub record: String,
    /// `partner-center-to-crm` or `crm-to-partner-center`.
    pub direction: String,
    /// The event name the pipeline was given.
    pub event: String,
    /// The tenant name the pipeline was given.
    pub tenant: String,
    /// The pipeline's input document.
    pub input: String,
    /// The current counterpart record given to the pipeline, if there was one.
    pub current: Option<String>,
    /// The config revision of the pipeline's first step it ran with.
    pub config_revision: Option<i64>,
    /// The pipeline's output (what the engine then wrote the differences of), or
    pub output: Option<String>,
    /// why the pipeline produced none.
    pub error: Option<String>,
    /// When it ran (RFC 3339): the timestamp the pipeline was given.
    pub at: String,
}
