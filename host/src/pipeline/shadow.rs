//! Shadow versions: a candidate that runs beside a step's active version on live records.
//!
//! Every live call of a step with a shadow (the sync engine's pipeline runs, not previews)
//! also runs the shadow on the same input, current record and config, on a task of its own:
//! the record never waits for it nor fails because of it, and nothing it produces is written
//! anywhere. One shadow call runs at a time per host (`SHADOW_CALLS`); while one runs, or when
//! every call slot is busy, the shadow call is skipped (and counted), so the shadow never takes
//! capacity the live records need. Its output is compared with the active
//! version's ([`super::output_diff`]) and counted in a [`ShadowReport`]: kept in memory, per
//! replica, from when this replica started running the shadow.

use super::output_diff;
use crate::runtime::{CallError, MappingComponent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// How many examples of differences and of failures a report keeps (the first ones).
pub const MAX_EXAMPLES: usize = 10;

/// A step's shadow version and what it did so far on this replica.
pub struct Shadow {
    /// The shadow version's compiled component.
    pub component: Arc<MappingComponent>,
    report: Mutex<ShadowReport>,
}

/// What a shadow did, on this replica, since it started running here.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowReport {
    /// The shadow version.
    pub version: String,
    /// When this replica started running it (RFC 3339).
    pub since: String,
    /// Live calls of the step while it was the shadow.
    pub records_seen: u64,
    /// The shadow gave the same output (or the same error) as the active version.
    pub identical: u64,
    /// The shadow gave another output.
    pub different: u64,
    /// The shadow produced no output where the active version did, or another error.
    pub failed: u64,
    /// Not run: every call slot was busy.
    pub skipped: u64,
    /// The first differences.
    pub different_examples: Vec<DifferenceExample>,
    /// The first failures.
    pub failure_examples: Vec<FailureExample>,
}

/// One record the shadow mapped differently.
#[derive(Debug, Clone, Serialize)]
pub struct DifferenceExample {
    /// `referral:<id>` or `opportunity:<id>`.
    pub record: String,
    /// The JSON pointers that differ.
    pub changed: Vec<String>,
    /// The unified diff, active (`-`) to shadow (`+`).
    pub diff: String,
}

/// One record the shadow failed on.
#[derive(Debug, Clone, Serialize)]
pub struct FailureExample {
    /// `referral:<id>` or `opportunity:<id>`.
    pub record: String,
    /// Why the shadow produced no output.
    pub error: String,
}

/// How one shadow call compared with the active version's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// The same output, or the same kind of error, as the active version.
    Identical,
    /// A different output from the active version's, or an output where it refused the record.
    Different,
    /// An error where the active version had output, or an error of another kind than its.
    Failed,
    /// Not run: another shadow call was running, or every call slot was busy.
    Skipped,
}

impl ShadowOutcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ShadowOutcome::Identical => "identical",
            ShadowOutcome::Different => "different",
            ShadowOutcome::Failed => "failed",
            ShadowOutcome::Skipped => "skipped",
        }
    }
}

impl Shadow {
    /// A shadow of `component`, with an empty report starting now.
    pub fn new(component: Arc<MappingComponent>) -> Self {
        let report = ShadowReport {
            version: component.version.to_string(),
            since: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            records_seen: 0,
            identical: 0,
            different: 0,
            failed: 0,
            skipped: 0,
            different_examples: Vec::new(),
            failure_examples: Vec::new(),
        };
        Self {
            component,
            report: Mutex::new(report),
        }
    }

    /// The report so far.
    pub fn report(&self) -> ShadowReport {
        self.lock().clone()
    }

    /// When this replica started running it.
    pub fn since(&self) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(&self.lock().since).map(|t| t.with_timezone(&Utc))
    }

    /// Counts a call skipped because every slot was busy.
    pub fn skipped(&self) -> ShadowOutcome {
        let mut report = self.lock();
        report.records_seen += 1;
        report.skipped += 1;
        ShadowOutcome::Skipped
    }

    /// Compares the shadow's result with the active version's for `record` and counts it.
    pub fn compare(
        &self,
        record: &str,
        active: &Result<String, CallError>,
        shadow: &Result<String, CallError>,
    ) -> ShadowOutcome {
        let outcome = match (active, shadow) {
            (Ok(active), Ok(shadow)) => match parsed_diff(active, shadow) {
                None => ShadowOutcome::Identical,
                Some(diff) => {
                    self.note_difference(record, diff);
                    ShadowOutcome::Different
                }
            },
            (Err(active), Err(shadow)) if active.kind == shadow.kind => ShadowOutcome::Identical,
            (_, Err(shadow)) => {
                self.note_failure(record, shadow.kind.to_string());
                ShadowOutcome::Failed
            }
            (Err(active), Ok(shadow)) => {
                // The shadow maps a record the active version refuses: a difference, shown as
                // the error against the output.
                let diff = output_diff::OutputDiff {
                    changed: vec![String::new()],
                    text: format!("- (the active version: {})\n+ {shadow}\n", active.kind),
                };
                self.note_difference(record, diff);
                ShadowOutcome::Different
            }
        };
        let mut report = self.lock();
        report.records_seen += 1;
        match outcome {
            ShadowOutcome::Identical => report.identical += 1,
            ShadowOutcome::Different => report.different += 1,
            ShadowOutcome::Failed => report.failed += 1,
            ShadowOutcome::Skipped => report.skipped += 1,
        }
        outcome
    }

    fn note_difference(&self, record: &str, diff: output_diff::OutputDiff) {
        let mut report = self.lock();
        if report.different_examples.len() < MAX_EXAMPLES {
            report.different_examples.push(DifferenceExample {
                record: record.to_owned(),
                changed: diff.changed,
                diff: diff.text,
            });
        }
    }

    fn note_failure(&self, record: &str, error: String) {
        let mut report = self.lock();
        if report.failure_examples.len() < MAX_EXAMPLES {
            report.failure_examples.push(FailureExample {
                record: record.to_owned(),
                error,
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ShadowReport> {
        // Counters only: a panic while holding the lock cannot leave them unusable.
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The difference between two outputs the runtime let through (valid JSON); compared as text
/// when one does not parse, which the runtime's check makes impossible.
fn parsed_diff(active: &str, shadow: &str) -> Option<output_diff::OutputDiff> {
    match (
        serde_json::from_str::<serde_json::Value>(active),
        serde_json::from_str::<serde_json::Value>(shadow),
    ) {
        (Ok(a), Ok(s)) => output_diff::diff(&a, &s),
        _ => output_diff::diff_text(active, shadow),
    }
}
