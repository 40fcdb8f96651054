//! Writing many opportunities at once, for a backfill (`crate::sync::backfill`): what the
//! engine's [`OpportunitySink`](super::OpportunitySink) does one record at a time, as the
//! bulk operations Dataverse offers, so the backfill holds a sink and never a client.
//!
//! - [`OpportunityCreate`]: one referral's opportunity, its id named before the first attempt
//!   (the mapping's `opportunityid`, or a new one), and for a won or lost referral its close
//!   in the same change set: Dataverse applies both or neither, so an opportunity is never left
//!   open for a closed referral, and a failed close leaves nothing to clean up.
//! - [`BulkWriter::create_batch`]: one `$batch` of independent items with
//!   `Prefer: odata.continue-on-error` (each create, or create and close, its own item), so a
//!   record Dataverse refuses is answered with its reason and every other one is written.
//! - [`BulkWriter::create_multiple`]: `CreateMultiple` of plain creates, all or nothing;
//!   whether a refusal is worth falling back to `$batch` is the caller's to decide, so it is
//!   answered apart from a lost answer ([`BulkCreated`]).
//! - [`BulkWriter::create_one`]: one record on its own.
//! - [`LookupRequest`] and [`BulkWriter::send_all`]: the lookups a chunk of referrals needs
//!   first (its accounts found with their contacts, the missing accounts and contacts created,
//!   ids chosen here), in `$batch`es or one by one.
//! - [`BulkWriter::read_many`] reads the created opportunities back (many per query), and
//!   [`BulkWriter::opportunities_carrying`] lists those that carry a referral id already.
//!
//! The client's limiter keeps every one of them within the service protection limits. Every
//! create names its row, so a write whose answer is lost is not a failure: the client reads
//! which rows landed and sends only the others again (`connections::dataverse::creates`).
//! What is left in doubt is answered as such ([`Created::Failed`] with `may_exist`).

