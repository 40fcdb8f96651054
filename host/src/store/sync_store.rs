//! The sync engine's durable state: the event queue with its dead letters, the links between
//! referrals and opportunities, poller cursors, rotated credentials and the audit trail.
//!
//! Events are stored before a webhook is acknowledged, so a crash after the 2xx loses nothing.
//! An event only says which record changed on which side; processing reads the record's
//! current state, which is what makes it idempotent and lets events for one record coalesce.

use super::audit_query::{AuditPage, AuditQuery};
use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use crate::domain::Side;

/// The origin a replayed dead letter gets: it runs in full even if its record did not change.
pub const REPLAY_ORIGIN: &str = "replay";

/// The origin of the Partner Center reconciliation. It re-lists every referral updated in its
/// look-back window, changed or not, so its events are no evidence of a change: one never
/// resets the backoff and attempts of an event waiting for a retry (otherwise a record that
/// always fails would be retried forever and never reach its dead letter).
pub const RECONCILE_ORIGIN: &str = "partner-center-reconcile";

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The side where the change happened.
    pub side: Side,
    /// The referral id or opportunity id that changed.
    pub record_id: String,
    /// Events with the same key run one at a time, in order: `referral:<id>` once a record is
    /// linked (both sides of a pair share it), `opportunity:<id>` before.
    pub lock_key: String,
    /// Where it came from: `partner-center-webhook`, `dataverse-webhook`, `dataverse-changes`,
    /// `partner-center-reconcile`.
    pub origin: String,
    /// The notification as received, for the audit trail and dead letters.
    pub payload: String,
}

impl NewEvent {
    /// The payload a waiting entry of the record takes when this event is coalesced into it.
    /// A Dataverse event's `RowVersion` is dropped: the entry then stands for more than one
    /// write (in whatever order their deliveries came), so no single version names the state
    /// it announces and the engine reads the row instead of taking it for an echo.
    pub fn payload_when_coalesced(&self) -> String {
        if self.side != Side::Dataverse {
            return self.payload.clone();
        }
        match serde_json::from_str::<serde_json::Value>(&self.payload) {
            Ok(serde_json::Value::Object(mut fields)) => {
                fields.remove("RowVersion");
                serde_json::Value::Object(fields).to_string()
            }
            _ => self.payload.clone(),
        }
    }
}

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new queue entry.
    New(i64),
    /// An entry for the same record was still waiting; it now runs as soon as possible and will
    /// read the newest state, so this event needs no entry of its own.
    Coalesced(i64),
}

impl Enqueued {
    /// The queue entry's id, new or coalesced into.
    pub fn id(self) -> i64 {
        match self {
            Enqueued::New(id) | Enqueued::Coalesced(id) => id,
        }
    }
}

/// An event taken from the queue to process.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedEvent {
    /// Its queue id.
    pub id: i64,
    /// The side where the change happened.
    pub side: Side,
    /// The referral id or opportunity id that changed.
    pub record_id: String,
    /// The key it runs under, one event at a time (see [`NewEvent::lock_key`]).
    pub lock_key: String,
    /// Where it came from (see [`NewEvent::origin`]).
    pub origin: String,
    /// The notification as received (or as coalesced, see
    /// [`NewEvent::payload_when_coalesced`]).
    pub payload: String,
    /// Including this one.
    pub attempts: u32,
    /// When it was received (RFC 3339).
    pub received_at: String,
}

/// An event that failed every attempt.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The event's queue id (what a replay names).
    pub id: i64,
    /// The side where the change happened.
    pub side: Side,
    /// The referral id or opportunity id that changed.
    pub record_id: String,
    /// Where it came from (see [`NewEvent::origin`]).
    pub origin: String,
    /// Attempts made, all failed.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: String,
    /// When the event was received (RFC 3339).
    pub received_at: String,
    /// When it became a dead letter (RFC 3339).
    pub failed_at: String,
    /// When its last attempt started (and read the record): a change after this is news the
    /// dead letter does not stand for.
    pub last_attempt_at: String,
}

