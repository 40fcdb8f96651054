//! The store write check behind readiness: a tiny write, in a task of its own, every
//! [`STORE_CHECK_INTERVAL`].
//!
//! Why a write of its own rather than the workers' recent successes: an idle host (or one that
//! only serves mappings) writes nothing for hours, and a check made by `/readyz` itself would
//! let every probe of every load balancer cost a transaction. The check upserts one row of
//! the poller cursors, `readiness-check/<replica id>` (one per replica, so replicas on one
//! PostgreSQL database do not contend), with the time: the same write path as a cursor save,
//! one small transaction (on SQLite one flush to disk every 5 s).

use super::Health;
use crate::store::SyncStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the store write check runs.
pub const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// How long without a successful write check the store counts as not writable even though no
/// check failed: a check waiting on a lock (another process holding SQLite's write lock, a
/// PostgreSQL server that stopped answering) never fails, it hangs.
pub const STORE_STALE_AFTER: Duration = Duration::from_secs(15);

/// The cursor row each replica's check writes.
pub fn cursor_name(replica_id: &str) -> String {
    format!("readiness-check/{replica_id}")
}

/// Checks that `store` takes a write, now and every [`STORE_CHECK_INTERVAL`], reporting each
/// result to `health`, until the task is aborted.
pub fn spawn(store: Arc<dyn SyncStore>, replica_id: &str, health: Arc<Health>) -> JoinHandle<()> {
    let name = cursor_name(replica_id);
    tokio::spawn(async move {
        // Logged when it starts failing and when it recovers, not at every check.
        let mut failing = false;
        loop {
            let (store, name) = (store.clone(), name.clone());
            let written =
                tokio::task::spawn_blocking(move || store.set_cursor(&name, &crate::store::now()))
                    .await;
            let result = match written {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(e) => Err(format!("the write check did not finish: {e}")),
            };
            match &result {
                Err(error) if !failing => {
                    tracing::warn!(%error, "the store write check failed: /readyz answers 503 until it succeeds");
                }
                Ok(()) if failing => tracing::info!("the store write check succeeds again"),
                _ => {}
            }
            failing = result.is_err();
            health.store_checked(result);
            tokio::time::sleep(STORE_CHECK_INTERVAL).await;
        }
    })
}
