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

pub use audit::{AUDIT_OUTCOMES, AuditEntry, AuditStore, LastRun};
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
}
