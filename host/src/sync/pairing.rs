//! Which run links a new pair, and why the other side's run waits for it.
//!
//! A pair is made by one side: a referral from a seller's opportunity (flow 1), an opportunity
//! from a Microsoft referral (flow 3). The record cosell creates carries the other's id (the
//! referral its opportunity's id in `externalReferenceId`, the opportunity its referral's id in
//! the Referral Identifier column), and its own change event (Partner Center's
//! `referral-created`, Dataverse's `Create`) can run while the run that created it has not
//! saved the link yet: the two events have different lock keys until then. Without a link
//! there is no snapshot of what was synced, so that event would take every difference as its
//! own side's change and write its record over the other: the referral's values, as the
//! create made it, over a seller's newer edit of the opportunity, or the opportunity's values,
//! as created, over Microsoft's newer change of the referral.
//!
//! So only the side that made the pair links it; the event of the record made from it waits
//! until the link is saved ([`SyncError::AwaitingLink`]: retried behind the lock key of the run
//! making the pair, so it is not handed out while that run goes on, and spends one attempt
//! however long the run takes), and then runs on the link: cosell's own write, recognised as
//! an echo, or a real change, judged against the snapshots.
//! - A referral naming an opportunity whose referral create is under way (its intent is open,
//!   [`crate::store::SyncStore::begin_referral_intent`]) waits for that run, which links it
//!   (the link is saved before the intent ends).
//! - An opportunity carrying a referral id that is not linked, or whose create is pending
//!   (`create_intent.rs`: the referral's run recorded it before the create and has not linked
//!   the result), waits for the referral's run (flow 3). The referral is queued as a
//!   re-listing would queue it: a run under way or waiting for its retry keeps its place, and
//!   one whose event was lost (a host stopped between the create and the link, a backfill that
//!   stopped before saving its links) is run; it finds the pending create, or adopts the
//!   opportunity by that column.

use super::{SyncEngine, SyncError};
use crate::store::{NewEvent, RECONCILE_ORIGIN, Side, lock_key};
use serde_json::json;

impl SyncEngine {
    /// The failure that makes the event of referral `rid` wait while the run creating it from
    /// opportunity `oid` has not linked it (`None`: no such run, go on).
    pub(super) fn referral_awaits_its_opportunity(
        &self,
        rid: &str,
        oid: &str,
    ) -> Result<Option<SyncError>, SyncError> {
        if self.store.referral_intent(oid)?.is_none() {
            return Ok(None);
        }
        Ok(Some(SyncError::AwaitingLink {
            lock_key: lock_key(self.store.as_ref(), Side::Dataverse, oid)?,
            reason: format!(
                "referral {rid} is being created from opportunity {oid}, which is not linked \
                 to it yet; it runs again once that sync has linked them"
            ),
        }))
    }

    /// The failure that makes the event of opportunity `oid`, which carries the id of referral
    /// `rid` but is not linked to it, wait for the referral's sync to link them; queues that
    /// sync.
    pub(super) fn opportunity_awaits_its_referral(
        &self,
        oid: &str,
        rid: &str,
    ) -> Result<SyncError, SyncError> {
        let event = NewEvent {
            side: Side::PartnerCenter,
            record_id: rid.to_owned(),
            lock_key: lock_key(self.store.as_ref(), Side::PartnerCenter, rid)?,
            origin: RECONCILE_ORIGIN.to_owned(),
            payload: json!({"awaitedBy": format!("opportunity:{oid}")}).to_string(),
        };
        self.store.enqueue(&event)?;
        Ok(SyncError::AwaitingLink {
            lock_key: event.lock_key,
            reason: format!(
                "opportunity {oid} carries referral {rid}, which is not linked to it yet; it \
                 runs again once the referral's sync has linked them"
            ),
        })
    }
}
