//! The sync engine's durable state, as four traits, each implemented by every backend beside
//! its SQL: [`QueueStore`] (events, dead letters, parked events), [`LinkStore`] (the pairs of
//! referral and opportunity, and referral create intents), [`CursorStore`] (poller positions
//! and rotated credentials) and [`AuditStore`] (the audit trail and last pipeline runs).
//! [`SyncStore`] is all four together, plus the per-customer locks: what the engine is given.
//!
//! A caller holding `dyn SyncStore` calls every method without importing the four traits; a
//! caller holding a concrete backend imports [`prelude`].

mod audit;
mod cursors;
mod links;
mod queue;

pub use audit::{AUDIT_OUTCOMES, AuditEntry, AuditStore, LastRun, keep_for_replays};
pub use cursors::CursorStore;
pub use links::{Link, LinkStore};
pub use queue::{
    DeadLetter, Enqueued, NewEvent, ParkedEvent, QueueCounts, QueueStore, QueuedEvent,
    RECONCILE_ORIGIN, REPLAY_ORIGIN, ReplicaIdInUse, Side,
};

/// The four store traits, for code that calls them on a concrete backend.
pub mod prelude {
    pub use super::{AuditStore, CursorStore, LinkStore, QueueStore, SyncStore};
}

/// Where the sync engine keeps its state: the queue, the links, the cursors and the audit
/// trail of one backend.
pub trait SyncStore: QueueStore + LinkStore + CursorStore + AuditStore {
    /// The per-customer locks of the Dataverse lookups, as wide as this store is shared: in
    /// this process on SQLite (one host), across every replica on PostgreSQL. The same locks
    /// at every call.
    fn customer_locks(&self) -> std::sync::Arc<dyn crate::store::CustomerLocks>;

    /// What a worker does once a run is over, in one call: saves the `link` the run left to
    /// it (as [`LinkStore::save_link`]), keeps the run's pipeline runs for replays (as
    /// [`AuditStore::save_last_run`]; a run that cannot be kept is logged and fails nothing),
    /// removes event `id` with its audit line (as [`QueueStore::complete_with_audit`]), then,
    /// given `claim` (now and the lease, in milliseconds), claims the next event (as
    /// [`QueueStore::claim`]).
    ///
    /// A backend may do it in one transaction (SQLite does: the queue's pages are then written
    /// once, not once per step). The outer error means the event is still in the queue; the
    /// inner result is the claim's (`None`: not asked), whose failure leaves the settle done.
    fn complete_and_claim(
        &self,
        id: i64,
        audit: Option<&AuditEntry>,
        link: Option<&Link>,
        runs: &[LastRun],
        claim: Option<(i64, i64)>,
    ) -> anyhow::Result<NextClaim> {
        if let Some(link) = link {
            self.save_link(link)?;
        }
        audit::keep_for_replays(self, runs);
        self.complete_with_audit(id, audit)?;
        Ok(claim.map(|(now_ms, lease_ms)| self.claim(now_ms, lease_ms)))
    }
}

/// The claim made after a settle by [`SyncStore::complete_and_claim`]: `None` when none was
/// asked for, else the claim's result (`Ok(None)`: nothing was ready).
pub type NextClaim = Option<anyhow::Result<Option<QueuedEvent>>>;
