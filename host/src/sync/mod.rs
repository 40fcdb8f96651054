//! The sync engine: takes an event from the queue, reads both records, runs the direction's
//! mapping pipeline, and writes only what differs to the other side.
//!
//! - [`to_crm`]: a referral changed → the opportunity (flows 3 and 4 of docs/sync.md).
//! - [`to_partner_center`]: an opportunity changed → the referral (flows 1 and 2).
//! - [`conflicts`]: per-field ownership when both sides changed (flow 6).
//! - [`fingerprint`]: content hashes that recognise cosell's own writes coming back (flow 5).
//! - [`seller_notes`]: the Audit column and the ✔/✖ marks the seller sees (flow 7).
//! - `pairing`: only the side that made a pair links it; the other side's event waits.
//! - [`compare`]: subset equality and JSON Patch diffs; [`outcome`]: results and failures.
//! - [`worker`]: the workers that drain the queue, retry, park and dead-letter; `deferred`:
//!   the store writes a run leaves to the hand-over that settles its event; `read_at_claim`:
//!   the link a run reads first, read in the hand-over that claimed its event.
//! - [`availability`]: whether each service answers; an outage pauses the work instead of
//!   spending events' attempts.
//! - [`backfill`]: creating the opportunities of existing referrals in bulk (`$batch`), linked
//!   so the engine treats them as its own.
//!
//! Processing is idempotent because it is state-based: an event only names a record, the
//! engine reads the current state of both sides and writes the difference, so an event
//! handled twice (a duplicate delivery, a crash before the queue entry was removed) writes
//! nothing the second time.

pub mod availability;
pub mod backfill;
pub mod compare;
pub mod conflicts;
mod create_intent;
mod deferred;
pub mod outcome;
mod pairing;
mod read_at_claim;
pub mod seller_notes;
pub mod sharing;
mod to_crm;
mod to_partner_center;
pub mod worker;
mod write_intent;

pub use outcome::{Done, SyncError};

use crate::config::SyncConfig;
use crate::domain::fingerprint::{self, Volatile};
use crate::metrics::Metrics;
use crate::pipeline::{PipelineInput, Pipelines};
use crate::runtime::Direction;
use crate::sinks::dataverse::OpportunitySink;
use crate::sinks::partner_center::ReferralSink;
use crate::store::{AuditEntry, LastRun, Link, QueuedEvent, Side, SyncStore, WritesInFlight};
use availability::Availability;
use outcome::{Mapped, classify_pipeline};
use std::sync::Arc;

/// Everything the engine works with.
pub struct SyncEngine {
    store: Arc<dyn SyncStore>,
    pipelines: Arc<Pipelines>,
    referrals: ReferralSink,
    opportunities: OpportunitySink,
    config: SyncConfig,
    metrics: Arc<Metrics>,
    availability: Availability,
    audit_column: String,
    /// The opportunities its runs are writing, until their settles record the writes.
    writes_in_flight: WritesInFlight,
}

impl SyncEngine {
    /// Whether the engine has paused claiming events for `service` (an outage, or the
    /// probe after one): what readiness reports.
    pub fn is_paused(&self, service: Side) -> bool {
        self.availability.is_paused(service)
    }