/// An event parked after a mapping step failed in a way that version repeats every time (a
/// limit, a trap): it waits, without spending attempts, for another version of the step.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedEvent {
    /// The event's queue id.
    pub id: i64,
    /// The side where the change happened.
    pub side: Side,
    /// The referral id or opportunity id that changed.
    pub record_id: String,
    /// Where it came from (see [`NewEvent::origin`]).
    pub origin: String,
    /// The step that failed, and the version it failed on.
    pub step: String,
    /// The version it failed on (`sha256:` + hex).
    pub version: String,
    /// Why the step failed.
    pub reason: String,
    /// When the event was received (RFC 3339).
    pub received_at: String,
    /// When it was parked (RFC 3339).
    pub parked_at: String,
    /// When its attempt started (and read the record): a change after this is news.
    pub last_attempt_at: String,
}

/// Queue sizes by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Events waiting to run (a retry's backoff included).
    pub pending: u64,
    /// Events a worker is processing.
    pub running: u64,
    /// Dead letters: events that failed every attempt.
    pub dead: u64,
    /// Waiting for another version of the mapping step that failed on them.
    pub parked: u64,
    /// When the oldest pending event was received (ms since the epoch); `None` when nothing
    /// is pending. How long changes have waited: a stuck queue shows here first.
    pub oldest_pending_ms: Option<i64>,
}

/// A referral and its opportunity, and what each looked like when they were last in sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    /// Store id; `None` until saved.
    pub id: Option<i64>,
    /// The Partner Center referral's id; `None` while the link has none.
    pub referral_id: Option<String>,
    /// The Dataverse opportunity's id; `None` while the link has none.
    pub opportunity_id: Option<String>,
    /// Fingerprint and JSON of the referral as last synced.
    pub pc_hash: Option<String>,
    /// The referral's JSON as last synced.
    pub pc_snapshot: Option<String>,
    /// Fingerprint and JSON of the opportunity as last synced (or last refused).
    pub crm_hash: Option<String>,
    /// The opportunity's JSON as last synced (or last refused).
    pub crm_snapshot: Option<String>,
    /// The reason of the last failed sync, cleared by a successful one.
    pub last_error: Option<String>,
    /// A write to either service sent and not yet known to have landed (JSON, see
    /// `sync::write_intent`): recorded before the write, cleared when its run saves the result.
    pub pending_write: Option<String>,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When it was recorded (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// `referral:<id>` or `opportunity:<id>`.
    pub record: String,
    /// `partner-center-to-crm` or `crm-to-partner-center`.
    pub direction: String,
    /// One of [`AUDIT_OUTCOMES`].
    pub outcome: String,
    /// What was done or went wrong, in words.
    pub detail: String,
}

/// The outcomes the audit trail records. Echoes and runs that changed nothing are counted in
/// the metrics, not kept in the trail.
pub const AUDIT_OUTCOMES: &[&str] = &[
    "created",
    "updated",
    "skipped",
    "conflict",
    "rejected",
    "retry",
    "parked",
    "dead-letter",
];

/// [`SyncStore::claim_as`] refused: another live session claims as this replica id.
#[derive(Debug, thiserror::Error)]
#[error(
    "replica id `{id}` is in use by a running replica ({holder}) on this state database: give \
     each replica its own id ([host] replica_id or --replica-id), or stop the other one first"
)]
pub struct ReplicaIdInUse {
    /// The id asked for.
    pub id: String,
    /// Who holds it (application name, process and address), as far as the server says.
    pub holder: String,
}

