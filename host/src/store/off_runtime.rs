//! Store calls from async code, run off the async runtime's threads.
//!
//! Every [`SyncStore`] method is synchronous: SQLite waits for its connection's lock and for
//! the disk, the PostgreSQL backend for the answer of its own runtime. Called on one of the
//! async runtime's threads (two on a small machine), that wait stalls every other task of the
//! thread: webhook deliveries, the HTTP calls of other runs. [`off_runtime`] hands one call to
//! tokio's blocking pool and awaits it, so the workers' store calls wait there instead. One
//! seam rather than an async twin of the trait: the backends stay plain synchronous code, and
//! the engine's few hot calls (claim, settle, the last run) each cost one hand-over.

use super::SyncStore;
use anyhow::{Result, anyhow};
use std::sync::Arc;

/// Runs `call` on `store` in tokio's blocking pool and answers its result. A panic in `call`
/// goes on in the caller, as if the call had been made in place.
pub async fn off_runtime<T, F>(store: &Arc<dyn SyncStore>, call: F) -> Result<T>
where
    F: FnOnce(&dyn SyncStore) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || call(&*store)).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => Err(anyhow!(
            "the store call was cancelled (the runtime is shutting down): {join}"
        )),
    }
}
