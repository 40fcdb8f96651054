//! Group commit of webhook deliveries: each delivery hands its event to one writer thread,
//! which takes everything waiting (up to [`MAX_BATCH`] events), stores it in one transaction
//! ([`crate::store::SyncStore::enqueue_batch`]) and only then answers every delivery of the
//! batch.
//!
//! Why: with `synchronous = FULL` a commit waits for the disk (an `fsync`, milliseconds), so
//! one transaction per delivery caps the intake at a few hundred deliveries per second behind
//! the store's single connection. One commit for everything that arrived while the previous
//! one was flushing keeps "stored before acknowledged" and lets the batch grow with the load:
//! a lone delivery is stored at once, a storm in batches.
//!
//! A batch is all or nothing: when its transaction fails (or panics), every delivery in it is
//! told so and answered 503, and none of its events is stored. An event whose lock key cannot
//! be read is refused alone, before the batch is stored. The echo of cosell's own write is
//! answered as soon as it is recognised, before the batch is stored (it waits for nothing).

use super::{Accepted, Prepared, Shared};
use crate::store::Side;
use anyhow::{Context as _, anyhow};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};

/// The most events stored in one transaction: bounds how long one commit holds the store
/// (the workers share its connection) and how much one failure sends back.
pub const MAX_BATCH: usize = 512;

/// How many deliveries may wait for the writer; further ones wait to hand their event over
/// (backpressure on the listener rather than memory growing while the disk is slow).
const WAITING: usize = 4 * MAX_BATCH;

/// A webhook delivery's notification, before its lock key is known.
pub(super) struct Delivery {
    pub side: Side,
    pub record_id: String,
    pub origin: &'static str,
    pub payload: String,
    /// The row version a Dataverse delivery names, if any.
    pub announced_version: Option<String>,
}

/// A delivery waiting for its batch, and where its outcome goes (an error as text: one
/// failure is told to every delivery of the batch).
struct Handed {
    delivery: Delivery,
    reply: oneshot::Sender<Result<Accepted, String>>,
}

/// The handle of the writer thread; the thread ends once this is dropped and what was handed
/// over is stored.
pub(super) struct Writer {
    sender: mpsc::Sender<Handed>,
}

impl Writer {
    /// Starts the writer thread.
    pub(super) fn start(shared: Arc<Shared>) -> anyhow::Result<Self> {
        let (sender, receiver) = mpsc::channel(WAITING);
        std::thread::Builder::new()
            .name("cosell-intake".into())
            .spawn(move || run(&shared, receiver))
            .context("starting the intake writer thread")?;
        Ok(Self { sender })
    }

    /// Hands `delivery` over and waits until its batch is committed (or failed).
    pub(super) async fn store(&self, delivery: Delivery) -> anyhow::Result<Accepted> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send(Handed { delivery, reply })
            .await
            .map_err(|_| anyhow!("the intake writer has stopped; the event was not stored"))?;
        outcome
            .await
            .map_err(|_| anyhow!("the intake writer stopped before storing the event"))?
            .map_err(anyhow::Error::msg)
    }

    /// How many deliveries wait in the channel, not yet taken by the writer.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }
}

/// The writer thread: one batch after another until every sender is gone.
fn run(shared: &Shared, mut receiver: mpsc::Receiver<Handed>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = receiver.try_recv()
        {
            batch.push(next);
        }
        shared.batches_taken.fetch_add(1, Ordering::SeqCst);
        store_batch(shared, &mut batch);
    }
}

/// Stores the events of `batch` (emptying it) in one transaction and answers each delivery.
fn store_batch(shared: &Shared, batch: &mut Vec<Handed>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for Handed { delivery, reply } in batch.drain(..) {
        match shared.prepare(delivery) {
            Ok(Prepared::Event(event)) => {
                events.push(event);
                replies.push(reply);
            }
            Ok(Prepared::OwnWrite { record_id, origin }) => {
                shared.own_write(&record_id, origin);
                let _ = reply.send(Ok(Accepted::OwnWrite));
            }
            // Only this delivery fails (503); the others are stored.
            Err(e) => drop(reply.send(Err(format!("{e:#}")))),
        }
    }
    if events.is_empty() {
        return;
    }
    // A panic must not end the thread (every later delivery would fail): the transaction
    // rolls back as it unwinds, and the batch fails like any other error.
    let stored = catch_unwind(AssertUnwindSafe(|| shared.store.enqueue_batch(&events)))
        .unwrap_or_else(|_| Err(anyhow!("storing the events panicked")));
    shared.metrics.record_intake_batch(events.len());
    match stored {
        Ok(results) => {
            // A delivery without a result (a store answering too few) gets no reply, which
            // its handler takes as a failure: never an acknowledgement of an unknown outcome.
            for ((event, enqueued), reply) in events.iter().zip(results).zip(replies) {
                shared.stored(event, enqueued);
                let _ = reply.send(Ok(Accepted::Stored(enqueued)));
            }
        }
        Err(e) => {
            let reason = format!("{e:#}");
            for reply in replies {
                let _ = reply.send(Err(reason.clone()));
            }
        }
    }
}
