//! What is there already: which referrals a backfill must not create again, and which are not
//! for import at all.
//!
//! At the start one paged query lists every opportunity that carries a referral id (the
//! Referral Identifier column the mapping writes), 5,000 rows a page: one request for a fresh
//! environment, one per 5,000 opportunities otherwise. Then, for each referral, right before
//! it is mapped, the state store's link is read (local, no request). So a re-run skips
//! everything the first run created (linked, or created by a run that stopped before saving
//! its links: those are adopted), and a run next to a live host skips what the host created
//! before the scan or linked before the referral's turn.
//!
//! Why not one Dataverse query per batch of ids: it would cost a request per batch, and the
//! filter (an `or` of up to a thousand ids on a custom column Dataverse does not index) runs
//! against the same execution-time quota as the creates; it would only narrow, not close, the
//! window a live host has to create the same opportunity between the check and the create.
//! That window (the host creating a referral's opportunity in the moment the backfill writes
//! it) is reported, not silent: see `super::links`. Where the Referral Identifier column is an
//! alternate key (as in the Dataverse emulator), Dataverse refuses the second create and the
//! referral counts as already there.

use super::report::{Outcome, RecordOutcome};
use super::{ClosedReferrals, Options};
use crate::sinks::dataverse::bulk_write::BulkWriter;
use crate::sinks::partner_center::targets_microsoft;
use crate::store::{Link, SyncStore};
use anyhow::Context as _;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Why a referral is skipped.
pub(super) const MICROSOFT_HALF: &str = "the Microsoft-targeted half of a co-sell referral";
pub(super) const CLOSED_SKIPPED: &str =
    "closed (won, lost, declined or expired), and closed referrals are skipped";
pub(super) const LISTED_TWICE: &str = "listed twice (processed at its first listing)";

/// The opportunities carrying a referral id, and the referrals this run has seen.
pub(super) struct Existing {
    /// Referral id → the id of an opportunity carrying it.
    by_referral: HashMap<String, String>,
    seen: Mutex<HashSet<String>>,
}

impl Existing {
    /// Lists every opportunity whose `column` (the Referral Identifier) is set.
    pub(super) async fn scan(dv: &BulkWriter, column: &str) -> anyhow::Result<Self> {
        let by_referral = dv.opportunities_carrying(column).await.with_context(|| {
            format!(
                "listing the opportunities that already carry a referral id ({column}), so \
                     none is created twice; check [dataverse] and that `cosell dataverse \
                     provision` created cosell's columns"
            )
        })?;
        Ok(Self {
            by_referral,
            seen: Mutex::default(),
        })
    }

    /// How many opportunities carried a referral id at the start.
    pub(super) fn len(&self) -> usize {
        self.by_referral.len()
    }

    /// Decides what a listed referral needs: `Ok` with the referral (and its id) when it is to
    /// be mapped and created, or its outcome when it is not.
    pub(super) fn triage(
        &self,
        store: &dyn SyncStore,
        options: &Options,
        doc: Value,
    ) -> Result<(String, Value), RecordOutcome> {
        let Some(id) = doc["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
        else {
            return Err(RecordOutcome::new(
                "(no id)",
                Outcome::Failed("a listed referral has no id".into()),
            ));
        };
        let skip = |reason: &str| RecordOutcome::new(&id, Outcome::Skipped(reason.to_owned()));
        if !self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
        {
            return Err(skip(LISTED_TWICE));
        }
        if targets_microsoft(&doc) {
            return Err(skip(MICROSOFT_HALF));
        }
        if options.closed == ClosedReferrals::Skip && doc["status"] == "Closed" {
            return Err(skip(CLOSED_SKIPPED));
        }
        match self.already_there(store, options, &id) {
            Ok(None) => Ok((id, doc)),
            Ok(Some(outcome)) => Err(RecordOutcome::new(id, outcome)),
            Err(e) => Err(RecordOutcome::new(
                id,
                Outcome::Failed(format!("reading its link in the state store: {e:#}")),
            )),
        }
    }

    /// The outcome of a referral that is linked or has an opportunity, `None` otherwise.
    fn already_there(
        &self,
        store: &dyn SyncStore,
        options: &Options,
        id: &str,
    ) -> anyhow::Result<Option<Outcome>> {
        let link = store.link_by_referral(id)?;
        if link.as_ref().is_some_and(|l| l.opportunity_id.is_some()) {
            return Ok(Some(Outcome::AlreadyThere { adopt: None }));
        }
        let Some(opportunity) = self.by_referral.get(id) else {
            return Ok(None);
        };
        if options.dry_run {
            return Ok(Some(Outcome::AlreadyThere { adopt: None }));
        }
        if let Some(other) = store
            .link_by_opportunity(opportunity)?
            .and_then(|l| l.referral_id)
            .filter(|other| other != id)
        {
            return Ok(Some(Outcome::Failed(format!(
                "opportunity {opportunity} carries this referral's id but is linked to referral \
                 {other}; correct its Referral Identifier column"
            ))));
        }
        // Created by a run that stopped before saving its link (or by a host that crashed in
        // between): linked by ids only, as the sync engine adopts it, so the next event reads
        // both sides and writes what differs. A link without an opportunity keeps its id and
        // its last error.
        let (link_id, last_error) = link.map(|l| (l.id, l.last_error)).unwrap_or_default();
        Ok(Some(Outcome::AlreadyThere {
            adopt: Some(Box::new(Link {
                id: link_id,
                referral_id: Some(id.to_owned()),
                opportunity_id: Some(opportunity.clone()),
                last_error,
                ..Link::default()
            })),
        }))
    }
}