    /// An engine over `store` and `pipelines`, writing referrals through `referrals` and
    /// opportunities through `opportunities`.
    pub fn new(
        store: Arc<dyn SyncStore>,
        pipelines: Arc<Pipelines>,
        referrals: ReferralSink,
        opportunities: OpportunitySink,
        config: SyncConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            pipelines,
            referrals,
            opportunities,
            audit_column: config.column("audit"),
            availability: Availability::new(&config, metrics.clone()),
            config,
            metrics,
            writes_in_flight: WritesInFlight::default(),
        }
    }

    /// The opportunities its runs are writing to Dataverse and have not yet recorded as synced
    /// (for the intake to wait on before it tells the echo of such a write).
    pub fn writes_in_flight(&self) -> WritesInFlight {
        self.writes_in_flight.clone()
    }

    /// Marks opportunity `id` as written by this run until the settle of its event.
    pub(crate) fn mark_written(&self, id: &str) {
        deferred::hold_until_settle(self.writes_in_flight.mark(id));
    }

    /// The store it keeps its queue, links and audit trail in.
    pub fn store(&self) -> &Arc<dyn SyncStore> {
        &self.store
    }

    /// Processes one event.
    pub async fn process(&self, event: &QueuedEvent) -> Result<Done, SyncError> {
        match event.side {
            Side::PartnerCenter => self.referral_changed(event).await,
            Side::Dataverse => self.opportunity_changed(event).await,
        }
    }

    /// Whether `service` answers: one cheap read (any answer, even a refusal, is one).
    pub(crate) async fn probe(&self, service: Side) -> Result<(), SyncError> {
        match service {
            Side::PartnerCenter => self.referrals.probe().await?,
            Side::Dataverse => self.opportunities.probe().await?,
        }
        Ok(())
    }

    /// What the opportunity fingerprint leaves out.
    pub(crate) fn volatile(&self) -> Volatile<'_> {
        Volatile {
            audit_column: &self.audit_column,
            marks: self.marks(),
        }
    }

    pub(crate) fn audit_column(&self) -> &str {
        &self.audit_column
    }

    /// Runs a pipeline on a live record (`referral:<id>` or `opportunity:<id>`; its steps'
    /// shadows run too), keeps the run for `cosell mapping replay`, and sorts its result.
    pub(crate) async fn map(
        &self,
        direction: Direction,
        record: &str,
        event: &str,
        document: String,
        current: Option<String>,
    ) -> Result<Mapped, SyncError> {
        let input = PipelineInput {
            event: event.to_owned(),
            tenant: self.config.tenant.clone(),
            timestamp: chrono::Utc::now(),
            document,
            current,
        };
        let mut last = LastRun {
            record: record.to_owned(),
            direction: direction.to_string(),
            event: input.event.clone(),
            tenant: input.tenant.clone(),
            input: input.document.clone(),
            current: input.current.clone(),
            // The config revision of the pipeline's first step (of every step when it has one).
            config_revision: self
                .pipelines
                .direction(direction)
                .first()
                .and_then(|step| step.config_revision()),
            output: None,
            error: None,
            at: input
                .timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let result = self
            .pipelines
            .run_live(direction, input, record)
            .await
            .map(|o| o.document);
        match &result {
            Ok(output) => last.output = Some(output.clone()),
            Err(err) => last.error = Some(err.to_string()),
        }
        // Only for replays: a failure to keep it must not fail the record. A worker writes it
        // with the event's settle; elsewhere it is saved now, off the runtime's threads (it
        // carries both documents, and may wait for the store's connection).
        if let Some(last) = deferred::leave_for_settle(last)
            && let Err(e) =
                crate::store::off_runtime(&self.store, move |store| store.save_last_run(&last))
                    .await
        {
            tracing::warn!(record, error = %format!("{e:#}"), "could not keep the pipeline run for replays");
        }
        classify_pipeline(result)
    }

    /// A line of the audit trail, stamped now (for the worker to write with the event's
    /// settle, see [`SyncStore::complete_with_audit`]).
    pub(crate) fn audit_entry(
        &self,
        record: &str,
        direction: Direction,
        outcome: &str,
        detail: &str,
    ) -> AuditEntry {
        AuditEntry {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            record: record.to_owned(),
            direction: direction.to_string(),
            outcome: outcome.to_owned(),
            detail: detail.to_owned(),
        }
    }

    /// Adds a line to the audit trail in the store.
    pub fn audit(&self, record: &str, direction: Direction, outcome: &str, detail: &str) {
        let entry = self.audit_entry(record, direction, outcome, detail);
        if let Err(e) = self.store.audit(&entry) {
            tracing::warn!(error = %format!("{e:#}"), "could not write the audit trail");
        }
    }

    /// The link of referral `id`, read off the async runtime's threads (or as the claim of the
    /// run's event read it, the first time).
    pub(crate) async fn link_by_referral(&self, id: &str) -> Result<Option<Link>, SyncError> {
        if let Some(found) = read_at_claim::take(Side::PartnerCenter, id) {
            return Ok(found);
        }
        let id = id.to_owned();
        Ok(
            crate::store::off_runtime(&self.store, move |store| store.link_by_referral(&id))
                .await?,
        )
    }

    /// The link of opportunity `id`, read off the async runtime's threads (or as the claim of
    /// the run's event read it, the first time).
    pub(crate) async fn link_by_opportunity(&self, id: &str) -> Result<Option<Link>, SyncError> {
        if let Some(found) = read_at_claim::take(Side::Dataverse, id) {
            return Ok(found);
        }
        let id = id.to_owned();
        Ok(
            crate::store::off_runtime(&self.store, move |store| store.link_by_opportunity(&id))
                .await?,
        )
    }

    /// Saves `link` off the async runtime's threads (its write may wait for the database's
    /// write lock, held by a commit on its way to the disk); answers its id.
    pub(crate) async fn save_link(&self, link: &Link) -> Result<i64, SyncError> {
        read_at_claim::forget();
        let link = link.clone();
        Ok(crate::store::off_runtime(&self.store, move |store| store.save_link(&link)).await?)
    }

    /// Saves `link` as the run's last word on it, once the run has written to the other side:
    /// a worker's run leaves the save to its event's settle ([`deferred`]: one hand-over to the
    /// store fewer, and on SQLite one transaction fewer). Nothing in the run may read or save
    /// the link after this.
    pub(crate) async fn save_link_at_settle(&self, link: &Link) -> Result<(), SyncError> {
        read_at_claim::forget();
        if let Some(link) = deferred::leave_link_for_settle(link.clone()) {
            self.save_link(&link).await?;
        }
        Ok(())
    }

    /// Saves the write recorded in `link` (see [`write_intent`]) on `on_record`, the link as the
    /// store holds it before this run's result; `link` takes the saved row's id.
    async fn save_write_intent(&self, link: &mut Link, on_record: &Link) -> Result<(), SyncError> {
        link.id = Some(
            self.save_link(&write_intent::intent(link, on_record))
                .await?,
        );
        Ok(())
    }

    /// The link of a record, if any.
    pub(crate) fn link_of(&self, side: Side, id: &str) -> Result<Option<Link>, SyncError> {
        Ok(link_in(self.store.as_ref(), side, id)?)
    }
}

/// The link of record `id` on `side` in `store`, if any.
pub(crate) fn link_in(store: &dyn SyncStore, side: Side, id: &str) -> anyhow::Result<Option<Link>> {
    match side {
        Side::PartnerCenter => store.link_by_referral(id),
        Side::Dataverse => store.link_by_opportunity(id),
    }
}
