//! Where every source hands over a notification: it is stored in the queue (durably, before
//! the source acknowledges it) and the workers are woken.
//!
//! Webhook deliveries go through [`writer`]: one thread stores every event waiting in one
//! transaction (group commit), so a storm of deliveries costs one flush to disk per batch
//! rather than one per delivery, and each delivery is answered only once its batch is
//! committed. The pollers store their events one at a time with [`Intake::accept_alone`].
//!
//! A Dataverse delivery that names the version of the state its opportunity's link records as
//! synced is the echo of cosell's own write (`store::own_write`): it is acknowledged and never
//! queued, so it costs no claim, run or settle. It is told apart on the writer thread, from
//! the link the lock key is read from anyway. Dataverse delivers as soon as a write commits,
//! often before the run that wrote has recorded the new version: the Dataverse listener makes a
//! delivery sent after its write committed, about an opportunity a run of this process is
//! writing, first wait (at most [`ECHO_WAIT`]) for that run's settle
//! ([`Intake::after_writes_in_flight`], [`crate::store::writes_in_flight`]).

mod writer;

use crate::domain::fingerprint::VolatileColumns;
use crate::metrics::Metrics;
use crate::store::WritesInFlight;
use crate::store::{
    Enqueued, NewEvent, Side, SyncStore, Wakeup, lock_key, opportunity_lock_key, own_write,
};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

pub use writer::MAX_BATCH;

/// The queue's front door.
pub struct Intake {
    shared: Arc<Shared>,
    writer: writer::Writer,
    /// The opportunities the engine of this process is writing, if it told them.
    writes_in_flight: Option<WritesInFlight>,
}

/// The longest a Dataverse delivery waits for the settle of a run writing its opportunity.
/// A run settles within milliseconds of its write's answer; a run held up longer (a slow
/// Partner Center after the write) costs its echo a place in the queue, as without the wait,
/// and never keeps Dataverse's call open for long.
pub const ECHO_WAIT: Duration = Duration::from_secs(2);

/// What storing an event needs, shared by the front door and the writer thread.
struct Shared {
    store: Arc<dyn SyncStore>,
    wakeup: Wakeup,
    metrics: Arc<Metrics>,
    /// What an opportunity's fingerprint leaves out, to tell the echo of cosell's own write;
    /// `None`: every delivery is queued.
    own_writes: Option<VolatileColumns>,
    /// Batches the writer has taken from its channel (tests wait on it to know what went
    /// together).
    batches_taken: AtomicUsize,
}

impl Shared {
    /// The event to store for a notification; reads the record's link for its lock key.
    fn event(
        &self,
        side: Side,
        record_id: String,
        origin: &str,
        payload: String,
    ) -> anyhow::Result<NewEvent> {
        Ok(NewEvent {
            lock_key: lock_key(self.store.as_ref(), side, &record_id)?,
            side,
            record_id,
            origin: origin.to_owned(),
            payload,
        })
    }

    /// What a webhook delivery becomes: for Dataverse, the opportunity's link is read once,
    /// for its lock key and to tell the echo of cosell's own write.
    fn prepare(&self, delivery: writer::Delivery) -> anyhow::Result<Prepared> {
        let writer::Delivery {
            side,
            record_id,
            origin,
            payload,
            announced_version,
        } = delivery;
        if side == Side::PartnerCenter {
            return Ok(Prepared::Event(
                self.event(side, record_id, origin, payload)?,
            ));
        }
        let link = self.store.link_by_opportunity(&record_id)?;
        if let (Some(version), Some(link), Some(own_writes)) =
            (&announced_version, &link, &self.own_writes)
            && own_write::is_synced_version(version, link, &own_writes.borrow())
        {
            return Ok(Prepared::OwnWrite { record_id, origin });
        }
        Ok(Prepared::Event(NewEvent {
            lock_key: opportunity_lock_key(&record_id, link.as_ref()),
            side,
            record_id,
            origin: origin.to_owned(),
            payload,
        }))
    }

    /// What follows a stored event: it is counted and a worker is woken.
    fn stored(&self, event: &NewEvent, enqueued: Enqueued) {
        let result = match enqueued {
            Enqueued::New(_) => "queued",
            Enqueued::Coalesced(_) => "coalesced",
        };
        self.metrics.record_intake(&event.origin, result);
        self.wakeup.notify_one();
        tracing::debug!(
            side = event.side.as_str(),
            record_id = event.record_id,
            origin = event.origin,
            result,
            "notification stored"
        );
    }

