//! The workers that drain the queue.
//!
//! Each worker claims the oldest ready event whose record has nothing running, under a lease
//! (`sync.lease_secs`: a worker that dies or hangs loses the event to another one), processes
//! it within 90% of that lease, and then removes it, puts it back with backoff (a transient
//! failure), makes it a dead letter (after `sync.max_attempts`), or parks it (a mapping
//! version fails on it every time: it waits for another version of that step, see
//! [`requeue_parked`]). A rejected record is not retried: the seller sees why in the CRM, and
//! the record syncs again when it changes. While Partner Center or Dataverse is down
//! ([`super::availability`]) no event is claimed, and the events that failed because of it go
//! back without spending an attempt; one worker probes the service after each pause. Workers
//! sleep until an event is enqueued ([`crate::store::Wakeup`]) or a retry falls due.

use super::availability::{Failure, Gate};
use super::read_at_claim::{self, LinkAtClaim};
use super::{Done, SyncEngine, SyncError, deferred};
use crate::store::{AuditEntry, Link, QueuedEvent, Side, SyncStore, Wakeup, off_runtime};
use futures_util::FutureExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest a worker sleeps without looking at the queue.
const IDLE_POLL: Duration = Duration::from_millis(500);

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
    // The limits may have changed since they were parked (a raised `limits.fuel`, say): each
    // parked record runs once more, and parks again if it still fails.
    match engine.store.requeue_all_parked() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            events = n,
            "queued the parked events again, once, in case the limits changed"
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not queue the parked events again")
        }
    }
    (0..count)
        .map(|_| tokio::spawn(run(engine.clone(), wakeup.clone(), stop.clone())))
        .collect()
}

/// Queues again the events parked on `step` at a version other than `active` (a version was
/// just activated); answers how many, for the caller to wake the workers. An error is
/// logged: the events stay parked until the next activation or restart.
pub fn requeue_parked(store: &dyn SyncStore, step: &str, active: &str) -> u64 {
    match store.requeue_parked(step, active) {
        Ok(0) => 0,
        Ok(n) => {
            tracing::info!(
                step,
                version = active,
                events = n,
                "queued the records parked on an earlier version of the step again"
            );
            n
        }
        Err(e) => {
            tracing::error!(step, error = %format!("{e:#}"), "could not queue the parked records of the step again; they run after the next activation or restart");
            0
        }
    }
}

/// What a worker finds in the queue.
enum Claimed {
    /// An event, claimed under the lease, with its record's link if the claim could read it
    /// ([`read_at_claim`]).
    Event(QueuedEvent, Option<Box<LinkAtClaim>>),
    /// Nothing ready; when the next waiting event falls due (ms since the epoch), if any.
    Nothing(Option<i64>),
}

/// Claims the next ready event under a lease of `lease_ms`; with none, answers when the next
/// one falls due. Both in one hand-over to the store.
fn claim_or_next_due(store: &dyn SyncStore, lease_ms: i64) -> anyhow::Result<Claimed> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    claimed_or_next_due(store, store.claim(now_ms, lease_ms)?)
}

/// What a claim found: the event, or when the next waiting one falls due.
fn claimed_or_next_due(
    store: &dyn SyncStore,
    claimed: Option<QueuedEvent>,
) -> anyhow::Result<Claimed> {
    Ok(match claimed {
        Some(event) => {
            // A failed read is the run's to make (and report) again.
            let link = read_at_claim::read(store, &event).ok().map(Box::new);
            Claimed::Event(event, link)
        }
        None => Claimed::Nothing(store.next_ready_at()?),
    })
}

/// How long an idle worker sleeps: until the next waiting event falls due (`due`, ms since the
/// epoch), at most [`IDLE_POLL`].
fn until_due(due: Option<i64>) -> Duration {
    due.map(|at| Duration::from_millis((at - chrono::Utc::now().timestamp_millis()).max(0) as u64))
        .unwrap_or(IDLE_POLL)
        .min(IDLE_POLL)
}

