//! Backfill: creating the Dataverse opportunities of referrals that exist already, in bulk,
//! for a partner who connects cosell to a pile of referrals (docs/backfill.md).
//!
//! The sync engine creates an opportunity when a referral's event arrives; a backfill does the
//! same for every referral it is given, with the same mapping and lookups, but writes them in
//! `$batch` requests ([`Mode::Batch`]) or one request per referral ([`Mode::PerRecord`], for
//! comparison), and saves their links in the state store so the engine treats them as
//! cosell's. Per referral, in order:
//!
//! 1. [`existing`]: skipped when already linked, or when an opportunity carrying its referral
//!    id exists (then adopted: linked by ids), so a re-run, or a run next to a live host,
//!    creates no duplicates; skipped too when it is the Microsoft half of a co-sell pair, or
//!    closed and closed referrals are to be skipped.
//! 2. [`prepare`]: the active referral-to-opportunity pipeline, then the lookups
//!    ([`lookups`], [`customers`]: currency and customer once per run, a chunk's new accounts
//!    and contacts created together), then the create, and for a won or lost referral the close
//!    in the same change set: a closed referral ends closed, or is not written at all.
//! 3. [`write`]: the `$batch` (continue-on-error, so a refused record stops nothing else) or
//!    the single request.
//! 4. [`pair`]: each pair is finished as the live engine would finish it: the created
//!    opportunities read back (many per query) for their fingerprints, and the referrals sent
//!    what the CRM -> Partner Center mapping adds (their opportunity's id), so the webhooks
//!    these writes fire are echoes to a host running beside the backfill.
//! 5. [`links`]: the links of what was created are saved, many in one transaction;
//!    [`BackfillReport`] counts every referral in exactly one outcome, with the reason of each
//!    refusal and failure.
//!
//! A link saved by the backfill holds both ids and the fingerprints and snapshots of both
//! records as [`pair`] left them, so the next event of either, unchanged, is recognised as an
//! echo. Where a step of [`pair`] could not be done (no Partner Center client, a referral
//! changed since it was listed), the link lacks that side's fingerprint and the engine's next
//! event does the step, as for any pair it has not synced yet.
//!
//! Preparing runs ahead of writing (a bounded queue of writes between them), so the mapping
//! and lookups of the next referrals overlap the `$batch` requests in flight.

mod customers;
mod existing;
mod links;
mod lookups;
mod pair;
mod prepare;
mod report;
mod setup;
mod write;

pub use report::{BackfillReport, RecordFailure};

use crate::config::SyncConfig;
use crate::pipeline::Pipelines;
use crate::sinks::dataverse::bulk_write::{BulkWriter, MAX_BATCH_REQUESTS};
use crate::sinks::partner_center::ReferralSink;
use crate::store::SyncStore;
use anyhow::{Result, bail};
use existing::Existing;
use futures_util::{Stream, StreamExt as _, stream};
use lookups::RunLookups;
use prepare::Prepared;
use report::RecordOutcome;
use serde_json::Value;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// The most writes in flight at once: Dataverse's limit of concurrent requests per user.
pub const MAX_CONCURRENCY: usize = 52;

/// Referrals mapped (and their lookups resolved) at the same time; the pipelines' own instance
/// slots bound the mapping calls further.
const PREPARE_CONCURRENCY: usize = 16;

/// Outcomes whose links are saved in one transaction, at most.
const LINKS_PER_SAVE: usize = 256;

/// How the creates are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `$batch` requests of at most `size` requests (1..=1000; a closed referral's change set
    /// counts two, and is never split), `concurrency` of them in flight (1..=52).
    Batch {
        /// Requests per `$batch`, at most (1..=1000).
        size: usize,
        /// `$batch` requests in flight, at most (1..=52).
        concurrency: usize,
    },
    /// `CreateMultiple` requests of at most `size` open referrals' opportunities (1..=1000),
    /// `concurrency` of them in flight (1..=52). A closed referral's create and close go in a
    /// `$batch` change set (a bulk message creates, it cannot close); a request Dataverse
    /// refuses as a whole is sent again as a `$batch`, so each referral gets its own outcome,
    /// and when the table takes no `CreateMultiple` the rest of the run writes `$batch`es.
    Bulk {
        /// Opportunities per `CreateMultiple` request, at most (1..=1000).
        size: usize,
        /// Bulk requests in flight, at most (1..=52).
        concurrency: usize,
    },
    /// One request per referral, `concurrency` referrals in flight (1..=52).
    PerRecord {
        /// Referrals in flight, at most (1..=52).
        concurrency: usize,
    },
}

impl Mode {
    /// Writes in flight at most.
    pub fn concurrency(self) -> usize {
        match self {
            Mode::Batch { concurrency, .. }
            | Mode::Bulk { concurrency, .. }
            | Mode::PerRecord { concurrency } => concurrency,
        }
    }

    /// The requests of one `$batch`, or the rows of one bulk request; `None` per record.
    pub fn group_size(self) -> Option<usize> {
        match self {
            Mode::Batch { size, .. } | Mode::Bulk { size, .. } => Some(size),
            Mode::PerRecord { .. } => None,
        }
    }
}

