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
//! The client's limiter keeps either within the service protection limits: it waits out every
//! `Retry-After` and halves its concurrency on a 429. Every create names its row, so a write
//! whose answer is lost (a timeout, a dropped connection, a 500) is not a failure: the client
//! reads which rows landed and sends only the others again (`connections::dataverse::creates`).

use super::Mode;
use super::lookups::NewContact;
use super::prepare::Prepared;
use super::report::{Outcome, RecordOutcome};
use crate::connections::dataverse::batch::BatchRequest;
use crate::connections::dataverse::{BatchItem, BatchResponse, BulkRow, BulkTable, DataverseError};
use futures_util::{StreamExt as _, stream};
use reqwest::Method;
use serde_json::{Value, json};
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
                    outcomes.push(self.write_one(record).await);
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
        requests: &[BatchRequest],
    ) -> Vec<Result<Option<Value>, String>> {
        let per_batch = self.options.mode.group_size().unwrap_or(1);
        stream::iter(requests.chunks(per_batch))
            .map(|group| async move {
                match group {
                    [request] if per_batch == 1 => vec![self.send_one(request).await],
                    _ => self.send_batch(group).await,
                }
            })
            .buffered(self.options.mode.concurrency())
            .flat_map(stream::iter)
            .collect()
            .await
    }

    async fn send_batch(&self, group: &[BatchRequest]) -> Vec<Result<Option<Value>, String>> {
        let items: Vec<BatchItem> = group.iter().cloned().map(BatchItem::Request).collect();
        match self.backfill.dataverse.batch_items(&items).await {
            Ok(answers) => group
                .iter()
                .zip(answers)
                .map(|(request, answer)| {
                    let answer = answer.into_iter().next();
                    match answer.as_ref().and_then(|a| a.error(&request.path)) {
                        Some(e) => Err(e.to_string()),
                        None => Ok(answer.and_then(|a| a.body)),
                    }
                })
                .collect(),
            Err(e) => vec![Err(e.to_string()); group.len()],
        }
    }

    async fn send_one(&self, request: &BatchRequest) -> Result<Option<Value>, String> {
        let dv = &self.backfill.dataverse;
        let (set, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let result = if request.method == Method::GET {
            dv.query(set, query)
                .await
                .map(|rows| Some(json!({"value": rows})))
        } else {
            self.create_one(request).await.map(|_| None)
        };
        result.map_err(|e| e.to_string())
    }

    /// Sends one create (a [`BatchRequest::create`]) on its own.
    async fn create_one(&self, request: &BatchRequest) -> Result<String, DataverseError> {
        let Some((set, id)) = request.created_row() else {
            return Err(DataverseError::BadRequest {
                code: String::new(),
                message: format!("{} {} is not a create", request.method, request.path),
            });
        };
        let body = request.body.clone().unwrap_or_default();
        self.backfill.dataverse.create_with_id(set, id, &body).await
    }

    /// Creates `contacts`; answers the reason of each that failed, by id. A failed one is
    /// forgotten by the run's lookups, so a later referral plans it again.
    pub(super) async fn create_contacts(&self, contacts: &[NewContact]) -> HashMap<String, String> {
        let requests: Vec<BatchRequest> = contacts.iter().map(|c| c.request.clone()).collect();
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
        let items: Vec<BatchItem> = prepared.iter().map(|p| p.item.clone()).collect();
        match self.backfill.dataverse.batch_items(&items).await {
            Ok(answers) => prepared
                .into_iter()
                .zip(answers)
                .map(|(record, answers)| outcome_of(record, &answers))
                .collect(),
            Err(e) => prepared
                .into_iter()
                .map(|record| failed(record, &e))
                .collect(),
        }
    }

    /// One `CreateMultiple` of the open referrals' creates, and a `$batch` of the closed ones'
    /// change sets; a `CreateMultiple` refused as a whole is sent again as a `$batch`.
    async fn write_bulk(&self, prepared: Vec<Prepared>) -> Vec<RecordOutcome> {
        let (open, closed): (Vec<Prepared>, Vec<Prepared>) = prepared
            .into_iter()
            .partition(|p| matches!(&p.item, BatchItem::Request(r) if r.created_row().is_some()));
        let mut outcomes = if closed.is_empty() {
            Vec::new()
        } else {
            self.write_batch(closed).await
        };
        if open.is_empty() {
            return outcomes;
        }
        let rows: Vec<BulkRow> = open.iter().filter_map(bulk_row).collect();
        let dv = &self.backfill.dataverse;
        match dv.create_multiple(BulkTable::OPPORTUNITIES, &rows).await {
            Ok(ids) => {
                self.bulk
                    .created
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                outcomes.extend(open.into_iter().zip(ids).map(|(r, id)| created(r, id)));
            }
            Err(e) if e.answer_lost() => outcomes.extend(open.into_iter().map(|r| failed(r, &e))),
            Err(e) => {
                let count = open.len();
                let fallback = self.write_batch(open).await;
                let all_created = fallback
                    .iter()
                    .all(|o| matches!(o.outcome, Outcome::Created { .. }));
                if all_created && self.bulk.refuse(e.to_string()) {
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

    async fn write_one(&self, record: Prepared) -> RecordOutcome {
        let dv = &self.backfill.dataverse;
        match &record.item {
            BatchItem::Request(create) => match self.create_one(create).await {
                Ok(id) => created(record, id),
                Err(e) => failed(record, &e),
            },
            BatchItem::ChangeSet(_) => {
                match dv.batch_items(std::slice::from_ref(&record.item)).await {
                    Ok(answers) => outcome_of(record, &answers[0]),
                    Err(e) => failed(record, &e),
                }
            }
        }
    }
}

/// The row a plain create writes in a `CreateMultiple`.
fn bulk_row(record: &Prepared) -> Option<BulkRow> {
    let BatchItem::Request(create) = &record.item else {
        return None;
    };
    let (_, id) = create.created_row()?;
    let columns = match &create.body {
        Some(Value::Object(columns)) => columns.clone(),
        _ => Default::default(),
    };
    Some(BulkRow {
        key: id.to_owned(),
        columns,
    })
}

fn created(record: Prepared, opportunity_id: String) -> RecordOutcome {
    let mut link = Box::new(record.link);
    link.opportunity_id = Some(opportunity_id);
    RecordOutcome::new(
        record.referral_id,
        Outcome::Created {
            link,
            closed: record.closed,
        },
    )
}

/// The outcome of a record from its item's answers.
fn outcome_of(record: Prepared, answers: &[BatchResponse]) -> RecordOutcome {
    if answers.len() == record.requests() && answers.iter().all(BatchResponse::is_success) {
        let id = answers[0].entity_id.clone().or(record.named_id.clone());
        return match id {
            Some(id) => created(record, id),
            None => RecordOutcome::new(
                record.referral_id,
                Outcome::Failed(format!(
                    "Dataverse created its opportunity without saying its id (no OData-EntityId); {MAY_EXIST}"
                )),
            ),
        };
    }
    let what = format!("the opportunity of referral {}", record.referral_id);
    match answers.iter().find_map(|a| a.error(&what)) {
        Some(e) => failed(record, &e),
        None => RecordOutcome::new(
            record.referral_id,
            Outcome::Failed(format!(
                "Dataverse answered its change set in part; {MAY_EXIST}"
            )),
        ),
    }
}

/// The outcome of a record whose write failed with `error`.
fn failed(record: Prepared, error: &DataverseError) -> RecordOutcome {
    let outcome = match error {
        // A create answered 412 repeats a key: the opportunity id the referral names (its
        // externalReferenceId: cosell created that opportunity, and made the referral from it),
        // or the Referral Identifier where it is an alternate key (a live host created it in
        // the meantime). Either way it is there; the sync engine, or a re-run, links it.
        DataverseError::PreconditionFailed(_) => Outcome::AlreadyThere { adopt: None },
        DataverseError::Transport(_) | DataverseError::InvalidResponse(_) => {
            Outcome::Failed(format!("{error}; {MAY_EXIST}"))
        }
        _ => Outcome::Failed(error.to_string()),
    };
    RecordOutcome::new(record.referral_id, outcome)
}