async fn run(engine: Arc<SyncEngine>, wakeup: Wakeup, mut stop: watch::Receiver<bool>) {
    let lease_ms = engine.config.lease().as_millis() as i64;
    // What the hand-over that settled the previous event found in the queue. An event claimed
    // there is run even when the stop came meanwhile: left alone it would wait out its lease.
    let mut found: Option<Claimed> = None;
    loop {
        let claimed = match found.take() {
            Some(claimed) => Ok(claimed),
            None => {
                if *stop.borrow() {
                    break;
                }
                match engine.availability.gate() {
                    Gate::Open => {}
                    Gate::Probe(service) => {
                        probe(&engine, service).await;
                        continue;
                    }
                    Gate::Wait(wait) => {
                        tokio::select! {
                            _ = tokio::time::sleep(wait.min(IDLE_POLL)) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                }
                off_runtime(&engine.store, move |store| {
                    claim_or_next_due(store, lease_ms)
                })
                .await
            }
        };
        let wait = match claimed {
            Ok(Claimed::Event(event, link)) => {
                found = handle(&engine, event, link, lease_ms, &stop).await;
                continue;
            }
            Ok(Claimed::Nothing(due)) => until_due(due),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not read the queue");
                IDLE_POLL
            }
        };
        tokio::select! {
            _ = wakeup.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Probes a paused service and reports the result to the breaker.
async fn probe(engine: &SyncEngine, service: Side) {
    let failure = match engine.probe(service).await {
        Err(SyncError::Unavailable { cause, reason, .. }) => Some((cause, reason)),
        // Any answer, even a refusal, shows the service is up.
        _ => None,
    };
    engine.availability.probed(
        service,
        failure
            .as_ref()
            .map(|(cause, reason)| (*cause, reason.as_str())),
    );
}

/// Processes one claimed event and settles it in the queue; in the same hand-over to the store
/// it saves the link the run left to the settle, keeps the run's pipeline runs for replays
/// and, unless the workers are stopping or a service is paused, claims the next event (under
/// a lease of `lease_ms`). Answers what that claim found (`None`: not tried).
async fn handle(
    engine: &Arc<SyncEngine>,
    event: QueuedEvent,
    link: Option<Box<LinkAtClaim>>,
    lease_ms: i64,
    stop: &watch::Receiver<bool>,
) -> Option<Claimed> {
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
    let dir = event.side.direction();
    let (result, left) = run_within_lease(engine, &event, link).await;
    let elapsed = started.elapsed();
    let outage = match &result {
        Err(SyncError::Unavailable {
            service,
            cause,
            reason,
        }) => engine.availability.failed(*service, *cause, reason),
        _ => {
            engine.availability.answered();
            Failure::Counted
        }
    };
    let settle = match &result {
        Ok(Done { outcome, detail }) => {
            tracing::info!(%record, origin = %event.origin, outcome, detail, elapsed_ms = elapsed.as_millis() as u64, "synced");
            // Echoes and no-op runs are counted in the metrics, not kept in the trail. The
            // line is written with the event's removal, in one transaction.
            let audit = (!matches!(*outcome, "echo" | "unchanged"))
                .then(|| engine.audit_entry(&record, dir, outcome, detail));
            engine
                .metrics
                .record_sync(event.side.as_str(), outcome, elapsed);
            Settle::Complete(audit)
        }
        Err(SyncError::Rejected(reason)) => {
            tracing::warn!(%record, reason, "sync refused; the record waits for a change");
            let audit = engine.audit_entry(&record, dir, "rejected", reason);
            engine
                .metrics
                .record_sync(event.side.as_str(), "rejected", elapsed);
            record_failure(engine, &event, reason, true).await;
            Settle::Complete(Some(audit))
        }
        Err(SyncError::Parked {
            step,
            version,
            reason,
        }) => {
            tracing::warn!(%record, step, version, reason, "the mapping fails on this record every time; parked until another version of the step is activated");
            engine.audit(&record, dir, "parked", reason);
            engine
                .metrics
                .record_sync(event.side.as_str(), "parked", elapsed);
            // Once per park, so the seller's Audit column gets one line, not one per retry.
            record_failure(engine, &event, reason, false).await;
            Settle::Park {
                step: step.clone(),
                version: version.clone(),
                reason: reason.clone(),
            }
        }
        Err(SyncError::Unavailable {
            service, reason, ..
        }) if outage == Failure::Outage => {
            // Neither the trail nor the seller's Audit column hears of it: the pause is one
            // line in the log and a metric, not a line per event.
            tracing::debug!(%record, service = service.as_str(), reason, "service unavailable; the event waits for it, keeping its attempts");
            engine
                .metrics
                .record_sync(event.side.as_str(), "paused", elapsed);
            Settle::PutBack(chrono::Utc::now().timestamp_millis(), reason.clone())
        }
        Err(
            SyncError::Transient(reason)
            | SyncError::Unavailable { reason, .. }
            | SyncError::AwaitingLink { reason, .. },
        ) if event.attempts < engine.config.max_attempts => {
            let delay = engine.config.retry_delay(event.attempts);
            // Waiting for the run that makes the pair is no failure of this record's.
            let behind = match &result {
                Err(SyncError::AwaitingLink { lock_key, .. }) => {
                    tracing::info!(%record, reason, attempt = event.attempts, behind = lock_key, "waits for its pair's link");
                    Some(lock_key.clone())
                }
                _ => {
                    tracing::warn!(%record, reason, attempt = event.attempts, retry_in_ms = delay.as_millis() as u64, "sync failed; will retry");
                    None
                }
            };
            engine.audit(&record, dir, "retry", reason);
            engine
                .metrics
                .record_sync(event.side.as_str(), "retry", elapsed);
            let at = chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64;
            Settle::RetryAt(at, reason.clone(), behind)
        }
        Err(
            SyncError::Transient(reason)
            | SyncError::Unavailable { reason, .. }
            | SyncError::AwaitingLink { reason, .. },
        ) => {
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
    // hold its record's lock until its lease runs out.
    // Every attempt saves what the run left (the same rows again after a failed one): where the
    // settle is one transaction, a failed attempt saved nothing.
    let left = Arc::new(left);
    let mut found = None;
    for attempt in 1..=SETTLE_ATTEMPTS {
        let (id, this_try) = (event.id, settle.clone());
        let left = left.clone();
        // A parked event may requeue others after its settle (below): the claim waits for it.
        let claim_next = !matches!(settle, Settle::Park { .. })
            && !*stop.borrow()
            && engine.availability.all_answering();
        let settled = off_runtime(&engine.store, move |store| {
            if let Settle::Complete(audit) = &this_try {
                // The common end of a run, in one call the store may make one transaction.
                let claim = claim_next.then(|| (chrono::Utc::now().timestamp_millis(), lease_ms));
                let claimed = store.complete_and_claim(
                    id,
                    audit.as_ref(),
                    left.link.as_ref(),
                    &left.runs,
                    claim,
                )?;
                return Ok(claimed.map(|claimed| claimed_or_next_due(store, claimed?)));
            }
            if let Some(link) = &left.link {
                store.save_link(link)?;
            }
            crate::store::keep_for_replays(store, &left.runs);
            this_try.apply(store, id)?;
            Ok(claim_next.then(|| claim_or_next_due(store, lease_ms)))
        })
        .await;
        match settled {
            Ok(claimed) => {
                found = claimed.and_then(|claimed| {
                    claimed
                        .inspect_err(|e| tracing::error!(error = %format!("{e:#}"), "could not read the queue"))
                        .ok()
                });
                break;
            }
            Err(e) if attempt < SETTLE_ATTEMPTS => {
                tracing::warn!(%record, error = %format!("{e:#}"), "could not settle the event in the queue; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => {
                tracing::error!(%record, error = %format!("{e:#}"), "could not settle the event in the queue; it runs again when its lease runs out");
                return None;
            }
        }
    }
    if let Settle::Park { step, version, .. } = &settle {
        // A version activated while this record ran found nothing parked yet.
        if let Some(active) = engine
            .pipelines
            .step(step)
            .map(|s| s.active().version.clone())
            && *active != **version
        {
            // This worker claims again right after (its settle did not), so no wakeup is needed.
            requeue_parked(&*engine.store, step, &active);
        }
    }
    found
}

/// Processes `event`, so that a panic (a bug) fails this event, not the worker, cut off at 90%
/// of the lease, so the worker settles the event while it holds it; answers the result and
/// what the run left for the settle (its pipeline runs, its last save of the link). In the
/// worker's own task rather than one of its own: a spawned task costs a hand-over between
/// threads, and dropping the run at the limit stops it as an abort would.
async fn run_within_lease(
    engine: &Arc<SyncEngine>,
    event: &QueuedEvent,
    link: Option<Box<LinkAtClaim>>,
) -> (Result<Done, SyncError>, deferred::LeftForSettle) {
    let limit = engine.config.run_timeout();
    let run = read_at_claim::within(link.map(|link| *link), engine.process(event));
    let run = std::panic::AssertUnwindSafe(run).catch_unwind();
    match tokio::time::timeout(limit, deferred::collecting(run)).await {
        Ok((Ok(result), left)) => (result, left),
        Ok((Err(panic), left)) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            let error = SyncError::transient(format!("processing panicked: {message}"));
            (Err(error), left)
        }
        Err(_) => {
            // What it wrote so far is kept; the next run reads both sides and writes the rest.
            let error = SyncError::transient(format!(
                "the run took longer than {} s (90% of sync.lease_secs) and was stopped; raise \
                 sync.lease_secs if records legitimately take this long",
                limit.as_secs()
            ));
            (Err(error), deferred::LeftForSettle::default())
        }
    }
}

/// What becomes of a processed event in the queue.
#[derive(Clone)]
enum Settle {
    /// Removed, with its line of the audit trail if it has one.
    Complete(Option<AuditEntry>),
    /// Again at the time, behind the lock key if given.
    RetryAt(i64, String, Option<String>),
    /// Back in the queue without spending the attempt: a service was down.
    PutBack(i64, String),
    Dead(String),
    Park {
        step: String,
        version: String,
        reason: String,
    },
}

impl Settle {
    /// Settles event `id` in `store`, in one transaction.
    fn apply(&self, store: &dyn SyncStore, id: i64) -> anyhow::Result<()> {
        match self {
            Settle::Complete(audit) => store.complete_with_audit(id, audit.as_ref()),
            Settle::RetryAt(at, reason, None) => store.retry_later(id, reason, *at),
            Settle::RetryAt(at, reason, Some(key)) => store.retry_behind(id, key, reason, *at),
            Settle::PutBack(at, reason) => store.put_back(id, reason, *at),
            Settle::Dead(reason) => store.dead_letter(id, reason),
            Settle::Park {
                step,
                version,
                reason,
            } => store.park(id, step, version, reason),
        }
    }
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
    if let Err(e) = off_runtime(&engine.store, move |store| store.save_link(&link)).await {
        tracing::error!(error = %format!("{e:#}"), "could not record the failure in the link");
    }
}
