//! The event queue: changes stored before their webhook is acknowledged, claimed by the
//! workers one record at a time, retried, parked on a failing mapping version, or kept as
//! dead letters.
//!
//! Events are stored before a webhook is acknowledged, so a crash after the 2xx loses nothing.
//! An event only says which record changed on which side; processing reads the record's
//! current state, which is what makes it idempotent and lets events for one record coalesce.

use super::audit::AuditEntry;
use anyhow::Result;
use serde::Serialize;

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

/// [`QueueStore::claim_as`] refused: another live session claims as this replica id.
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

/// The event queue of the sync engine.
pub trait QueueStore: Send + Sync {
    /// Stores an event durably (or coalesces it with a waiting one for the same record).
    fn enqueue(&self, event: &NewEvent) -> Result<Enqueued>;
    /// Stores several events durably in one transaction (one flush to disk for all of them):
    /// each as [`QueueStore::enqueue`] would, in order, so a later event coalesces with an
    /// earlier one of the same batch. All or nothing: after an error none of them is stored.
    fn enqueue_batch(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>>;
    /// Takes the oldest ready event whose record has no event running, and marks it running
    /// under a lease until `now_ms + lease_ms`. An event whose lease ran out (its worker
    /// died or hung), or whose claimer is dead (see [`QueueStore::claim_as`]), is ready again,
    /// and counts the lost run as an attempt.
    fn claim(&self, now_ms: i64, lease_ms: i64) -> Result<Option<QueuedEvent>>;
    /// From now on this store claims as replica `replica_id`, and proves it alive for as long
    /// as the store is open; called once, by `cosell serve`, before its workers start. On a
    /// store several replicas share (PostgreSQL), an event whose claimer is dead (its process
    /// ended) is taken back by the next claim of any replica, long before its lease runs out,
    /// and a replica restarted under its id queues its previous run's events again at once.
    /// Refused with [`ReplicaIdInUse`] when a live replica claims as `replica_id` already (ids
    /// must be unique).
    /// One host on its own state (SQLite) needs none of it: [`QueueStore::requeue_running`]
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
    fn complete_with_audit(&self, id: i64, audit: Option<&AuditEntry>) -> Result<()>;
    /// Puts a failed event back, ready again at `available_at_ms`.
    fn retry_later(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()>;
    /// Puts an event back as [`QueueStore::retry_later`] does, without spending the attempt it
    /// made (a service was down: the record is not at fault).
    fn put_back(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()>;
    /// Puts a failed event back as [`QueueStore::retry_later`] does, under `lock_key` from now
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
    /// [`QueueStore::claim_as`]).
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
        filter: crate::store::QueueFilter,
        limit: usize,
    ) -> Result<Vec<crate::store::QueueEntry>>;
}
