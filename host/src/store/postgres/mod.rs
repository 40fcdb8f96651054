//! The PostgreSQL store (`[state] url`): the state of one or several cosell replicas in one
//! database.
//!
//! - [`driver`]: the pool and the runtime of its own the async driver runs on.
//! - [`schema`]: the numbered migrations (`migrations/*.sql`), applied at open.
//! - [`tls`]: the server's certificate checked against the public roots or `[state] ca_file`.
//! - [`deployments`]: mapping versions and activations ([`super::DeploymentStore`]).
//! - [`queue`]: the event queue, claims across replicas; [`links`], [`cursors`] and [`audit`]:
//!   the rest of [`super::SyncStore`], each implemented beside its SQL.
//!
//! What changes from SQLite, where one file lock serialised every write:
//!
//! - **Claims** serialise on one transaction-scoped advisory lock ([`CLAIM_LOCK`]): whether a
//!   record has an event running is only known once the claims before have committed, so two
//!   replicas must not decide it at once (each would see the other's claim only after it
//!   commits, and could start a second event of the same pair). The candidate row is taken
//!   `FOR UPDATE SKIP LOCKED`, so a claim never waits for an event a webhook is coalescing
//!   into. Processing, the long part, runs in parallel on every replica.
//! - **Enqueues** take a transaction-scoped advisory lock per record (all of a batch's, in a
//!   fixed order, so two batches never deadlock), so replicas coalesce a record's events as
//!   one process would; the batch is one transaction, committed (and so on disk) before the
//!   deliveries are acknowledged. What folds or drops a record's waiting events (a retry, a
//!   dead letter, parking, completion) takes the same lock first, so it never waits for an
//!   enqueue's rows while that enqueue waits for its own.
//! - **Liveness** ([`liveness`]): each serving replica holds a session advisory lock keyed by
//!   its replica id on a connection of its own, and its claims record its id. An event left
//!   running by a replica that died (its session ended, its lock released) is taken back by
//!   the next claim of any replica that has held its own lock for a few seconds (a restart of
//!   the server drops every lock at once); the lease stays the backstop for a replica alive
//!   but hung, and for claims whose claimer is not named.
//! - **Activations** are announced (`NOTIFY` [`DEPLOYMENTS_CHANNEL`] in the activating
//!   transaction, so the notice leaves at its commit and never for a rolled-back one), so every
//!   replica loads the new active version within a second ([`crate::replicas`]).
//! - **Customer locks** ([`customer_locks`]): the lock the Dataverse lookups hold while they
//!   find or create a customer's account is an advisory lock in the database, so two replicas
//!   syncing referrals of one new customer make one account.
//! - **Credentials** are written under the row's lock (`SELECT … FOR UPDATE`), so the rotated
//!   single-use refresh token and the sign-in record about it move together for every replica.

mod audit;
mod cursors;
mod customer_locks;
mod deployments;
mod driver;
mod links;
mod liveness;
mod queue;
mod replica_set;
mod schema;
mod shadows;
#[cfg(test)]
mod tests;
mod tls;

#[cfg(test)]
pub(crate) use customer_locks::lock_id as customer_lock_id;
pub use driver::{Connector, PgStore};
pub use replica_set::PgReplicaSet;

/// The channel every activation is announced on (`NOTIFY`, delivered at its commit), the
/// step's name as the payload; each replica listens on it ([`crate::replicas`]).
pub const DEPLOYMENTS_CHANNEL: &str = "cosell_deployments";

/// The advisory lock claims take (one claim at a time across every replica).
const CLAIM_LOCK: i64 = 0x636f_7365_6c6c_0002;
/// The advisory lock link saves take (two runs linking one pair from two replicas make one
/// link, as on SQLite).
const LINKS_LOCK: i64 = 0x636f_7365_6c6c_0003;

/// Milliseconds since the epoch as the RFC 3339 text both backends answer.
fn ms_to_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn side_of(text: &str) -> anyhow::Result<crate::store::Side> {
    crate::store::Side::parse(text)
        .ok_or_else(|| anyhow::anyhow!("the queue holds an event of an unknown side `{text}`"))
}
