//! Sending the prepared creates to Dataverse, in either mode, and reading each referral's
//! outcome from the answers; and sending what the lookups of a chunk need first (queries and
//! creates of accounts, creates of contacts: [`Run::send_all`]).
//!
//! - **Batch**: one `$batch` of independent items with `Prefer: odata.continue-on-error`: each
//!   referral is its own item (a create, or the change set of a create and its close), so a
//!   record Dataverse refuses is reported with its reason and every other one is still
//!   written. Not one change set for the whole batch: one bad record would roll back the other
//!   999.
//! - **Bulk**: one `CreateMultiple` of the open referrals' opportunities, which Dataverse
//!   writes all or nothing, and the closed referrals' change sets in a `$batch` as above. A
//!   `CreateMultiple` refused as a whole (one bad record, or a table that takes no bulk
//!   messages) is sent again as a `$batch`, so every referral gets its own outcome; when that
//!   `$batch` writes every record, the records were not the reason, and the rest of the run
//!   writes `$batch`es.
//! - **Per record**: one request per referral: a plain `POST opportunities`, or for a closed
//!   referral a `$batch` holding just its change set (so it is closed atomically too).
//!
//! The requests themselves are the Dataverse sink's ([`BulkWriter`]): here is the choice of
//! which to send, and what each answer means for a referral. The sink's client keeps either
//! within the service protection limits (it waits out every `Retry-After` and halves its
//! concurrency on a 429), and every create names its row, so a write whose answer is lost (a
//! timeout, a dropped connection, a 500) is not a failure: the sink finds out which rows
//! landed and sends only the others again.
//!
//! [`BulkWriter`]: crate::sinks::dataverse::bulk_write::BulkWriter

use super::Mode;
use super::lookups::NewContact;
use super::prepare::Prepared;
use super::report::{Outcome, RecordOutcome};
use crate::sinks::dataverse::bulk_write::{BulkCreated, Created, LookupRequest};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a failed write says about a record that may have been created after all.
const MAY_EXIST: &str =
    "it may have been created: a re-run finds it by its referral id and links it";

/// What a bulk run's `CreateMultiple` requests did, shared by its concurrent writes.
#[derive(Debug, Default)]
pub(super) struct BulkState {
    /// Opportunities created by `CreateMultiple`.
    created: AtomicU64,
    /// Why Dataverse refused `CreateMultiple` on the table, once it did: from then on the run
    /// writes `$batch`es.
    refused: Mutex<Option<String>>,
}

impl BulkState {
    /// `(created, refused)`, for the report.
    pub(super) fn totals(&self) -> (u64, Option<String>) {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        (self.created.load(Ordering::Relaxed), refused.clone())
    }

    fn is_refused(&self) -> bool {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Records the refusal; answers whether it is the first.
    fn refuse(&self, reason: String) -> bool {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.is_some() {
            return false;
        }
        *refused = Some(reason);
        true
    }
}

impl super::Run<'_> {
    /// Writes `prepared` (one `$batch`, or one record's request) and answers each outcome.
    pub(super) async fn write(&self, prepared: Vec<Prepared>) -> Vec<RecordOutcome> {
        match self.options.mode {
            Mode::Batch { .. } => self.write_batch(prepared).await,
            Mode::Bulk { .. } if self.bulk.is_refused() => self.write_batch(prepared).await,
            Mode::Bulk { .. } => self.write_bulk(prepared).await,
            Mode::PerRecord { .. } => {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for record in prepared {
                    let created = self.backfill.dataverse.create_one(&record.create).await;
                    outcomes.push(outcome_of(record, created));
                }
                outcomes
            }
        }
    }

    /// Sends `requests` (creates and queries the lookups need): in `$batch`es of at most
    /// `size` independent requests, or one by one in per-record mode, as many at once as the
    /// mode's concurrency. Answers each request's outcome, in order: its answer's body (a
    /// query's rows as `{"value": […]}`), or why it failed.
    pub(super) async fn send_all(
        &self,
        requests: &[LookupRequest],
    ) -> Vec<Result<Option<Value>, String>> {
        let mode = self.options.mode;
        self.backfill
            .dataverse
            .send_all(requests, mode.group_size().unwrap_or(1), mode.concurrency())
            .await
    }