    /// What follows the echo of cosell's own write: it is counted, and nothing is stored.
    fn own_write(&self, record_id: &str, origin: &str) {
        self.metrics.record_intake(origin, "echo");
        self.metrics.record_echo();
        tracing::info!(
            record = %format_args!("opportunity:{record_id}"),
            origin,
            "the delivery names the version cosell last synced: its own write's echo, acknowledged and not queued"
        );
    }
}

/// A webhook delivery, ready for its batch.
enum Prepared {
    /// An event to store.
    Event(NewEvent),
    /// The echo of cosell's own write to opportunity `record_id`: acknowledged, not stored.
    OwnWrite {
        record_id: String,
        origin: &'static str,
    },
}

/// What became of a webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored in the queue (committed).
    Stored(Enqueued),
    /// The echo of cosell's own Dataverse write: nothing to do, nothing stored.
    OwnWrite,
}

impl Intake {
    /// The front door of `store`; starts the writer thread of the webhook deliveries, which
    /// ends when the `Intake` is dropped. With `own_writes` (what an opportunity's fingerprint
    /// leaves out, as the engine configures it), a Dataverse delivery announcing the state its
    /// link records as synced is acknowledged without being queued.
    pub fn new(
        store: Arc<dyn SyncStore>,
        wakeup: Wakeup,
        metrics: Arc<Metrics>,
        own_writes: Option<VolatileColumns>,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            store,
            wakeup,
            metrics,
            own_writes,
            batches_taken: AtomicUsize::new(0),
        });
        Ok(Self {
            writer: writer::Writer::start(shared.clone())?,
            shared,
            writes_in_flight: None,
        })
    }

    /// Tells the intake the opportunities the engine is writing (`writes`), for
    /// [`Intake::after_writes_in_flight`].
    pub fn waiting_for(mut self, writes: WritesInFlight) -> Self {
        self.writes_in_flight = Some(writes);
        self
    }

    /// Stores that `record_id` changed on `side`, alone in its own transaction (for the
    /// pollers); `origin` names the source, `payload` is the notification as received.
    pub fn accept_alone(
        &self,
        side: Side,
        record_id: &str,
        origin: &str,
        payload: &str,
    ) -> anyhow::Result<Enqueued> {
        let event = self
            .shared
            .event(side, record_id.to_owned(), origin, payload.to_owned())?;
        let enqueued = self.shared.store.enqueue(&event)?;
        self.shared.stored(&event, enqueued);
        Ok(enqueued)
    }

    /// Stores a webhook delivery's event with the others waiting (group commit) and answers
    /// once the transaction holding it is committed, or at once when the delivery is the echo
    /// of cosell's own write (`announced_version`: the row version a Dataverse delivery names).
    /// An error means it is not stored: the delivery must be answered with a failure so that
    /// the sender retries it.
    pub async fn accept_grouped(
        &self,
        side: Side,
        record_id: String,
        origin: &'static str,
        payload: String,
        announced_version: Option<String>,
    ) -> anyhow::Result<Accepted> {
        self.writer
            .store(writer::Delivery {
                side,
                record_id,
                origin,
                payload,
                announced_version,
            })
            .await
    }

    /// Waits (at most [`ECHO_WAIT`]) until no run of this process is writing opportunity
    /// `record_id` (at once when none is, or when the engine did not tell its writes): for a
    /// Dataverse delivery sent after its write committed, so that the echo of cosell's own
    /// write is told once the run that wrote has recorded it.
    pub async fn after_writes_in_flight(&self, record_id: &str) {
        let Some(writes) = &self.writes_in_flight else {
            return;
        };
        if writes.is_marked(record_id) {
            let settled = writes.settled(record_id, ECHO_WAIT).await;
            tracing::debug!(
                opportunity = %record_id,
                settled,
                "the delivery waited for the settle of the run writing its opportunity"
            );
        }
    }

    /// Counts a notification that was not stored (refused or not about a synced record).
    pub fn record_unqueued(&self, origin: &str, result: &str) {
        self.shared.metrics.record_intake(origin, result);
    }

    /// The store events are queued in.
    pub fn store(&self) -> &Arc<dyn SyncStore> {
        &self.shared.store
    }
}

/// Whether `id` looks like a record id (GUIDs, Partner Center ids): no path or query tricks.
pub use webhook_formats::ids::plausible_id;

// Group commit with a real store: concurrent deliveries, coalescing in a batch, a failed batch.
#[cfg(test)]
mod tests;
