//! Turning one referral into the write that creates its opportunity: the active
//! referral-to-opportunity pipeline (as for a `referral-created` event, with the event name
//! `backfill`), the ✔ mark on the name, the lookups ([`super::lookups`]), and, for a won or
//! lost referral, the close.
//!
//! [`Run::draft`] maps and finds the currency; the chunk's customers are then resolved
//! together ([`super::customers`]); [`Run::plan`] binds each draft's account and plans its
//! contacts, which are created together; [`Run::finish`] makes each draft whose contacts exist
//! into its write.
//!
//! Every create names the new opportunity's id (the mapping's `opportunityid`, from
//! `externalReferenceId`, or a new one) and never updates a row that exists, so a write whose
//! answer is lost is found out, not repeated. A closed referral's write is a change set of two
//! requests: the create and `WinOpportunity`/`LoseOpportunity` for that id. Dataverse applies
//! both or neither, so an opportunity is never left open for a closed referral, and a failed
//! close leaves nothing to clean up ([`OpportunityCreate`]).
//!
//! [`OpportunityCreate`]: crate::sinks::dataverse::bulk_write::OpportunityCreate

use super::Run;
use super::lookups::Contacts;
use super::report::{Outcome, RecordOutcome};
use crate::domain::fingerprint;
use crate::pipeline::PipelineInput;
use crate::runtime::Direction;
use crate::sinks::dataverse::bulk_write::OpportunityCreate;
use crate::sinks::dataverse::lookups::customer_key;
use crate::sinks::dataverse::{Closing, take_closing};
use crate::store::Link;
use crate::sync::SyncError;
use crate::sync::outcome::{Mapped, classify_pipeline};
use crate::sync::seller_notes::mark_name_synced;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The event name the mapping sees (it appears in the opportunity's Audit line).
pub(super) const EVENT: &str = "backfill";

/// A referral mapped, its currency found, its customer and contacts perhaps still to find or
/// create.
#[derive(Debug)]
pub(super) struct Draft {
    referral_id: String,
    columns: Map<String, Value>,
    closing: Option<(Closing, i64)>,
    /// The customer as the mapping wrote it (`customerid_account`), until it is bound.
    account: Option<Value>,
    pub contacts: Contacts,
    link: Link,
}

impl Draft {
    /// The customer as the mapping wrote it.
    pub(super) fn account(&self) -> Option<&Value> {
        self.account.as_ref()
    }
}

/// A referral ready to be written.
#[derive(Debug)]
pub(super) struct Prepared {
    pub referral_id: String,
    /// The create, or the change set of the create and the close.
    pub create: OpportunityCreate,
    /// The link to save once the opportunity exists (its id still missing).
    pub link: Link,
    pub closed: bool,
}

impl Prepared {
    /// How many requests its write takes.
    pub(super) fn requests(&self) -> usize {
        self.create.requests()
    }
}

impl Run<'_> {
    /// Maps `doc` and, unless this is a dry run, finds its currency: the draft of its write,
    /// or the referral's outcome when there is nothing to write.
    pub(super) async fn draft(&self, id: String, doc: Value) -> Result<Draft, RecordOutcome> {
        let outcome = |o| RecordOutcome::new(&id, o);
        let input = PipelineInput {
            event: EVENT.to_owned(),
            tenant: self.backfill.sync.tenant.clone(),
            timestamp: chrono::Utc::now(),
            document: doc.to_string(),
            current: None,
        };
        let result = self
            .backfill
            .pipelines
            .run(Direction::PartnerCenterToCrm, input)
            .await
            .map(|o| o.document);
        let mut columns = match classify_pipeline(result) {
            Ok(Mapped::Output(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(columns)) => columns,
                _ => {
                    return Err(outcome(Outcome::Failed(
                        "the mapping's output is not a JSON object of columns".into(),
                    )));
                }
            },
            Ok(Mapped::Skipped(reason)) => {
                return Err(outcome(Outcome::Skipped(format!(
                    "the mapping skipped it: {reason}"
                ))));
            }
            Err(SyncError::Rejected(reason)) => return Err(outcome(Outcome::Refused(reason))),
            Err(
                SyncError::Transient(reason)
                | SyncError::AwaitingLink { reason, .. }
                | SyncError::Parked { reason, .. }
                | SyncError::Unavailable { reason, .. },
            ) => return Err(outcome(Outcome::Failed(reason))),
        };
        if self.options.dry_run {
            return Err(outcome(Outcome::WouldCreate));
        }
        let closing = take_closing(&mut columns);
        mark_name_synced(&mut columns, &self.backfill.sync);
        if let Err(e) = self
            .backfill
            .dataverse
            .bind_currency(self.lookups.currencies(), &mut columns)
            .await
        {
            return Err(outcome(Outcome::Failed(format!(
                "resolving its currency: {e}"
            ))));
        }
        let account = columns.remove("customerid_account");
        Ok(Draft {
            link: Link {
                referral_id: Some(id.clone()),
                pc_hash: Some(fingerprint::referral(&doc)),
                pc_snapshot: Some(doc.to_string()),
                ..Link::default()
            },
            referral_id: id,
            columns,
            closing,
            account,
            contacts: Contacts::default(),
        })
    }

    /// Binds the draft's account (resolved for the chunk; `failed` holds why a customer could
    /// not be, by [`customer_key`]) and plans its contacts.
    pub(super) fn plan(
        &self,
        mut draft: Draft,
        failed: &HashMap<String, String>,
    ) -> Result<Draft, RecordOutcome> {
        let Some(account) = draft.account.take() else {
            return Ok(draft);
        };
        let customer = match failed.get(&customer_key(&account)) {
            Some(reason) => Err(reason.clone()),
            None => self
                .lookups
                .known(&account)
                .ok_or_else(|| "its customer was not resolved".to_owned()),
        };
        match customer {
            Ok(customer) => {
                draft.contacts =
                    self.lookups
                        .plan_contacts(&customer, &account, &mut draft.columns);
                Ok(draft)
            }
            Err(reason) => Err(RecordOutcome::new(
                draft.referral_id,
                Outcome::Failed(reason),
            )),
        }
    }

    /// The write of `draft`, unless one of its contacts could not be created (`failed`: the
    /// reason by contact id).
    pub(super) fn finish(
        &self,
        draft: Draft,
        failed: &HashMap<String, String>,
    ) -> Result<Prepared, RecordOutcome> {
        let Draft {
            referral_id,
            columns,
            closing,
            contacts,
            link,
            ..
        } = draft;
        if let Some((contact, reason)) = contacts
            .ids
            .iter()
            .find_map(|id| failed.get(id).map(|reason| (id, reason)))
        {
            return Err(RecordOutcome::new(
                referral_id,
                Outcome::Failed(format!("creating its contact {contact}: {reason}")),
            ));
        }
        let closed = closing.is_some();
        Ok(Prepared {
            create: OpportunityCreate::new(&referral_id, columns, closing),
            referral_id,
            link,
            closed,
        })
    }
}
