//! Durable state of the host.
//!
//! Two traits: [`DeploymentStore`] (the deployed versions of each mapping step and which one
//! was active when) and [`SyncStore`] (the event queue, dead letters, record links, cursors,
//! credentials and the audit trail, in [`sync_store`]). Two backends: [`sqlite`], the embedded
//! default for one host, and [`postgres`], one database several host replicas share.
//! [`open()`] opens the store `[state]` configures, so no caller names a backend. Each backend
//! carries numbered schema migrations ([`migrations`]), applied at open. [`sign_in`] keeps the
//! Partner Center sign-in (its rotating refresh token) in the credentials. [`customer_locks`]
//! is the per-customer lock of the Dataverse lookups, as wide as the store is shared.
//! [`off_runtime()`] runs a store call from async code on tokio's blocking pool. [`own_write`]
//! tells the echo of cosell's own Dataverse write from a delivery and the link;
//! [`writes_in_flight`] lets the intake wait, in-process, for the settle that records it.

pub mod audit_query;
mod claim_sql;
pub mod customer_locks;
mod lock_key;
mod migrations;
pub mod off_runtime;
mod open;
pub(crate) mod own_write;
pub mod postgres;
pub mod queue_list;
pub mod replica_set;
pub mod sign_in;
pub mod sqlite;
pub mod sync_store;
/// A throwaway PostgreSQL schema for the integration tests in `tests/` (which cannot reach the
/// crate's `cfg(test)` code); not part of the API.
#[doc(hidden)]
#[path = "testing/postgres.rs"]
pub mod test_postgres;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod wakeup;
pub mod writes_in_flight;

pub use audit_query::{AuditPage, AuditQuery};
pub use customer_locks::{CustomerGuard, CustomerLocks, InProcessCustomerLocks};
pub use lock_key::{lock_key, opportunity_lock_key};
pub use off_runtime::off_runtime;
pub use open::{StateStore, open};
pub use queue_list::{QueueEntry, QueueFilter};
pub use sync_store::{
    AUDIT_OUTCOMES, AuditEntry, AuditStore, CursorStore, DeadLetter, Enqueued, LastRun, Link,
    LinkStore, NewEvent, NextClaim, ParkedEvent, QueueCounts, QueueStore, QueuedEvent,
    RECONCILE_ORIGIN, REPLAY_ORIGIN, ReplicaIdInUse, Side, SyncStore, keep_for_replays, prelude,
};
pub use wakeup::Wakeup;
pub use writes_in_flight::WritesInFlight;

use anyhow::Result;
use serde::Serialize;

/// Now, as every backend writes times it reads back: RFC 3339, UTC, milliseconds.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A time [`now`] wrote, as milliseconds since the epoch; `None` when it is not one.
pub(crate) fn millis_of(stored: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(stored)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A stored version of a mapping step, with its bytes.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// The step it is a version of.
    pub step: String,
    /// Its content hash, `sha256:` + hex: the name deployments and rollbacks use.
    pub version: String,
    /// The component's bytes, as uploaded.
    pub wasm: Vec<u8>,
}

/// A stored version without its bytes, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionSummary {
    /// Its content hash, `sha256:` + hex.
    pub version: String,
    /// The component's size in bytes.
    pub size: u64,
    /// Where it came from: `config`, `admin-api`, `watch-dir`.
    pub source: String,
    /// When it was stored (RFC 3339).
    pub uploaded_at: String,
    /// When it was last made active, if ever.
    pub last_activated_at: Option<String>,
    /// Whether it is the step's active version.
    pub active: bool,
    /// Kept whatever the retention says (`cosell mapping pin`).
    pub pinned: bool,
}

/// Why a version became active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationReason {
    /// First version of a step, from the host configuration.
    Bootstrap,
    /// A new version was deployed.
    Deploy,
    /// An earlier version was re-activated.
    Rollback,
    /// The step's shadow version was promoted.
    Promote,
}

impl ActivationReason {
    fn as_str(self) -> &'static str {
        match self {
            ActivationReason::Bootstrap => "bootstrap",
            ActivationReason::Deploy => "deploy",
            ActivationReason::Rollback => "rollback",
            ActivationReason::Promote => "promote",
        }
    }
}

