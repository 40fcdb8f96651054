//! The bulk operation messages: many rows of one table written in one request, which Microsoft
//! recommends over `$batch` for throughput. `CreateMultiple`, `UpdateMultiple` and
//! `UpsertMultiple` are actions bound to the table's entity set; each row ("target") names its
//! table with `@odata.type`. On a standard table a request is all or nothing: one refused row
//! and none is written, and the answer is that row's error. A request counts once against
//! the service protection request limit (its execution time still counts every row).
//!
//! Creates never make a duplicate, as [`super::creates`] explains for one row: every target
//! names its id, and when the answer is lost the client reads the first row. All or nothing
//! means that one row tells for every row: there, the request landed; not there, it is sent
//! again (a late first attempt then makes the retry fail as a duplicate, not a second copy,
//! and that refusal is read back in turn: the rows are there, so the request landed).
//!
//! Not every table takes every message (the opportunity table, for one, has no
//! `UpsertMultiple`): a table that does not answers an error, and callers fall back to
//! `$batch` (`cosell backfill` does).

use super::Result;
use super::client::DataverseClient;
use super::request::{Call, Replay};
use reqwest::Method;
use serde_json::{Map, Value, json};

/// One row of a bulk request: its table's primary key value (or alternate key) and columns.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRow {
    /// The row's id (`CreateMultiple`, `UpdateMultiple`), or its key as in a URL,
    /// `name='value'` (`UpsertMultiple`).
    pub key: String,
    /// The columns to write, without the key.
    pub columns: Map<String, Value>,
}

/// The table a bulk request writes: its entity set, logical name and primary key column.
#[derive(Debug, Clone, Copy)]
pub struct BulkTable<'a> {
    /// The entity set, as in URLs (`opportunities`).
    pub set: &'a str,
    /// The table's logical name (`opportunity`).
    pub logical_name: &'a str,
    /// The primary key column (`opportunityid`).
    pub primary_id: &'a str,
}

impl BulkTable<'_> {
    /// The opportunity table.
    pub const OPPORTUNITIES: BulkTable<'static> = BulkTable {
        set: "opportunities",
        logical_name: "opportunity",
        primary_id: "opportunityid",
    };

    /// `rows` as targets named by their primary key column.
    fn targets_by_id(&self, rows: &[BulkRow]) -> Vec<Value> {
        rows.iter()
            .map(|row| {
                let mut columns = self.target(row.columns.clone());
                columns.insert(self.primary_id.into(), json!(row.key));
                Value::Object(columns)
            })
            .collect()
    }

    fn target(&self, mut columns: Map<String, Value>) -> Map<String, Value> {
        columns.insert(
            "@odata.type".into(),
            json!(format!("Microsoft.Dynamics.CRM.{}", self.logical_name)),
        );
        columns
    }
}

impl DataverseClient {
    /// `CreateMultiple`: creates `rows` (each naming its id) in one request, all or nothing,
    /// and answers their ids in order. A row whose id exists fails the whole request
    /// ([`super::DataverseError::PreconditionFailed`] or the service's duplicate error) and
    /// nothing is created.
    pub async fn create_multiple(
        &self,
        table: BulkTable<'_>,
        rows: &[BulkRow],
    ) -> Result<Vec<String>> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let body = json!({ "Targets": table.targets_by_id(rows) });
        let what = format!("{}/CreateMultiple ({} rows)", table.set, rows.len());
        let url = self.url(
            &format!("{}/Microsoft.Dynamics.CRM.CreateMultiple", table.set),
            "",
        )?;
        let ids: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
        let attempt = || {
            let mut call =
                Call::new("create_multiple", Method::POST, url.clone(), &what).json(&body);
            call.replay = Replay::BareOnly;
            let (ids, what) = (&ids, &what);
            async move { answered_ids(&self.send(call).await?.json(what)?, ids, what) }
        };
        // All or nothing: the first row tells whether the whole request landed.
        self.create_until_settled(table.set, &first.key, attempt, || ids.clone())
            .await
    }

    /// `UpdateMultiple`: writes the columns of each of `rows` (named by id) in one request,
    /// all or nothing; a missing row fails the whole request.
    pub async fn update_multiple(&self, table: BulkTable<'_>, rows: &[BulkRow]) -> Result<()> {
        let targets = table.targets_by_id(rows);
        self.bulk_without_answer("update_multiple", table, "UpdateMultiple", targets)
            .await
    }

    /// `UpsertMultiple`: creates or updates each of `rows`, named by an alternate key
    /// (`key` is `column='value'`), in one request, all or nothing.
    pub async fn upsert_multiple(&self, table: BulkTable<'_>, rows: &[BulkRow]) -> Result<()> {
        let targets = rows
            .iter()
            .map(|row| {
                let mut columns = table.target(row.columns.clone());
                columns.insert(
                    "@odata.id".into(),
                    json!(format!("{}({})", table.set, row.key)),
                );
                Value::Object(columns)
            })
            .collect();
        self.bulk_without_answer("upsert_multiple", table, "UpsertMultiple", targets)
            .await
    }

    /// Sends an update or upsert bulk message (204, no body). Both are idempotent: writing
    /// the same values twice leaves the same rows, so a lost answer is retried by
    /// [`send`](Self::send) like any idempotent call.
    async fn bulk_without_answer(
        &self,
        operation: &'static str,
        table: BulkTable<'_>,
        message: &str,
        targets: Vec<Value>,
    ) -> Result<()> {
        if targets.is_empty() {
            return Ok(());
        }
        let what = format!("{}/{message} ({} rows)", table.set, targets.len());
        let url = self.url(
            &format!("{}/Microsoft.Dynamics.CRM.{message}", table.set),
            "",
        )?;
        let body = json!({ "Targets": targets });
        let mut call = Call::new(operation, Method::POST, url, &what).json(&body);
        call.replay = Replay::Idempotent;
        self.send(call).await.map(drop)
    }
}

/// The `Ids` of a `CreateMultiple` answer, checked against the ids the request named.
fn answered_ids(body: &Value, named: &[String], what: &str) -> Result<Vec<String>> {
    let answered: Vec<String> = body["Ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_lowercase))
                .collect()
        })
        .unwrap_or_default();
    let named_lower: Vec<String> = named.iter().map(|id| id.to_lowercase()).collect();
    if answered != named_lower {
        return Err(super::DataverseError::InvalidResponse(format!(
            "{what}: the answer's Ids ({} of them) are not the ids the request named ({})",
            answered.len(),
            named.len()
        )));
    }
    Ok(named.to_vec())
}