    /// Creates `contacts`; answers the reason of each that failed, by id. A failed one is
    /// forgotten by the run's lookups, so a later referral plans it again.
    pub(super) async fn create_contacts(&self, contacts: &[NewContact]) -> HashMap<String, String> {
        let requests: Vec<LookupRequest> = contacts.iter().map(|c| c.request.clone()).collect();
        let results = self.send_all(&requests).await;
        let mut failed = HashMap::new();
        for (contact, result) in contacts.iter().zip(results) {
            if let Err(reason) = result {
                self.lookups.forget(contact);
                failed.insert(contact.id.clone(), reason);
            }
        }
        failed
    }

    async fn write_batch(&self, prepared: Vec<Prepared>) -> Vec<RecordOutcome> {
        let creates: Vec<_> = prepared.iter().map(|p| &p.create).collect();
        let created = self.backfill.dataverse.create_batch(&creates).await;
        prepared
            .into_iter()
            .zip(created)
            .map(|(record, created)| outcome_of(record, created))
            .collect()
    }

    /// One `CreateMultiple` of the open referrals' creates, and a `$batch` of the closed ones'
    /// change sets; a `CreateMultiple` refused as a whole is sent again as a `$batch`.
    async fn write_bulk(&self, prepared: Vec<Prepared>) -> Vec<RecordOutcome> {
        let (open, closed): (Vec<Prepared>, Vec<Prepared>) =
            prepared.into_iter().partition(|p| p.create.is_plain());
        let mut outcomes = if closed.is_empty() {
            Vec::new()
        } else {
            self.write_batch(closed).await
        };
        if open.is_empty() {
            return outcomes;
        }
        let creates: Vec<_> = open.iter().map(|p| &p.create).collect();
        match self.backfill.dataverse.create_multiple(&creates).await {
            BulkCreated::Created(ids) => {
                self.bulk
                    .created
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                outcomes.extend(
                    open.into_iter()
                        .zip(ids)
                        .map(|(r, id)| outcome_of(r, Created::Id(id))),
                );
            }
            BulkCreated::Lost(created) => {
                outcomes.extend(open.into_iter().map(|r| outcome_of(r, created.clone())))
            }
            BulkCreated::Refused(e) => {
                let count = open.len();
                let fallback = self.write_batch(open).await;
                let all_created = fallback
                    .iter()
                    .all(|o| matches!(o.outcome, Outcome::Created { .. }));
                if all_created && self.bulk.refuse(e.clone()) {
                    tracing::warn!(
                        error = %e,
                        "Dataverse refused CreateMultiple of {count} opportunities that a $batch then created: the rest of this backfill writes $batch requests"
                    );
                } else {
                    tracing::debug!(error = %e, "CreateMultiple refused; its records were written one by one in a $batch");
                }
                outcomes.extend(fallback);
            }
        }
        outcomes
    }
}

/// The outcome of `record` from what its write did.
fn outcome_of(record: Prepared, created: Created) -> RecordOutcome {
    let outcome = match created {
        Created::Id(opportunity_id) => {
            let mut link = Box::new(record.link);
            link.opportunity_id = Some(opportunity_id);
            Outcome::Created {
                link,
                closed: record.closed,
            }
        }
        // There already (its key was taken): the sync engine, or a re-run, links it.
        Created::AlreadyThere => Outcome::AlreadyThere { adopt: None },
        Created::Failed {
            reason,
            may_exist: true,
        } => Outcome::Failed(format!("{reason}; {MAY_EXIST}")),
        Created::Failed { reason, .. } => Outcome::Failed(reason),
    };
    RecordOutcome::new(record.referral_id, outcome)
}