/// Where deployed mapping versions and their activation history are kept.
pub trait DeploymentStore: Send + Sync {
    /// Stores `wasm` as `version` of `step` (if not already stored) and makes it the active
    /// version, in one transaction.
    fn save_and_activate(
        &self,
        step: &str,
        version: &str,
        wasm: &[u8],
        source: &str,
        reason: ActivationReason,
    ) -> Result<()>;

    /// Makes an already stored version the active one.
    fn activate(&self, step: &str, version: &str, reason: ActivationReason) -> Result<()>;

    /// The active version of `step`, with its bytes.
    fn active_version(&self, step: &str) -> Result<Option<StoredVersion>>;

    /// The id of the active version of `step`, without its bytes (what replicas compare with
    /// the version they serve, every few seconds).
    fn active_version_id(&self, step: &str) -> Result<Option<String>> {
        Ok(self.active_version(step)?.map(|stored| stored.version))
    }

    /// A stored version of `step`, with its bytes.
    fn version(&self, step: &str, version: &str) -> Result<Option<StoredVersion>>;

    /// Every stored version of `step`, newest upload first.
    fn list_versions(&self, step: &str) -> Result<Vec<VersionSummary>>;

    /// The versions `step` was activated with, most recent first.
    fn activation_history(&self, step: &str) -> Result<Vec<String>>;

    /// A secret of this state database named `name`: 32 random bytes made the first time it
    /// is asked for, then the same for every process that opens the database, for good. Kept
    /// with the state (owner-only), never beside what it protects: the artifact cache's
    /// entries are authenticated with [`ARTIFACT_CACHE_SECRET`], so whoever can write the
    /// cache directory still cannot make an entry the host will run.
    fn host_secret(&self, name: &str) -> Result<[u8; 32]>;

    /// Pins a stored version, so that pruning never deletes it; answers false when it is not
    /// stored. Pinning a pinned version changes nothing.
    fn pin(&self, step: &str, version: &str) -> Result<bool>;

    /// Unpins a version; answers whether it was pinned.
    fn unpin(&self, step: &str, version: &str) -> Result<bool>;

    /// Deletes, for every step, the stored versions (and their activation history) other than
    /// the `keep` most recently activated, the active one and the pinned ones; answers the
    /// `(step, version)`s deleted.
    fn prune_versions(&self, keep: usize) -> Result<Vec<(String, String)>>;

    /// Stores `wasm` as `version` of `step` (if not already stored) and makes it the step's
    /// shadow, replacing any other, in one transaction. A shadow version is never pruned.
    fn save_shadow(&self, step: &str, version: &str, wasm: &[u8], source: &str) -> Result<()>;

    /// The shadow of `step`, if it has one.
    fn shadow(&self, step: &str) -> Result<Option<ShadowDesignation>>;

    /// Ends the shadow of `step`; answers whether it had one.
    fn end_shadow(&self, step: &str) -> Result<bool>;

    /// Stores `config` (a JSON object of strings) as the next config revision of `step`;
    /// answers its number (1 for the first).
    fn save_config_revision(
        &self,
        step: &str,
        config: &str,
        source: &str,
        changed_by: &str,
    ) -> Result<i64>;

    /// Every config revision of `step`, newest first.
    fn config_revisions(&self, step: &str) -> Result<Vec<ConfigRevision>>;
}

/// One stored config of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigRevision {
    /// The revision's number: 1, 2, 3, … per step.
    pub revision: i64,
    /// A JSON object of strings.
    pub config: String,
    /// `config-file` (from the host configuration at start-up), `admin-api`, or
    /// `revert-to <n>`.
    pub source: String,
    /// Who changed it (as the CLI or the caller said).
    pub changed_by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A step's shadow version, as the store keeps it (the counts are in memory, per replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowDesignation {
    /// The shadow version's content hash, `sha256:` + hex.
    pub version: String,
    /// When it became the shadow (RFC 3339).
    pub since: String,
}

/// The name of the [`DeploymentStore::host_secret`] that keys the artifact cache's HMACs.
pub const ARTIFACT_CACHE_SECRET: &str = "artifact-cache-hmac";
