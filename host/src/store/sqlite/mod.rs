//! The embedded SQLite store (WAL mode), the default for a single host.
//!
//! - [`deployments`]: mapping versions and their activations ([`super::DeploymentStore`]).
//! - [`queue`], [`links`], [`cursors`] and [`audit`]: the four parts of
//!   [`super::SyncStore`], each implemented beside its SQL.
//! - [`schema`]: the numbered migrations (`migrations/*.sql`), applied at open.

use super::InProcessCustomerLocks;
use anyhow::{Context as _, Result};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How many prepared statements each connection keeps (more than the hot path uses, so that
/// an occasional admin query does not evict one of them).
const STATEMENT_CACHE: usize = 64;

/// A SQLite database file holding the host's state.
pub struct SqliteStore {
    // One connection behind a mutex: SQLite serialises writers anyway, and every statement
    // here is a short indexed read or write.
    conn: Mutex<Connection>,
    /// A second connection, for reads that must not wait for `conn` (health and metrics):
    /// in WAL mode a reader sees the last commit without taking any lock a writer holds, so
    /// `/healthz` answers while a group commit waits for the disk or another process.
    reader: Mutex<Connection>,
    /// The customer locks of the lookups: in this process, since one host uses the file.
    customer_locks: Arc<InProcessCustomerLocks>,
}

mod audit;
mod cursors;
mod deployments;
mod links;
mod queue;
mod schema;
mod shadows;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the state directory {}", dir.display()))?;
        }
        owner_only(path)?;
        let mut conn = Connection::open(path)
            .with_context(|| format!("opening the state database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: in WAL mode a commit survives a crash of the process at once and reaches the
        // disk at the next checkpoint or FULL commit. Writes acknowledged to someone else use
        // `durable_conn` (FULL) instead; see there.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement of the hot path (claim, complete, retries, enqueue, links, audit,
        // last runs, cursors, intents: about thirty) is prepared once and kept: parsing SQL
        // was a sixth of the host's CPU per synced change. rusqlite keeps 16 by default.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::upgrade(&mut conn, &format!("the state database {}", path.display()))?;
        let reader = Connection::open(path).with_context(|| {
            format!("opening a reader of the state database {}", path.display())
        })?;
        // Reads only, whatever a future caller tries.
        reader.pragma_update(None, "query_only", "ON")?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            customer_locks: Arc::default(),
        })
    }

    /// The connection for cosell's own bookkeeping (claims, completions, links, cursors, the
    /// audit trail): its commits survive a crash of the process, and a power loss may take the
    /// last of them back. That equals an earlier crash, which the engine is built for (state
    /// is re-read and written idempotently; the crash drill proves it), and it saves an
    /// `fsync` (milliseconds here) per commit, several per synced record.
    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is safe to keep using.
        self.conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The read-only connection, apart from [`SqliteStore::conn`]: for reads that must answer
    /// while a write holds or waits for the database (health, metrics).
    pub(crate) fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The connection for writes cosell acknowledges to someone else (a webhook's 2xx, a
    /// deploy's answer, a rotated single-use refresh token, a replay): each commit is on the
    /// disk before it returns (`synchronous = FULL`, an `fsync` of the WAL, which also makes
    /// every earlier commit durable).
    ///
    /// Fails closed: when the connection cannot be switched to `synchronous = FULL`, the write
    /// is refused rather than made without the flush, so nothing is acknowledged (a webhook
    /// batch is answered 503 and redelivered) that a power loss could still take back.
    pub(crate) fn durable_conn(&self) -> Result<DurableConn<'_>> {
        let guard = self.conn();
        guard
            .pragma_update(None, "synchronous", "FULL")
            .context("making the write durable (synchronous = FULL) failed; it is refused rather than acknowledged without reaching the disk")?;
        Ok(DurableConn { guard })
    }
}

/// The state database's connection with `synchronous = FULL` until dropped (see
/// [`SqliteStore::durable_conn`]).
pub(crate) struct DurableConn<'a> {
    guard: std::sync::MutexGuard<'a, Connection>,
}

impl std::ops::Deref for DurableConn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.guard
    }
}

impl std::ops::DerefMut for DurableConn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard
    }
}

impl Drop for DurableConn<'_> {
    fn drop(&mut self) {
        // Back to NORMAL for the bookkeeping that follows; a failure only costs speed.
        let _ = self.guard.pragma_update(None, "synchronous", "NORMAL");
    }
}

/// A transaction that takes the write lock when it begins; every write goes through one.
/// Most writes read first; begun as a reader (SQLite's default), a transaction cannot become a
/// writer once another process on the same file (a setup command or a backfill next to the
/// host) has written meanwhile: SQLite answers "database is locked" at once, without waiting
/// `busy_timeout`, and a webhook would be refused. Begun as a writer, it waits its turn.
pub(crate) fn write_transaction(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .context("starting a write to the state database")
}

/// Makes the database file (created empty if missing) and any WAL and shared-memory files
/// readable and writable by their owner only: the database keeps the rotated Partner Center
/// refresh token. SQLite creates its WAL and `-shm` files with the database file's mode.
fn owner_only(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating the state database {}", path.display()))?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = std::path::PathBuf::from(name);
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("making {} its owner's only", file.display()))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub(crate) use crate::store::now;

#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (dir, store)
}

/// The queue, links, cursors and audit trail (each implemented beside its SQL); the customer locks of the lookups live in this process, since one host uses the file.
impl crate::store::SyncStore for SqliteStore {
    fn customer_locks(&self) -> Arc<dyn crate::store::CustomerLocks> {
        self.customer_locks.clone()
    }

    /// All in one transaction: a run's settle and the next claim touch the same pages of the
    /// queue, which each commit writes whole to the WAL, so one commit writes them once (and
    /// the link saved with the settle costs no commit of its own).
    fn complete_and_claim(
        &self,
        id: i64,
        audit: Option<&crate::store::AuditEntry>,
        link: Option<&crate::store::Link>,
        runs: &[crate::store::LastRun],
        claim: Option<(i64, i64)>,
    ) -> Result<crate::store::NextClaim> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        if let Some(link) = link {
            links::save_link_in(&tx, link)?;
        }
        for run in runs {
            if let Err(e) = audit::save_last_run_in(&tx, run) {
                // Some errors (a full disk, I/O) roll the whole transaction back: then nothing
                // is settled, and the caller tries again.
                if tx.is_autocommit() {
                    return Err(e.context("the transaction settling the event was rolled back"));
                }
                tracing::warn!(record = %run.record, error = %format!("{e:#}"), "could not keep the pipeline run for replays");
            }
        }
        queue::complete_in(&tx, id, audit)?;
        let claimed = claim.map(|(now_ms, lease_ms)| queue::claim_in(&tx, now_ms, lease_ms));
        if matches!(claimed, Some(Err(_))) && tx.is_autocommit() {
            return Err(anyhow::anyhow!(
                "the transaction settling the event was rolled back by a failed claim"
            ));
        }
        tx.commit().context("removing a processed event")?;
        Ok(claimed)
    }
}
