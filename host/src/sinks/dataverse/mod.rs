//! Writing opportunities to Dataverse.
//!
//! A mapping's output is the set of columns to write, with lookups named by value
//! ([`lookups`]). `statecode` cannot be written (reference §4.3): an opportunity is created
//! open, and closing goes through `WinOpportunity` (state 1) or `LoseOpportunity` (state 2)
//! with the wanted `statuscode`. Updates carry the eTag read before the mapping ran, so a
//! seller's concurrent edit is never overwritten: Dataverse answers 412 and the event is
//! processed again on the new state.

pub mod bulk_write;
pub mod lookups;
pub mod referral_key;

#[cfg(test)]
mod customer_lock_races;
#[cfg(test)]
mod test_client;

use crate::connections::dataverse::{DataverseClient, DataverseError};
use crate::connections::odata::literal;
use crate::sinks::SinkError;
use lookups::Lookups;
use serde_json::{Map, Value};

/// A row as Dataverse answered it, with its eTag: what [`OpportunitySink::read`] answers (the
/// engine names it from here, not from the client).
pub use crate::connections::dataverse::Row;
/// How an opportunity is closed (won or lost): what [`take_closing`] finds in mapped columns.
pub use crate::connections::dataverse::actions::Closing;

/// The subject of the opportunity-close activity cosell's closes create.
pub const CLOSE_SUBJECT: &str = "Closed in Partner Center";

/// How opportunities are read: the shape the mappings expect (docs/mapping.md).
pub const OPPORTUNITY_QUERY: &str = "$expand=customerid_account($expand=contact_customer_accounts),parentcontactid,transactioncurrencyid";

/// Reads and writes opportunities.
#[derive(Debug, Clone)]
pub struct OpportunitySink {
    client: DataverseClient,
    lookups: std::sync::Arc<Lookups>,
    referral_key: std::sync::Arc<referral_key::ReferralKey>,
}

/// `row` (a write's answer: columns only) with the expanded lookups of `before` (the
/// opportunity as [`OpportunitySink::read`] gave it before a write that changed no lookup).
/// Expansions are the members whose value is an entity or a collection; columns never are.
fn with_expansions_of(mut row: Row, before: &Value) -> Row {
    if let (Value::Object(after), Value::Object(before)) = (&mut row.body, before) {
        for (member, value) in before {
            if (value.is_object() || value.is_array()) && !after.contains_key(member) {
                after.insert(member.clone(), value.clone());
            }
        }
    }
    row
}

/// How mapped columns want the opportunity closed, if at all: the action and its `statuscode`
/// (the action's default when the mapping gave none). Takes `statecode` (not writable) and a
/// closed `statuscode` (set by the action, not by a write) off the columns; an open
/// `statuscode` stays, to be written.
pub fn take_closing(columns: &mut Map<String, Value>) -> Option<(Closing, i64)> {
    let state = columns.remove("statecode").and_then(|v| v.as_i64())?;
    let closing = Closing::of_state(state)?;
    let status = columns.remove("statuscode").and_then(|v| v.as_i64());
    Some((closing, status.unwrap_or(closing.default_status())))
}

impl OpportunitySink {
    /// A writer through `client`, holding `customer_locks` while it finds or creates a
    /// customer's account ([`crate::store::SyncStore::customer_locks`]).
    pub fn new(
        client: DataverseClient,
        customer_locks: std::sync::Arc<dyn crate::store::CustomerLocks>,
    ) -> Self {
        Self {
            client,
            lookups: std::sync::Arc::new(Lookups::new(customer_locks)),
            referral_key: Default::default(),
        }
    }

    /// Whether `column` (cosell's Referral Identifier) is an alternate key Dataverse enforces
    /// on opportunity, so that it refuses a second opportunity for one referral
    /// ([`referral_key`]; read from the Metadata API, and again after
    /// [`referral_key::RECHECK`]).
    pub async fn referral_id_is_key(&self, column: &str) -> bool {
        self.referral_key.is_key(&self.client, column).await
    }

