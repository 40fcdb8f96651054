//! Where every source hands over a notification: it is stored in the queue (durably, before
//! the source acknowledges it) and the workers are woken.

use crate::metrics::Metrics;
use crate::store::{Enqueued, NewEvent, Side, SyncStore};
use crate::sync::{lock_key, worker::Wakeup};
use std::sync::Arc;

/// The queue's front door.
pub struct Intake {
    store: Arc<dyn SyncStore>,
    wakeup: Wakeup,
    metrics: Arc<Metrics>,
}

impl Intake {
    pub fn new(store: Arc<dyn SyncStore>, wakeup: Wakeup, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            wakeup,
            metrics,
        }
    }

    /// Stores that `record_id` changed on `side`; `origin` names the source, `payload` is the
    /// notification as received.
    pub fn accept(
        &self,
        side: Side,
        record_id: &str,
        origin: &str,
        payload: &str,
    ) -> anyhow::Result<Enqueued> {
        let event = NewEvent {
            side,
            record_id: record_id.to_owned(),
            lock_key: lock_key(self.store.as_ref(), side, record_id)?,
            origin: origin.to_owned(),
            payload: payload.to_owned(),
        };
        let enqueued = self.store.enqueue(&event)?;
        let result = match enqueued {
            Enqueued::New(_) => "queued",
            Enqueued::Coalesced(_) => "coalesced",
        };
        self.metrics.record_intake(origin, result);
        self.wakeup.notify_one();
        tracing::debug!(
            side = side.as_str(),
            record_id,
            origin,
            result,
            "notification stored"
        );
        Ok(enqueued)
    }

    /// [`Intake::accept`] on a blocking thread: storing waits for the disk (`synchronous =
    /// FULL`), which must not hold up the async threads that answer webhooks.
    pub async fn accept_async(
        self: &Arc<Self>,
        side: Side,
        record_id: String,
        origin: &'static str,
        payload: String,
    ) -> anyhow::Result<Enqueued> {
        let intake = self.clone();
        tokio::task::spawn_blocking(move || intake.accept(side, &record_id, origin, &payload))
            .await
            .map_err(|e| anyhow::anyhow!("the task storing the event failed: {e}"))?
    }

    /// Counts a notification that was not stored (refused or not about a synced record).
    pub fn record_unqueued(&self, origin: &str, result: &str) {
        self.metrics.record_intake(origin, result);
    }

    pub fn store(&self) -> &Arc<dyn SyncStore> {
        &self.store
    }
}

/// Whether `id` looks like a record id (GUIDs, Partner Center ids): no path or query tricks.
pub use webhook_formats::ids::plausible_id;
