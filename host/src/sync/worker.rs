//! The workers that drain the queue.
//!
//! Each worker claims the oldest ready event whose record has nothing running, processes it,
//! and then removes it, puts it back with backoff (a transient failure), or makes it a dead
//! letter (after `sync.max_attempts`). A rejected record is not retried: the seller sees why
//! in the CRM, and the record syncs again when it changes. Workers sleep until an event is
//! enqueued ([`Wakeup`]) or a retry falls due.

use super::{Done, SyncEngine, SyncError};
use crate::runtime::Direction;
use crate::store::{Link, QueuedEvent, Side};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Wakes the workers when an event is enqueued.
pub type Wakeup = Arc<Notify>;

/// The longest a worker sleeps without looking at the queue.
const IDLE_POLL: Duration = Duration::from_millis(500);

fn direction(side: Side) -> Direction {
    match side {
        Side::PartnerCenter => Direction::PartnerCenterToCrm,
        Side::Dataverse => Direction::CrmToPartnerCenter,
    }
}

/// Starts `count` workers; they stop when `stop` turns true.
pub fn spawn(
    engine: Arc<SyncEngine>,
    count: usize,
    wakeup: Wakeup,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    match engine.store.requeue_running() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            events = n,
            "re-queued events a previous run left unfinished"
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not re-queue unfinished events")
        }
    }
    (0..count)
        .map(|_| tokio::spawn(run(engine.clone(), wakeup.clone(), stop.clone())))
        .collect()
}

async fn run(engine: Arc<SyncEngine>, wakeup: Wakeup, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let claimed = engine.store.claim(chrono::Utc::now().timestamp_millis());
        match claimed {
            Ok(Some(event)) => {
                handle(&engine, event).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %format!("{e:#}"), "could not read the queue"),
        }
        let wait = engine
            .store
            .next_ready_at()
            .ok()
            .flatten()
            .map(|at| {
                Duration::from_millis((at - chrono::Utc::now().timestamp_millis()).max(0) as u64)
            })
            .unwrap_or(IDLE_POLL)
            .min(IDLE_POLL);
        tokio::select! {
            _ = wakeup.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Processes one claimed event and settles it in the queue.
pub async fn handle(engine: &Arc<SyncEngine>, event: QueuedEvent) {
    let started = Instant::now();
    let record = format!(
        "{}:{}",
        if event.side == Side::PartnerCenter {
            "referral"
        } else {
            "opportunity"
        },
        event.record_id
    );
    let dir = direction(event.side);
    // In a task of its own, so a panic (a bug) fails this event, not the worker.
    let result = {
        let (engine, event) = (engine.clone(), event.clone());
        tokio::spawn(async move { engine.process(&event).await })
            .await
            .unwrap_or_else(|panic| {
                Err(SyncError::transient(format!(
                    "processing panicked: {panic}"
                )))
            })
    };
    let elapsed = started.elapsed();
    let settle = match &result {
        Ok(Done { outcome, detail }) => {
            tracing::info!(%record, origin = %event.origin, outcome, detail, elapsed_ms = elapsed.as_millis() as u64, "synced");
            // Echoes and no-op runs are counted in the metrics, not kept in the trail.
            if !matches!(*outcome, "echo" | "unchanged") {
                engine.audit(&record, dir, outcome, detail);
            }
            engine
                .metrics
                .record_sync(event.side.as_str(), outcome, elapsed);
            Settle::Complete
        }
        Err(SyncError::Rejected(reason)) => {
            tracing::warn!(%record, reason, "sync refused; the record waits for a change");
            engine.audit(&record, dir, "rejected", reason);
            engine
                .metrics
                .record_sync(event.side.as_str(), "rejected", elapsed);
            record_failure(engine, &event, reason, true).await;
            Settle::Complete
        }
        Err(SyncError::Transient(reason)) if event.attempts < engine.config.max_attempts => {
            let delay = engine.config.retry_delay(event.attempts);
            tracing::warn!(%record, reason, attempt = event.attempts, retry_in_ms = delay.as_millis() as u64, "sync failed; will retry");
            engine.audit(&record, dir, "retry", reason);
            engine
                .metrics
                .record_sync(event.side.as_str(), "retry", elapsed);
            let at = chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64;
            Settle::RetryAt(at, reason.clone())
        }
        Err(SyncError::Transient(reason)) => {
            let reason = format!("gave up after {} attempts: {reason}", event.attempts);
            tracing::error!(%record, reason, "sync failed; dead-lettered");
            engine.audit(&record, dir, "dead-letter", &reason);
            engine
                .metrics
                .record_sync(event.side.as_str(), "dead_letter", elapsed);
            record_failure(engine, &event, &reason, false).await;
            Settle::Dead(reason)
        }
    };
    // The store can be busy for a moment (another process writing); an unsettled event would
    // hold its record's lock until the next restart.
    for attempt in 1..=SETTLE_ATTEMPTS {
        let settled = match &settle {
            Settle::Complete => engine.store.complete(event.id),
            Settle::RetryAt(at, reason) => engine.store.retry_later(event.id, reason, *at),
            Settle::Dead(reason) => engine.store.dead_letter(event.id, reason),
        };
        match settled {
            Ok(()) => return,
            Err(e) if attempt < SETTLE_ATTEMPTS => {
                tracing::warn!(%record, error = %format!("{e:#}"), "could not settle the event in the queue; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => {
                tracing::error!(%record, error = %format!("{e:#}"), "could not settle the event in the queue; it runs again after a restart")
            }
        }
    }
}

/// What becomes of a processed event in the queue.
enum Settle {
    Complete,
    RetryAt(i64, String),
    Dead(String),
}

/// Tries to settle an event this many times.
const SETTLE_ATTEMPTS: u32 = 5;

/// Shows a failure on the opportunity, if there is one, and keeps it in the link with the
/// opportunity's fingerprint, so the same content is not tried again until the seller changes
/// it (a replayed dead letter still runs in full).
async fn record_failure(engine: &SyncEngine, event: &QueuedEvent, reason: &str, rejected: bool) {
    let link = match engine.link_of(event.side, &event.record_id) {
        Ok(link) => link,
        Err(e) => {
            tracing::error!(error = %e, "could not read the link to record a failure");
            return;
        }
    };
    let mut link = link.unwrap_or_else(|| match event.side {
        Side::PartnerCenter => Link {
            referral_id: Some(event.record_id.clone()),
            ..Link::default()
        },
        Side::Dataverse => Link {
            opportunity_id: Some(event.record_id.clone()),
            ..Link::default()
        },
    });
    link.last_error = Some(reason.to_owned());
    if let Some(oid) = link.opportunity_id.clone() {
        match engine.note_failure(&oid, reason).await {
            // The content that failed is remembered, so the echo of the note (and any event
            // for the unchanged record) waits for a change instead of failing again; a
            // replayed dead letter bypasses this.
            Ok(Some(row)) if event.side == Side::Dataverse => {
                link.crm_hash = Some(super::fingerprint::opportunity(
                    &row.body,
                    &engine.volatile(),
                ));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(opportunity = %oid, error = %e, "could not write the failure to the opportunity")
            }
        }
    }
    if !rejected {
        // Whatever the Partner Center side last looked like, run it in full next time.
        link.pc_hash = None;
    }
    if let Err(e) = engine.store.save_link(&link) {
        tracing::error!(error = %format!("{e:#}"), "could not record the failure in the link");
    }
}