use super::lookups::{Lookups, account_body, account_filter, contact_body};
use super::{CLOSE_SUBJECT, Closing, OPPORTUNITY_QUERY};
use crate::connections::dataverse::actions::close_request;
use crate::connections::dataverse::batch::{BatchRequest, MAX_REQUESTS};
use crate::connections::dataverse::{
    BatchItem, BatchResponse, BulkRow, BulkTable, DataverseClient, DataverseError, Traffic,
};
use crate::connections::telemetry::Observer;
use crate::domain::ids::new_uuid;
use crate::sinks::SinkError;
use futures_util::{StreamExt as _, stream};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The most requests one `$batch` may hold (Dataverse's documented limit): a bulk write's
/// groups are at most this large.
pub const MAX_BATCH_REQUESTS: usize = MAX_REQUESTS;

/// Rows per page of [`BulkWriter::opportunities_carrying`] (Dataverse's maximum).
const SCAN_PAGE: u32 = 5000;

/// Opportunities read back in one query: 50 ids keep the URL under 4 KB.
const READ_PER_QUERY: usize = 50;

/// Writes (and reads back) many opportunities, with their accounts and contacts.
#[derive(Debug, Clone)]
pub struct BulkWriter {
    client: DataverseClient,
}

/// A lookup a bulk write needs before its opportunities: an account's query (with its
/// contacts), or the create of an account or a contact under an id chosen beforehand.
#[derive(Debug, Clone)]
pub struct LookupRequest(BatchRequest);

impl LookupRequest {
    /// The query that finds the account of `account` (the object a mapping wrote: matched by
    /// name and postal code) with its contacts' ids and emails; its answer is
    /// `{"value": [rows]}`.
    pub fn find_account(account: &Value) -> Self {
        Self(BatchRequest {
            method: Method::GET,
            path: format!(
                "accounts?$select=accountid&$filter={}&$expand=contact_customer_accounts($select=contactid,emailaddress1)",
                account_filter(account)
            ),
            ..BatchRequest::default()
        })
    }

    /// The create of the account `account` describes, with its id (chosen here).
    pub fn create_account(account: &Value) -> (String, Self) {
        let id = new_uuid();
        let request = BatchRequest::create("accounts", &id, Value::Object(account_body(account)));
        (id, Self(request))
    }

    /// The create of `contact` (an object of a mapping's `contact_customer_accounts`) as
    /// contact `id` of account `account_id`.
    pub fn create_contact(id: &str, contact: &Value, account_id: &str) -> Self {
        let body = contact_body(contact, account_id);
        Self(BatchRequest::create("contacts", id, Value::Object(body)))
    }
}

/// The create of one referral's opportunity: the create alone, or, for a referral won or lost,
/// the change set of the create and `WinOpportunity`/`LoseOpportunity` for its id.
#[derive(Debug, Clone)]
pub struct OpportunityCreate {
    item: BatchItem,
    /// The id the create names.
    id: String,
    /// What its errors name: the opportunity of which referral.
    what: String,
}

impl OpportunityCreate {
    /// The create of the opportunity of referral `referral_id` from mapped `columns` (their
    /// lookups bound), closed as `closing` says ([`super::take_closing`]). Its id is the one
    /// the mapping gave (`opportunityid`), or a new one; the create never updates a row that
    /// exists ([`BatchRequest::create`]), so a write whose answer is lost is found out, not
    /// repeated.
    pub fn new(
        referral_id: &str,
        mut columns: Map<String, Value>,
        closing: Option<(Closing, i64)>,
    ) -> Self {
        let id = match columns.remove("opportunityid") {
            Some(Value::String(id)) => id,
            _ => new_uuid(),
        };
        let create = BatchRequest::create("opportunities", &id, Value::Object(columns));
        let item = match closing {
            None => BatchItem::Request(create),
            Some((closing, status)) => {
                let close = close_request(closing, &id, status, CLOSE_SUBJECT);
                BatchItem::ChangeSet(vec![create, close])
            }
        };
        Self {
            item,
            id,
            what: format!("the opportunity of referral {referral_id}"),
        }
    }

    /// The id the create names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many requests it takes in a `$batch` (two when it closes).
    pub fn requests(&self) -> usize {
        self.item.requests().len()
    }

    /// Whether it is a plain create (no close), which `CreateMultiple` can send.
    pub fn is_plain(&self) -> bool {
        matches!(&self.item, BatchItem::Request(r) if r.created_row().is_some())
    }

    /// Its row in a `CreateMultiple`, if it is a plain create.
    fn bulk_row(&self) -> Option<BulkRow> {
        let BatchItem::Request(create) = &self.item else {
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
}

/// What became of one [`OpportunityCreate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Created (and closed, when it closes): the opportunity's id.
    Id(String),
    /// Refused with 412: its key exists. The opportunity id it names (the referral's
    /// `externalReferenceId`: cosell created that opportunity, and made the referral from it),
    /// or the Referral Identifier where it is an alternate key (a live host created it in the
    /// meantime): either way it is there.
    AlreadyThere,
    /// Not created, as far as this write knows.
    Failed {
        /// Why, in the service's words.
        reason: String,
        /// Whether it may have been created after all (no answer, an answer not understood,
        /// a change set answered in part): a later look finds it by its id.
        may_exist: bool,
    },
}

impl Created {
    /// What a failed write says about the record.
    fn of_error(error: &DataverseError) -> Self {
        match error {
            DataverseError::PreconditionFailed(_) => Created::AlreadyThere,
            DataverseError::Transport(_) | DataverseError::InvalidResponse(_) => Created::Failed {
                reason: error.to_string(),
                may_exist: true,
            },
            _ => Created::Failed {
                reason: error.to_string(),
                may_exist: false,
            },
        }
    }

    /// What `create`'s answers in a `$batch` say.
    fn of_answers(create: &OpportunityCreate, answers: &[BatchResponse]) -> Self {
        if answers.len() == create.requests() && answers.iter().all(BatchResponse::is_success) {
            let id = answers[0].entity_id.clone();
            return Created::Id(id.unwrap_or_else(|| create.id.clone()));
        }
        match answers.iter().find_map(|a| a.error(&create.what)) {
            Some(e) => Created::of_error(&e),
            None => Created::Failed {
                reason: "Dataverse answered its change set in part".into(),
                may_exist: true,
            },
        }
    }
}

/// What a `CreateMultiple` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkCreated {
    /// Every opportunity was created: their ids, in order.
    Created(Vec<String>),
    /// Its answer was lost (no answer, or 5xx) and could not be sorted out: each
    /// opportunity's outcome is this one.
    Lost(Created),
    /// Dataverse refused it as a whole (one bad record, or a table that takes no bulk
    /// messages), and wrote none: why. Sent again as a `$batch`, each record gets its own
    /// outcome.
    Refused(String),
}

impl BulkWriter {
    /// A writer through `client`, whose limiter bounds every request in flight.
    pub fn new(client: DataverseClient) -> Self {
        Self { client }
    }

    /// Reports every request of this writer to `observer` (the client's telemetry); answers
    /// false when an observer was attached already.
    pub fn observe(&self, observer: Arc<dyn Observer>) -> bool {
        self.client.observe(observer)
    }

    /// The requests sent so far and how many were throttled (for a run's report).
    pub fn traffic(&self) -> Traffic {
        self.client.traffic()
    }

    /// Every opportunity whose `column` (the Referral Identifier) is set, as referral id →
    /// opportunity id: one paged query, 5,000 rows a page.
    pub async fn opportunities_carrying(
        &self,
        column: &str,
    ) -> Result<HashMap<String, String>, SinkError> {
        let rows = self
            .client
            .with_page_size(SCAN_PAGE)
            .query(
                "opportunities",
                &format!("$select=opportunityid,{column}&$filter={column} ne null"),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let referral = row[column].as_str().filter(|r| !r.trim().is_empty())?;
                let opportunity = row["opportunityid"].as_str()?;
                Some((referral.to_owned(), opportunity.to_owned()))
            })
            .collect())
    }

    /// Replaces the currency `columns` name by code with its reference, found through
    /// `lookups` (whose cache lives as long as the caller keeps it: a backfill, its run).
    pub async fn bind_currency(
        &self,
        lookups: &Lookups,
        columns: &mut Map<String, Value>,
    ) -> Result<(), SinkError> {
        lookups.bind_currency(&self.client, columns).await
    }

    /// Sends `requests`: in `$batch`es of at most `per_batch` independent requests (one by
    /// one when `per_batch` is 1), `concurrency` at once. Answers each request's outcome, in
    /// order: its answer's body (a query's rows as `{"value": […]}`), or why it failed.
    pub async fn send_all(
        &self,
        requests: &[LookupRequest],
        per_batch: usize,
        concurrency: usize,
    ) -> Vec<Result<Option<Value>, String>> {
        stream::iter(requests.chunks(per_batch))
            .map(|group| async move {
                match group {
                    [request] if per_batch == 1 => vec![self.send_one(&request.0).await],
                    _ => self.send_batch(group).await,
                }
            })
            .buffered(concurrency)
            .flat_map(stream::iter)
            .collect()
            .await
    }

    async fn send_batch(&self, group: &[LookupRequest]) -> Vec<Result<Option<Value>, String>> {
        let items: Vec<BatchItem> = group
            .iter()
            .map(|r| BatchItem::Request(r.0.clone()))
            .collect();
        match self.client.batch_items(&items).await {
            Ok(answers) => group
                .iter()
                .zip(answers)
                .map(|(request, answer)| {
                    let answer = answer.into_iter().next();
                    match answer.as_ref().and_then(|a| a.error(&request.0.path)) {
                        Some(e) => Err(e.to_string()),
                        None => Ok(answer.and_then(|a| a.body)),
                    }
                })
                .collect(),
            Err(e) => vec![Err(e.to_string()); group.len()],
        }
    }

    async fn send_one(&self, request: &BatchRequest) -> Result<Option<Value>, String> {
        let (set, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let result = if request.method == Method::GET {
            self.client
                .query(set, query)
                .await
                .map(|rows| Some(json!({"value": rows})))
        } else {
            self.create_request(request).await.map(|_| None)
        };
        result.map_err(|e| e.to_string())
    }

    /// Sends one create (a [`BatchRequest::create`]) on its own.
    async fn create_request(&self, request: &BatchRequest) -> Result<String, DataverseError> {
        let Some((set, id)) = request.created_row() else {
            return Err(DataverseError::BadRequest {
                code: String::new(),
                message: format!("{} {} is not a create", request.method, request.path),
            });
        };
        let body = request.body.clone().unwrap_or_default();
        self.client.create_with_id(set, id, &body).await
    }

    /// One `$batch` of `creates` with continue-on-error, each its own item; answers each
    /// one's outcome, in order (the batch's error for every one when the batch as a whole
    /// failed).
    pub async fn create_batch(&self, creates: &[&OpportunityCreate]) -> Vec<Created> {
        let items: Vec<BatchItem> = creates.iter().map(|c| c.item.clone()).collect();
        match self.client.batch_items(&items).await {
            Ok(answers) => creates
                .iter()
                .zip(answers)
                .map(|(create, answers)| Created::of_answers(create, &answers))
                .collect(),
            Err(e) => vec![Created::of_error(&e); creates.len()],
        }
    }

    /// `CreateMultiple` of `creates` (plain ones: [`OpportunityCreate::is_plain`]), all or
    /// nothing.
    pub async fn create_multiple(&self, creates: &[&OpportunityCreate]) -> BulkCreated {
        let rows: Vec<BulkRow> = creates.iter().filter_map(|c| c.bulk_row()).collect();
        match self
            .client
            .create_multiple(BulkTable::OPPORTUNITIES, &rows)
            .await
        {
            Ok(ids) => BulkCreated::Created(ids),
            Err(e) if e.answer_lost() => BulkCreated::Lost(Created::of_error(&e)),
            Err(e) => BulkCreated::Refused(e.to_string()),
        }
    }

    /// `create` on its own: a plain create as one request, a create and its close as a
    /// `$batch` holding just its change set (so it is closed atomically too).
    pub async fn create_one(&self, create: &OpportunityCreate) -> Created {
        match &create.item {
            BatchItem::Request(request) => match self.create_request(request).await {
                Ok(id) => Created::Id(id),
                Err(e) => Created::of_error(&e),
            },
            BatchItem::ChangeSet(_) => {
                match self
                    .client
                    .batch_items(std::slice::from_ref(&create.item))
                    .await
                {
                    Ok(answers) => Created::of_answers(create, &answers[0]),
                    Err(e) => Created::of_error(&e),
                }
            }
        }
    }

    /// The opportunities `ids` as the engine reads them (lookups expanded), by id, many per
    /// query, `concurrency` queries at once; and the errors of the queries that failed (their
    /// opportunities are missing from the answer).
    pub async fn read_many(
        &self,
        ids: &[String],
        concurrency: usize,
    ) -> (HashMap<String, Value>, Vec<SinkError>) {
        let queries = ids.chunks(READ_PER_QUERY).map(|ids| {
            let filter = ids
                .iter()
                .map(|id| format!("opportunityid eq {id}"))
                .collect::<Vec<_>>()
                .join(" or ");
            format!("$filter={filter}&{OPPORTUNITY_QUERY}")
        });
        let dv = &self.client;
        let answers: Vec<_> = stream::iter(queries)
            .map(|query| async move { dv.query("opportunities", &query).await })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut rows = HashMap::with_capacity(ids.len());
        let mut errors = Vec::new();
        for answer in answers {
            match answer {
                Ok(found) => rows.extend(
                    found
                        .into_iter()
                        .filter_map(|row| Some((row["opportunityid"].as_str()?.to_owned(), row))),
                ),
                Err(e) => errors.push(e.into()),
            }
        }
        (rows, errors)
    }
}