/// What to do with referrals that are closed (won, lost, declined, expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClosedReferrals {
    /// Create their opportunities closed: won or lost with the mapping's status, the close in
    /// the same change set as the create.
    #[default]
    Import,
    /// Skip them (counted under their own reason in [`BackfillReport::skipped`]).
    Skip,
}

/// How a backfill runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How the creates are sent.
    pub mode: Mode,
    /// What to do with closed referrals.
    pub closed: ClosedReferrals,
    /// Read, check and map, and count what would be created; write nothing (no account,
    /// contact or opportunity, no link).
    pub dry_run: bool,
}

impl Default for Options {
    /// `CreateMultiple` requests of 100, 8 in flight; closed referrals imported; writing.
    fn default() -> Self {
        Self {
            mode: Mode::Bulk {
                size: 100,
                concurrency: 8,
            },
            closed: ClosedReferrals::Import,
            dry_run: false,
        }
    }
}

impl Options {
    /// Checks the bounds of the mode; the error says what is allowed.
    pub fn validate(&self) -> Result<()> {
        let concurrency = self.mode.concurrency();
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            bail!(
                "the concurrency must be 1 to {MAX_CONCURRENCY} (Dataverse's limit of concurrent requests per user), not {concurrency}"
            );
        }
        if let Some(size) = self.mode.group_size()
            && !(1..=MAX_BATCH_REQUESTS).contains(&size)
        {
            bail!(
                "the batch size must be 1 to {MAX_BATCH_REQUESTS} (Dataverse's limit of requests per $batch, which a refused bulk request falls back to), not {size}"
            );
        }
        Ok(())
    }
}

/// What a backfill works with.
pub struct Backfill {
    /// The pipelines; the backfill runs the partner-center-to-crm one.
    pub pipelines: Arc<Pipelines>,
    /// The Dataverse sink it writes through, whose client's limiter bounds every request in
    /// flight (`max_concurrency`, at most 52 for Dataverse).
    pub dataverse: BulkWriter,
    /// The state store the links go to (the host's, so its engine sees them).
    pub store: Arc<dyn SyncStore>,
    /// Tenant, column prefix and marks, as the host uses them.
    pub sync: SyncConfig,
    /// The Partner Center sink the created pairs' referrals are updated through (see
    /// [`pair`]); `None`: they are not, and a live host does it on their webhooks.
    pub partner_center: Option<ReferralSink>,
}

/// A stream of referrals from referrals already in memory, for [`Backfill::run`].
pub fn referrals_from(
    referrals: impl IntoIterator<Item = Value, IntoIter: Send + 'static>,
) -> impl Stream<Item = Result<Value>> + Send + 'static {
    stream::iter(referrals.into_iter().map(Ok))
}

/// One run: what [`Backfill::run`] shares between its stages.
struct Run<'a> {
    backfill: &'a Backfill,
    options: &'a Options,
    lookups: RunLookups,
    existing: Existing,
    /// Bulk mode: what the `CreateMultiple` requests did (see [`write`]).
    bulk: write::BulkState,
}

/// What the preparing stage hands to the writing stage.
enum Unit {
    /// Referrals that need no write: their outcomes.
    Done(Vec<RecordOutcome>),
    /// One `$batch`, or one referral's request.
    Write(Vec<Prepared>),
}

impl Backfill {
    /// Backfills `referrals` (Partner Center referral resources, e.g. pages of the referral
    /// list; [`referrals_from`] makes such a stream from a `Vec`). `progress` is called with
    /// the totals so far after each write (and group of skips) completes.
    ///
    /// Answers the report of every referral read; an error only when the run could not start
    /// (bad options, the scan of existing opportunities failed), before anything was written.
    /// A referral stream that fails stops the run after what was read (`source_error`).
    pub async fn run<S>(
        &self,
        referrals: S,
        options: &Options,
        mut progress: impl FnMut(&BackfillReport) + Send,
    ) -> Result<BackfillReport>
    where
        S: Stream<Item = Result<Value>> + Send,
    {
        options.validate()?;
        let started = Instant::now();
        let traffic = self.dataverse.traffic();
        let existing =
            Existing::scan(&self.dataverse, &self.sync.column("referralidentifier")).await?;
        tracing::info!(
            carrying_a_referral_id = existing.len(),
            "backfill: existing opportunities listed"
        );
        let run = Run {
            backfill: self,
            options,
            lookups: RunLookups::default(),
            existing,
            bulk: Default::default(),
        };
        let mut report = BackfillReport {
            dry_run: options.dry_run,
            ..BackfillReport::default()
        };
        let stamp = |report: &mut BackfillReport| {
            report.elapsed = started.elapsed();
            let sent = self.dataverse.traffic().since(traffic);
            (report.requests, report.throttled) = (sent.requests, sent.throttled);
            (report.bulk_created, report.bulk_refused) = run.bulk.totals();
        };
        let (units, queue) = mpsc::channel(options.mode.concurrency() * 2);
        let (source_error, ()) = futures_util::future::join(
            run.feed(referrals, units),
            run.drain(queue, &mut report, |report| {
                stamp(report);
                progress(report);
            }),
        )
        .await;
        report.source_error = source_error;
        stamp(&mut report);
        Ok(report)
    }
}

