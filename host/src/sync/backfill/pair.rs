//! Finishing the pairs a backfill created, as the live engine would, so a host running beside
//! it has nothing left to write when their webhooks come back.
//!
//! A new opportunity fires Dataverse's `Create` (or `Win`/`Lose`) webhook, and the live host
//! runs its CRM → Partner Center direction on it: without the opportunity's fingerprint on the
//! link it maps the opportunity, PATCHes the referral with what the mapping adds (the
//! opportunity's id in `externalReferenceId`, with the default mappings), and that PATCH comes
//! back as Partner Center's `referral-updated`, whose run notes the sync on the opportunity
//! (one Dataverse update). So the backfill does that part itself, for each group of created
//! pairs before their links are saved:
//!
//! 1. The created opportunities are read back as the engine reads them (lookups expanded),
//!    many in one query: their fingerprint and snapshot go on the link, so the `Create`
//!    webhook is recognised as an echo.
//! 2. For each, the CRM → Partner Center pipeline runs over the referral as listed; the fields
//!    it changes are sent as one JSON Patch with `If-Match` (the referral's eTag as listed),
//!    and the referral Partner Center answers (`Prefer: return=representation`) gives the
//!    link its fingerprint, so the `referral-updated` webhook is an echo too.
//!
//! Nothing here can lose data: when a step fails (a referral changed meanwhile: 412; the
//! mapping refused) the link is left as it was, without the opportunity's fingerprint, and the
//! live engine does the step on the opportunity's next event as before. Without a Partner
//! Center sink (a backfill given its referrals in memory) nothing here is done.

use super::Run;
use super::report::{Outcome, RecordOutcome};
use crate::domain::fingerprint::{self, Volatile};
use crate::pipeline::PipelineInput;
use crate::runtime::Direction;
use crate::sinks::partner_center::ReferralSink;
use crate::store::Link;
use crate::sync::compare::{apply_ops, patch_ops};
use crate::sync::outcome::{Mapped, classify_pipeline};
use crate::sync::sharing::hold_back_sharing;
use futures_util::{StreamExt as _, stream};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The event name the CRM → Partner Center mapping sees, as the live engine gives it.
const EVENT: &str = "opportunity-updated";