    /// The id of an opportunity whose `column` (cosell's Referral Identifier) holds
    /// `referral_id`, if one does: an opportunity a run created for that referral and stopped
    /// before it could link.
    pub async fn find_by_referral_id(
        &self,
        column: &str,
        referral_id: &str,
    ) -> Result<Option<String>, SinkError> {
        let rows = self
            .client
            .query(
                "opportunities",
                &format!(
                    "$select=opportunityid&$filter={column} eq {}",
                    literal(referral_id)
                ),
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r["opportunityid"].as_str())
            .map(str::to_owned))
    }

    /// Whether Dataverse answers: one opportunity read.
    pub async fn probe(&self) -> Result<(), SinkError> {
        self.client
            .query("opportunities", "$select=opportunityid&$top=1")
            .await?;
        Ok(())
    }

    /// The lookups it resolves with, shared (for pruning their customer locks).
    pub fn lookups(&self) -> std::sync::Arc<Lookups> {
        self.lookups.clone()
    }

    /// The opportunity with its customer, contacts and currency expanded; `None` if deleted.
    pub async fn read(&self, id: &str) -> Result<Option<Row>, SinkError> {
        Ok(self
            .client
            .get("opportunities", id, OPPORTUNITY_QUERY)
            .await?)
    }

    /// Creates an opportunity from mapped columns; answers its id: the one the mapping gave
    /// (`opportunityid`), or a new one. Its account, contacts and itself are each created once
    /// even when an answer is lost ([`DataverseClient::create_with_id`]).
    pub async fn create(&self, mut columns: Map<String, Value>) -> Result<String, SinkError> {
        let closing = take_closing(&mut columns);
        self.lookups.resolve(&self.client, &mut columns).await?;
        let id = match columns.remove("opportunityid") {
            Some(Value::String(id)) => id,
            _ => crate::domain::ids::new_uuid(),
        };
        let id = self
            .client
            .create_with_id("opportunities", &id, &Value::Object(columns))
            .await?;
        self.close(&id, closing).await?;
        Ok(id)
    }

    /// Writes mapped columns to an existing opportunity, only if it is still at `etag`.
    /// Answers the opportunity as the write left it, in the shape [`read`](Self::read) gives,
    /// when the write itself tells it: a plain column update answers the row
    /// (`return=representation`), and its lookups' expansions are those of `current` (the
    /// write changed none of them). `None` when only a read can tell (a lookup changed, the
    /// opportunity was closed, nothing was written).
    pub async fn update(
        &self,
        id: &str,
        mut columns: Map<String, Value>,
        current: &Value,
        etag: Option<&str>,
    ) -> Result<Option<Row>, SinkError> {
        let closing = take_closing(&mut columns);
        let was_open = current["statecode"].as_i64().unwrap_or(0) == 0;
        self.lookups.resolve(&self.client, &mut columns).await?;
        let closes = was_open && closing.is_some();
        let mut after = None;
        if !columns.is_empty() {
            let plain = !closes && !columns.keys().any(|c| c.contains('@'));
            let body = Value::Object(columns);
            let written = if plain {
                self.client
                    .update_returning("opportunities", id, &body, etag)
                    .await
                    .map(|row| after = Some(with_expansions_of(row, current)))
            } else {
                self.client.update("opportunities", id, &body, etag).await
            };
            match written {
                Err(DataverseError::PreconditionFailed(_)) => {
                    return Err(SinkError::Changed(format!(
                        "opportunity {id} changed while it was being synced; it is processed again"
                    )));
                }
                other => other?,
            }
        }
        if was_open {
            self.close(id, closing).await?;
        }
        Ok(after)
    }

    async fn close(&self, id: &str, closing: Option<(Closing, i64)>) -> Result<(), SinkError> {
        match closing {
            Some((Closing::Won, status)) => {
                self.client
                    .win_opportunity(id, status, CLOSE_SUBJECT)
                    .await?
            }
            Some((Closing::Lost, status)) => {
                self.client
                    .lose_opportunity(id, status, CLOSE_SUBJECT)
                    .await?
            }
            None => {}
        }
        Ok(())
    }

    /// Writes cosell's own columns for the seller (audit, marks, referral id and link), only
    /// if the opportunity is still at `etag`; a 412 means the seller changed it meanwhile and
    /// that change is synced next, so the note is dropped rather than forced (answers `false`).
    pub async fn note(
        &self,
        id: &str,
        columns: Map<String, Value>,
        etag: Option<&str>,
    ) -> Result<bool, SinkError> {
        if columns.is_empty() {
            return Ok(true);
        }
        match self
            .client
            .update("opportunities", id, &Value::Object(columns), etag)
            .await
        {
            Ok(()) => Ok(true),
            Err(DataverseError::PreconditionFailed(_)) => {
                tracing::debug!(
                    opportunity = id,
                    "opportunity changed before cosell's note; the next sync writes it"
                );
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