impl Run<'_> {
    /// The preparing stage: reads the referrals a chunk at a time, triages and prepares each
    /// chunk, and queues its writes. Answers why reading stopped early, if it did.
    async fn feed<S>(&self, referrals: S, units: mpsc::Sender<Unit>) -> Option<String>
    where
        S: Stream<Item = Result<Value>> + Send,
    {
        let mode = self.options.mode;
        let chunk_size = mode
            .group_size()
            .unwrap_or((mode.concurrency() * 2).max(PREPARE_CONCURRENCY));
        let mut chunks = pin!(referrals.chunks(chunk_size));
        while let Some(chunk) = chunks.next().await {
            let mut docs = Vec::with_capacity(chunk.len());
            let mut source_error = None;
            for item in chunk {
                match item {
                    Ok(doc) => docs.push(doc),
                    Err(e) => {
                        source_error = Some(format!("{e:#}"));
                        break;
                    }
                }
            }
            for unit in self.prepare_chunk(docs).await {
                if units.send(unit).await.is_err() {
                    return source_error;
                }
            }
            if source_error.is_some() {
                return source_error;
            }
        }
        None
    }

    /// Triages and prepares a chunk; answers its units: the outcomes of what needs no write,
    /// then the writes (`$batch`es of at most `size` requests, or one per referral). The
    /// customers the chunk's referrals name are found or created first, then their new
    /// contacts, each kind together.
    async fn prepare_chunk(&self, docs: Vec<Value>) -> Vec<Unit> {
        let store = self.backfill.store.as_ref();
        let mut done = Vec::new();
        let mut to_prepare = Vec::new();
        for doc in docs {
            match self.existing.triage(store, self.options, doc) {
                Ok(referral) => to_prepare.push(referral),
                Err(outcome) => done.push(outcome),
            }
        }
        let mut drafts = Vec::new();
        let mut results = pin!(
            stream::iter(to_prepare)
                .map(|(id, doc)| self.draft(id, doc))
                .buffer_unordered(PREPARE_CONCURRENCY)
        );
        while let Some(result) = results.next().await {
            match result {
                Ok(draft) => drafts.push(draft),
                Err(outcome) => done.push(outcome),
            }
        }
        let failed_customers = self
            .resolve_customers(drafts.iter().filter_map(|d| d.account()))
            .await;
        let mut planned = Vec::with_capacity(drafts.len());
        for draft in drafts {
            match self.plan(draft, &failed_customers) {
                Ok(draft) => planned.push(draft),
                Err(outcome) => done.push(outcome),
            }
        }
        let new_contacts: Vec<_> = planned
            .iter_mut()
            .flat_map(|d| std::mem::take(&mut d.contacts.new))
            .collect();
        let failed_contacts = self.create_contacts(&new_contacts).await;
        let mut prepared = Vec::new();
        for draft in planned {
            match self.finish(draft, &failed_contacts) {
                Ok(record) => prepared.push(record),
                Err(outcome) => done.push(outcome),
            }
        }
        let mut units = vec![Unit::Done(done)];
        match self.options.mode.group_size() {
            None => {
                units.extend(prepared.into_iter().map(|p| Unit::Write(vec![p])));
            }
            Some(size) => {
                let mut batch: Vec<Prepared> = Vec::new();
                let mut requests = 0;
                for record in prepared {
                    if !batch.is_empty() && requests + record.requests() > size {
                        units.push(Unit::Write(std::mem::take(&mut batch)));
                        requests = 0;
                    }
                    requests += record.requests();
                    batch.push(record);
                }
                if !batch.is_empty() {
                    units.push(Unit::Write(batch));
                }
            }
        }
        units
    }

    /// The writing stage: runs the queued writes, `concurrency` at a time, saves the links of
    /// what they created, and counts every outcome.
    async fn drain(
        &self,
        queue: mpsc::Receiver<Unit>,
        report: &mut BackfillReport,
        mut progress: impl FnMut(&mut BackfillReport),
    ) {
        let units = stream::unfold(queue, |mut queue| async move {
            queue.recv().await.map(|unit| (unit, queue))
        });
        // Pairing a group runs while the next writes go on (`buffered` keeps polling them).
        let mut outcomes = pin!(
            units
                .map(|unit| async move {
                    match unit {
                        Unit::Done(outcomes) => outcomes,
                        Unit::Write(prepared) => self.write(prepared).await,
                    }
                })
                .buffer_unordered(self.options.mode.concurrency())
                .ready_chunks(LINKS_PER_SAVE)
                .map(|group| self.pair(group.into_iter().flatten().collect()))
                .buffered(2)
        );
        while let Some(group) = outcomes.next().await {
            for outcome in self.save_links(group) {
                report.add(outcome);
            }
            progress(report);
        }
    }
}