impl Run<'_> {
    /// Gives the links of the created opportunities in `outcomes` what the live engine would
    /// record after syncing both sides (see the module doc); answers `outcomes`.
    pub(super) async fn pair(&self, mut outcomes: Vec<RecordOutcome>) -> Vec<RecordOutcome> {
        if self.options.dry_run || self.backfill.partner_center.is_none() {
            return outcomes;
        }
        let ids: Vec<String> = outcomes
            .iter()
            .filter_map(|record| match &record.outcome {
                Outcome::Created { link, .. } => link.opportunity_id.clone(),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return outcomes;
        }
        let mut rows = self.read_back(&ids).await;
        let links = outcomes
            .iter_mut()
            .filter_map(|record| match &mut record.outcome {
                Outcome::Created { link, .. } => {
                    let row = rows.remove(link.opportunity_id.as_deref()?)?;
                    Some((link.as_mut(), row))
                }
                _ => None,
            });
        stream::iter(links)
            .for_each_concurrent(self.options.mode.concurrency(), |(link, row)| {
                self.pair_one(link, row)
            })
            .await;
        outcomes
    }

    /// The opportunities `ids`, with the engine's expansions, by id; those that could not be
    /// read are missing (their links keep no opportunity fingerprint).
    async fn read_back(&self, ids: &[String]) -> HashMap<String, Value> {
        let (rows, errors) = self
            .backfill
            .dataverse
            .read_many(ids, self.options.mode.concurrency())
            .await;
        for e in errors {
            tracing::info!(
                error = %e,
                "backfill: could not read created opportunities back; a live host syncs them on their events"
            );
        }
        rows
    }

    /// Records `row` (the created opportunity as read back) on `link` and sends its referral
    /// what the CRM → Partner Center mapping adds.
    async fn pair_one(&self, link: &mut Link, row: Value) {
        let sync = &self.backfill.sync;
        let (rid, oid) = match (&link.referral_id, &link.opportunity_id) {
            (Some(rid), Some(oid)) => (rid.clone(), oid.clone()),
            _ => return,
        };
        let wanted_link = sync.referral_link_template.replace("{id}", &rid);
        if row[sync.column("referralidentifier")] != json!(rid)
            || row[sync.column("referrallink")] != json!(wanted_link)
        {
            // The engine writes the ids back on its next run and only then records the
            // opportunity's fingerprint: not taken for synced here either.
            return;
        }
        let Some(client) = &self.backfill.partner_center else {
            return;
        };
        let Some(referral) = link
            .pc_snapshot
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        else {
            return;
        };
        let synced = match self.send_to_referral(client, &oid, &row, referral).await {
            Ok(synced) => synced,
            Err(reason) => {
                tracing::info!(
                    referral = %rid,
                    opportunity = %oid,
                    reason,
                    "backfill: the referral was not given the opportunity's fields; a live host sends them on its next event"
                );
                return;
            }
        };
        // Only now is the opportunity in sync: with its fingerprint on the link before the
        // referral had what the mapping sends, the engine would take the opportunity's next
        // event for an echo and never send it.
        let audit = sync.column("audit");
        let volatile = Volatile {
            audit_column: &audit,
            marks: [&sync.success_mark, &sync.failure_mark],
        };
        link.crm_hash = Some(fingerprint::opportunity(&row, &volatile));
        link.crm_snapshot = Some(row.to_string());
        if let Some((snapshot, updated)) = synced {
            link.pc_hash = Some(fingerprint::referral(&updated));
            link.pc_snapshot = Some(snapshot.to_string());
        }
    }

    /// Maps `row` over `referral` and PATCHes the fields that differ; answers the referral as
    /// now synced (as listed plus the operations) and as Partner Center answered, or `None`
    /// when there was nothing to send.
    async fn send_to_referral(
        &self,
        client: &ReferralSink,
        oid: &str,
        row: &Value,
        referral: Value,
    ) -> Result<Option<(Value, Value)>, String> {
        let input = PipelineInput {
            event: EVENT.to_owned(),
            tenant: self.backfill.sync.tenant.clone(),
            timestamp: chrono::Utc::now(),
            document: row.to_string(),
            current: Some(referral.to_string()),
        };
        let result = self
            .backfill
            .pipelines
            .run(Direction::CrmToPartnerCenter, input)
            .await
            .map(|o| o.document);
        let mut wanted = match classify_pipeline(result) {
            Ok(Mapped::Output(text)) => serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("the mapping's output is not JSON: {e}"))?,
            Ok(Mapped::Skipped(_)) => return Ok(None),
            Err(e) => return Err(format!("the CRM -> Partner Center mapping failed: {e}")),
        };
        // As the engine does for a pair with no snapshot of the opportunity: sharing with
        // Microsoft is the seller's decision, taken in the CRM after the pair exists.
        hold_back_sharing(&mut wanted, &referral);
        let ops = patch_ops(&referral, &wanted);
        if ops.is_empty() {
            return Ok(None);
        }
        let rid = referral["id"].as_str().unwrap_or_default();
        // Without the eTag as listed, a PATCH could overwrite a change made since.
        let Some(etag) = referral["eTag"].as_str() else {
            return Err(format!("referral {rid} was listed without its eTag"));
        };
        let updated = client
            .patch(rid, &ops, etag)
            .await
            .map_err(|e| format!("PATCH of referral {rid} for opportunity {oid}: {e}"))?;
        let mut synced = referral;
        apply_ops(&mut synced, &ops);
        Ok(Some((synced, updated)))
    }
}