/// Where the sync engine keeps its state.
pub trait SyncStore: Send + Sync {
    /// Stores an event durably (or coalesces it with a waiting one for the same record).
    fn enqueue(&self, event: &NewEvent) -> Result<Enqueued>;
    /// Stores several events durably in one transaction (one flush to disk for all of them):
    /// each as [`SyncStore::enqueue`] would, in order, so a later event coalesces with an
    /// earlier one of the same batch. All or nothing: after an error none of them is stored.
    fn enqueue_batch(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>>;
    /// Takes the oldest ready event whose record has no event running, and marks it running
    /// under a lease until `now_ms + lease_ms`. An event whose lease ran out (its worker
    /// died or hung), or whose claimer is dead (see [`SyncStore::claim_as`]), is ready again,
    /// and counts the lost run as an attempt.
    fn claim(&self, now_ms: i64, lease_ms: i64) -> Result<Option<QueuedEvent>>;
    /// From now on this store claims as replica `replica_id`, and proves it alive for as long
    /// as the store is open; called once, by `cosell serve`, before its workers start. On a
    /// store several replicas share (PostgreSQL), an event whose claimer is dead (its process
    /// ended) is taken back by the next claim of any replica, long before its lease runs out,
    /// and a replica restarted under its id queues its previous run's events again at once.
    /// Refused with [`ReplicaIdInUse`] when a live replica claims as `replica_id` already (ids
    /// must be unique).
    /// One host on its own state (SQLite) needs none of it: [`SyncStore::requeue_running`]
    /// at start takes its events back.
    fn claim_as(&self, replica_id: &str) -> Result<()> {
        let _ = replica_id;
        Ok(())
    }
    /// Removes a processed event.
    fn complete(&self, id: i64) -> Result<()>;
    /// Removes a processed event and writes its line of the audit trail (if any) together, in
    /// one transaction where the backend can: the worker's settle of a synced record, one
    /// commit instead of two. All or nothing: after an error neither is written, and the
    /// caller tries again.
    fn complete_with_audit(&self, id: i64, audit: Option<&AuditEntry>) -> Result<()> {
        if let Some(entry) = audit {
            self.audit(entry)?;
        }
        self.complete(id)
    }
    /// Puts a failed event back, ready again at `available_at_ms`.
    fn retry_later(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()>;
    /// Puts an event back as [`SyncStore::retry_later`] does, without spending the attempt it
    /// made (a service was down: the record is not at fault).
    fn put_back(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()>;
    /// Puts a failed event back as [`SyncStore::retry_later`] does, under `lock_key` from now
    /// on: it waits for another run of its pair that holds that key, instead of running
    /// during it (a record made for a pair whose link is not saved yet).
    fn retry_behind(
        &self,
        id: i64,
        lock_key: &str,
        error: &str,
        available_at_ms: i64,
    ) -> Result<()>;
    /// Makes an event a dead letter with its last error.
    fn dead_letter(&self, id: i64, error: &str) -> Result<()>;
    /// Parks an event that failed on `version` of mapping step `step` in a way that version
    /// repeats; an older parked event of the same record is folded into it.
    fn park(&self, id: i64, step: &str, version: &str, error: &str) -> Result<()>;
    /// Queues again the events parked on `step` at a version other than `active`; answers
    /// how many.
    fn requeue_parked(&self, step: &str, active: &str) -> Result<u64>;
    /// Queues again every parked event (at start-up: the limits may have changed); answers
    /// how many.
    fn requeue_all_parked(&self) -> Result<u64>;
    /// Parked events, oldest first.
    fn parked(&self, limit: usize) -> Result<Vec<ParkedEvent>>;
    /// Puts events left running by a stopped host back in the queue; answers how many. On a
    /// store several replicas share (PostgreSQL) only those whose lease ran out: the others
    /// may belong to a replica that is alive (one that lacks its lock for a moment, while the
    /// server restarts); the claims of the others take back a dead replica's events (see
    /// [`SyncStore::claim_as`]).
    fn requeue_running(&self) -> Result<u64>;
    /// When the earliest waiting event becomes ready, if any waits.
    fn next_ready_at(&self) -> Result<Option<i64>>;
    /// Dead letters, oldest first.
    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;
    /// Queues dead letters again (these ids, or all); answers how many.
    fn replay_dead_letters(&self, ids: Option<&[i64]>) -> Result<u64>;
    /// Events pending, running and dead. Never waits for a write in progress (health and
    /// metrics read it while the intake may hold the store).
    fn queue_counts(&self) -> Result<QueueCounts>;
    /// The events waiting or running (`filter`), at most `limit`, running ones first, then
    /// in the order workers take them. Never waits for a write in progress.
    fn queued_events(
        &self,
        filter: super::QueueFilter,
        limit: usize,
    ) -> Result<Vec<super::QueueEntry>>;

    /// The link of referral `referral_id`, if it has one.
    fn link_by_referral(&self, referral_id: &str) -> Result<Option<Link>>;
    /// The link of opportunity `opportunity_id`, if it has one.
    fn link_by_opportunity(&self, opportunity_id: &str) -> Result<Option<Link>>;
    /// Inserts or updates a link; answers its id.
    fn save_link(&self, link: &Link) -> Result<i64>;
    /// Saves the links whose referral is not linked to an opportunity yet, as
    /// [`save_link`](Self::save_link) does, all in one transaction (one write to disk for many;
    /// the backfill saves its links so). Answers, for each link, the opportunity its referral
    /// was linked to already (then that link was left as it is), or `None` when it was saved.
    fn save_unlinked(&self, links: &[Link]) -> Result<Vec<Option<String>>> {
        let mut linked = Vec::with_capacity(links.len());
        for link in links {
            let existing = match &link.referral_id {
                Some(referral) => self
                    .link_by_referral(referral)?
                    .and_then(|l| l.opportunity_id),
                None => None,
            };
            if existing.is_none() {
                self.save_link(link)?;
            }
            linked.push(existing);
        }
        Ok(linked)
    }

    /// The value kept under `name` (a poller's position, e.g. Dataverse's delta link), if any.
    fn cursor(&self, name: &str) -> Result<Option<String>>;
    /// Keeps `value` under `name`, replacing the one kept before.
    fn set_cursor(&self, name: &str, value: &str) -> Result<()>;
    /// A credential the host rotated (e.g. Partner Center's single-use refresh token).
    fn credential(&self, name: &str) -> Result<Option<String>>;
    /// Keeps `value` as credential `name`, replacing the one kept before.
    fn set_credential(&self, name: &str, value: &str) -> Result<()>;

    /// When cosell began creating the partner referral of `opportunity_id`, if that create
    /// has not been seen to finish (its answer was lost, or the host stopped in between).
    fn referral_intent(&self, opportunity_id: &str) -> Result<Option<i64>>;
    /// Records durably, before the POST, that cosell is about to create the partner referral
    /// of `opportunity_id`; an unfinished earlier intent keeps its time. Answers when the
    /// intent began (milliseconds since the epoch).
    fn begin_referral_intent(&self, opportunity_id: &str, now_ms: i64) -> Result<i64>;
    /// The create of `opportunity_id`'s referral finished: its referral is linked.
    fn end_referral_intent(&self, opportunity_id: &str) -> Result<()>;

    /// Adds `entry` to the audit trail.
    fn audit(&self, entry: &AuditEntry) -> Result<()>;
    /// The entries `query` matches, newest first, one page.
    fn audit_search(&self, query: &AuditQuery) -> Result<AuditPage>;
    /// The newest `limit` entries of a record (all records with `None`), newest first.
    fn audit_trail(&self, record: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let query = AuditQuery {
            record: record.map(str::to_owned),
            limit,
            ..AuditQuery::default()
        };
        Ok(self.audit_search(&query)?.entries)
    }
    /// Deletes the audit entries written before `before` (RFC 3339, UTC) and all but the
    /// newest `keep`; answers how many were deleted.
    fn prune_audit(&self, before: &str, keep: usize) -> Result<u64>;

    /// Keeps `run` as the last pipeline run of its record and direction, replacing the one
    /// before.
    fn save_last_run(&self, run: &LastRun) -> Result<()>;

    /// The last pipeline runs of `record` (`referral:<id>` or `opportunity:<id>`), one per
    /// direction it was mapped in.
    fn last_runs(&self, record: &str) -> Result<Vec<LastRun>>;

    /// Deletes the last runs made before `before` (RFC 3339, UTC); answers how many.
    fn prune_last_runs(&self, before: &str) -> Result<u64>;

    /// The per-customer locks of the Dataverse lookups, as wide as this store is shared: in
    /// this process on SQLite (one host), across every replica on PostgreSQL. The same locks
    /// at every call.
    fn customer_locks(&self) -> std::sync::Arc<dyn super::CustomerLocks>;
}

/// The last pipeline run of one record in one direction: what `cosell mapping replay` runs
/// again and compares with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// `referral:<id>` or `opportunity:<id>`.
    pub record: String,
    /// `partner-center-to-crm` or `crm-to-partner-center`.
    pub direction: String,
    /// The event name the pipeline was given.
    pub event: String,
    /// The tenant name the pipeline was given.
    pub tenant: String,
    /// The pipeline's input document.
    pub input: String,
    /// The current counterpart record given to the pipeline, if there was one.
    pub current: Option<String>,
    /// The config revision of the pipeline's first step it ran with.
    pub config_revision: Option<i64>,
    /// The pipeline's output (what the engine then wrote the differences of), or
    pub output: Option<String>,
    /// why the pipeline produced none.
    pub error: Option<String>,
    /// When it ran (RFC 3339): the timestamp the pipeline was given.
    pub at: String,
}
