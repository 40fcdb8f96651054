//! The event queue, parked events and dead letters on PostgreSQL: the states and rules of
//! `sqlite/queue.rs`, made safe for several replicas (see the module docs of [`super`]).

use super::liveness::{CLAIMER_GONE, Standing, holds_lock};
use super::{CLAIM_LOCK, PgStore, ms_to_text, side_of};
use crate::store::now;
use crate::store::queue_list::{ORDER, QueueEntry, QueueFilter};
use crate::store::sync_store::{
    AuditEntry, DeadLetter, Enqueued, NewEvent, ParkedEvent, QueueCounts, QueueStore, QueuedEvent,
    RECONCILE_ORIGIN, REPLAY_ORIGIN,
};
use anyhow::{Context as _, Result};
use std::sync::LazyLock;
use tokio_postgres::Transaction;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The claim queries ([`crate::store::claim_sql`]) of a replica that judges the others
/// ([`Standing::Judging`]): a running event is abandoned when its lease ran out or its claimer
/// is dead (it holds no liveness lock, see [`super::liveness`]). Run under [`CLAIM_LOCK`], so
/// the running events they check against include every claim committed before; the row itself
/// is skipped when another transaction holds it.
static CLAIM_SQL_JUDGING: LazyLock<[String; 2]> = LazyLock::new(|| {
    crate::store::claim_sql::claim_queries(
        "$1",
        Some(CLAIMER_GONE.as_str()),
        "FOR UPDATE OF e SKIP LOCKED",
    )
});

/// Takes the claim lock (`$1`, [`CLAIM_LOCK`]) and answers whether claimer `$2` (NULL: an
/// unnamed claimer) holds its liveness lock now, in one round trip.
static CLAIM_LOCK_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT pg_advisory_xact_lock($1)::text, ($2::text IS NULL OR {})",
        holds_lock("$2::text")
    )
});

/// The claim queries of a replica that does not judge the others (yet, or at all): only
/// expired leases are abandoned.
static CLAIM_SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
    crate::store::claim_sql::claim_queries("$1", None, "FOR UPDATE OF e SKIP LOCKED")
});

/// The other events of running event `$1`'s record that its failed attempt stands for (see
/// `COVERED` in `sqlite/queue.rs`).
const COVERED: &str = "state = 'pending' AND id != $1
     AND side = (SELECT side FROM sync_events WHERE id = $1)
     AND record_id = (SELECT record_id FROM sync_events WHERE id = $1)
     AND (origin = $2
          OR ROUND(EXTRACT(EPOCH FROM received_at::timestamptz) * 1000)::bigint
             < (SELECT available_at FROM sync_events WHERE id = $1))";

async fn fold_covered(tx: &Transaction<'_>, id: i64) -> Result<()> {
    tx.execute(
        &format!("DELETE FROM sync_events WHERE {COVERED}"),
        &[&id, &RECONCILE_ORIGIN],
    )
    .await?;
    Ok(())
}

async fn drop_parked_of(tx: &Transaction<'_>, id: i64) -> Result<()> {
    tx.execute(
        "DELETE FROM sync_events
         WHERE state = 'parked' AND id != $1
           AND side = (SELECT side FROM sync_events WHERE id = $1)
           AND record_id = (SELECT record_id FROM sync_events WHERE id = $1)",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Queues events of state `from` again as if just received (as on SQLite). $1 is now in ms,
/// $2 now as text.
fn requeue_sql(from: &str, condition: &str) -> String {
    format!(
        "UPDATE sync_events SET state = 'pending', attempts = 0, available_at = $1,
         failed_at = NULL, parked_step = NULL, parked_version = NULL,
         origin = '{REPLAY_ORIGIN}', received_at = $2
         WHERE state = '{from}' {condition}"
    )
}

/// The record's lock: enqueues take it for every record of their batch (so replicas coalesce a
/// record's events as one process would), and so does everything that deletes or changes a
/// record's waiting events (folding them into a failed attempt, dropping parked ones), so the
/// two never wait for each other's rows in opposite orders.
const LOCK_RECORD: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended($1::text || E'\\n' || $2::text, 0))";

/// Takes the lock of the record of event `id` (see [`LOCK_RECORD`]).
async fn lock_record_of(tx: &Transaction<'_>, id: i64) -> Result<()> {
    if let Some(row) = tx
        .query_opt(
            "SELECT side, record_id FROM sync_events WHERE id = $1",
            &[&id],
        )
        .await?
    {
        let (side, record): (&str, &str) = (row.get(0), row.get(1));
        tx.execute(LOCK_RECORD, &[&side, &record]).await?;
    }
    Ok(())
}

/// Stores `event` in `tx`, or coalesces it with the waiting event of its record, whose row it
/// locks first: a claim taking that event meanwhile either went first (then it is running,
/// not waiting, and this event gets an entry of its own) or skips it.
async fn enqueue_in(
    tx: &Transaction<'_>,
    event: &NewEvent,
    at_ms: i64,
    at: &str,
) -> Result<Enqueued> {
    let waiting: Option<i64> = tx
        .query_opt(
            "SELECT id FROM sync_events
             WHERE lock_key = $1 AND side = $2 AND record_id = $3 AND state = 'pending'
             ORDER BY id LIMIT 1 FOR UPDATE",
            &[&event.lock_key, &event.side.as_str(), &event.record_id],
        )
        .await?
        .map(|row| row.get(0));
    Ok(match waiting {
        Some(id) if event.origin == RECONCILE_ORIGIN => Enqueued::Coalesced(id),
        Some(id) => {
            tx.execute(
                "UPDATE sync_events SET available_at = LEAST(available_at, $2), attempts = 0,
                        received_at = $6,
                        payload = CASE WHEN origin = $3 OR side = 'dataverse' THEN $5
                                  ELSE payload END,
                        origin = CASE WHEN origin = $3 THEN $4 ELSE origin END
                 WHERE id = $1",
                &[
                    &id,
                    &at_ms,
                    &RECONCILE_ORIGIN,
                    &event.origin,
                    &event.payload_when_coalesced(),
                    &at,
                ],
            )
            .await?;
            Enqueued::Coalesced(id)
        }
        None => {
            let row = tx
                .query_one(
                    "INSERT INTO sync_events
                     (side, record_id, lock_key, origin, payload, state, attempts, available_at,
                      received_at)
                     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7) RETURNING id",
                    &[
                        &event.side.as_str(),
                        &event.record_id,
                        &event.lock_key,
                        &event.origin,
                        &event.payload,
                        &at_ms,
                        &at,
                    ],
                )
                .await?;
            Enqueued::New(row.get(0))
        }
    })
}

impl QueueStore for PgStore {
    /// Group commit: the events in order, in one transaction, committed before this returns
    /// (and so before any delivery is acknowledged).
    fn enqueue_batch(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>> {
        let events = events.to_vec();
        let count = events.len();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                // Every record's lock, in one order: batches on two replicas never deadlock.
                let mut records: Vec<(&str, &str)> = events
                    .iter()
                    .map(|e| (e.side.as_str(), e.record_id.as_str()))
                    .collect();
                records.sort();
                records.dedup();
                for (side, record) in &records {
                    tx.execute(LOCK_RECORD, &[side, record]).await?;
                }
                let (at_ms, at) = (now_ms(), now());
                let mut stored = Vec::with_capacity(events.len());
                for event in &events {
                    stored.push(enqueue_in(&tx, event, at_ms, &at).await.with_context(|| {
                        format!(
                            "storing the event of {} {} in the queue",
                            event.side.as_str(),
                            event.record_id
                        )
                    })?);
                }
                tx.commit().await.with_context(|| {
                    format!("committing {count} event(s) to the queue (nothing of them is stored)")
                })?;
                Ok(stored)
            })
        })
    }

    fn claim(&self, now_ms: i64, lease_ms: i64) -> Result<Option<QueuedEvent>> {
        let (claimer, queries) = match self.claimer() {
            // Without its liveness lock, the other replicas would take back at once whatever
            // this one claimed: it waits until the lock is back.
            Some((_, Standing::Lost)) => return Ok(None),
            Some((id, Standing::Held)) => (Some(id.to_owned()), &*CLAIM_SQL),
            Some((id, Standing::Judging)) => (Some(id.to_owned()), &*CLAIM_SQL_JUDGING),
            None => (None, &*CLAIM_SQL),
        };
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                // The liveness lock may have gone since the keeper last looked (a restart of
                // the server): a claim now would look abandoned to the others.
                let held: bool = tx
                    .query_one(CLAIM_LOCK_SQL.as_str(), &[&CLAIM_LOCK, &claimer])
                    .await?
                    .get(1);
                if !held {
                    tx.commit().await?;
                    return Ok(None);
                }
                let mut found = None;
                for sql in queries.iter() {
                    found = tx.query_opt(sql.as_str(), &[&now_ms]).await?;
                    if found.is_some() {
                        break;
                    }
                }
                let Some(row) = found else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let event = QueuedEvent {
                    id: row.get(0),
                    side: side_of(row.get(1))?,
                    record_id: row.get(2),
                    lock_key: row.get(3),
                    origin: row.get(4),
                    payload: row.get(5),
                    attempts: u32::try_from(row.get::<_, i32>(6)).unwrap_or(0) + 1,
                    received_at: row.get(7),
                };
                tx.execute(
                    "UPDATE sync_events SET state = 'running', attempts = attempts + 1,
                            available_at = $2, lease_until = $3, claimed_by = $4
                     WHERE id = $1",
                    &[
                        &event.id,
                        &now_ms,
                        &now_ms.saturating_add(lease_ms),
                        &claimer,
                    ],
                )
                .await?;
                tx.commit().await?;
                Ok(Some(event))
            })
        })
        .context("claiming an event from the queue")
    }

    /// Removes processed event `id`, writing `audit` in the same transaction if given.
    fn complete_with_audit(&self, id: i64, audit: Option<&AuditEntry>) -> Result<()> {
        let audit = audit.cloned();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                if let Some(e) = &audit {
                    tx.execute(
                        super::audit::AUDIT_INSERT,
                        &[&e.at, &e.record, &e.direction, &e.outcome, &e.detail],
                    )
                    .await?;
                }
                lock_record_of(&tx, id).await?;
                drop_parked_of(&tx, id).await?;
                tx.execute("DELETE FROM sync_events WHERE id = $1", &[&id])
                    .await?;
                Ok(tx.commit().await?)
            })
        })
        .context("removing a processed event")
    }

    fn park(&self, id: i64, step: &str, version: &str, error: &str) -> Result<()> {
        let (s, v, error) = (step.to_owned(), version.to_owned(), error.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                lock_record_of(&tx, id).await?;
                fold_covered(&tx, id).await?;
                drop_parked_of(&tx, id).await?;
                tx.execute(
                    "UPDATE sync_events SET state = 'parked', last_error = $2, failed_at = $3,
                            parked_step = $4, parked_version = $5, lease_until = NULL,
                            claimed_by = NULL
                     WHERE id = $1",
                    &[&id, &error, &now(), &s, &v],
                )
                .await?;
                Ok(tx.commit().await?)
            })
        })
        .with_context(|| format!("parking an event that failed on {step} {version}"))
    }

    fn parked(&self, limit: usize) -> Result<Vec<ParkedEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT id, side, record_id, origin, COALESCE(parked_step, ''),
                                COALESCE(parked_version, ''), COALESCE(last_error, ''),
                                received_at, COALESCE(failed_at, ''), available_at
                         FROM sync_events WHERE state = 'parked' ORDER BY id LIMIT $1",
                        &[&limit],
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(ParkedEvent {
                            id: row.get(0),
                            side: side_of(row.get(1))?,
                            record_id: row.get(2),
                            origin: row.get(3),
                            step: row.get(4),
                            version: row.get(5),
                            reason: row.get(6),
                            received_at: row.get(7),
                            parked_at: row.get(8),
                            last_attempt_at: ms_to_text(row.get(9)),
                        })
                    })
                    .collect()
            })
        })
        .context("listing parked events")
    }

    fn dead_letter(&self, id: i64, error: &str) -> Result<()> {
        let error = error.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                lock_record_of(&tx, id).await?;
                fold_covered(&tx, id).await?;
                tx.execute(
                    "UPDATE sync_events SET state = 'dead', last_error = $2, failed_at = $3,
                            lease_until = NULL, claimed_by = NULL
                     WHERE id = $1",
                    &[&id, &error, &now()],
                )
                .await?;
                Ok(tx.commit().await?)
            })
        })
        .context("storing a dead letter")
    }

    /// Only events whose lease ran out: the others may belong to a replica that is alive
    /// (one whose lock is missing may be taking it back after a restart of the server; the
    /// claims of judging replicas take back the events of the dead).
    fn requeue_running(&self) -> Result<u64> {
        self.with(move |c| {
            Box::pin(async move {
                Ok(c.execute(
                    &format!(
                        "UPDATE sync_events e SET state = 'pending', lease_until = NULL,
                                claimed_by = NULL
                         WHERE {}",
                        crate::store::claim_sql::abandoned("$1", None)
                    ),
                    &[&now_ms()],
                )
                .await?)
            })
        })
        .context("re-queueing events a stopped host left running")
    }

    fn next_ready_at(&self) -> Result<Option<i64>> {
        self.with(move |c| {
            Box::pin(async move {
                Ok(c.query_one(
                    "SELECT MIN(at) FROM (
                         SELECT available_at AS at FROM sync_events WHERE state = 'pending'
                         UNION ALL
                         SELECT lease_until FROM sync_events WHERE state = 'running') t",
                    &[],
                )
                .await?
                .get(0))
            })
        })
        .context("reading the queue")
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT id, side, record_id, origin, attempts, COALESCE(last_error, ''),
                                received_at, COALESCE(failed_at, ''), available_at
                         FROM sync_events WHERE state = 'dead' ORDER BY id LIMIT $1",
                        &[&limit],
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(DeadLetter {
                            id: row.get(0),
                            side: side_of(row.get(1))?,
                            record_id: row.get(2),
                            origin: row.get(3),
                            attempts: u32::try_from(row.get::<_, i32>(4)).unwrap_or(0),
                            last_error: row.get(5),
                            received_at: row.get(6),
                            failed_at: row.get(7),
                            last_attempt_at: ms_to_text(row.get(8)),
                        })
                    })
                    .collect()
            })
        })
        .context("listing dead letters")
    }

    fn replay_dead_letters(&self, ids: Option<&[i64]>) -> Result<u64> {
        let ids = ids.map(<[i64]>::to_vec);
        self.with(move |c| {
            Box::pin(async move {
                let reset = requeue_sql("dead", "");
                let n = match ids {
                    None => c.execute(&reset, &[&now_ms(), &now()]).await?,
                    Some(ids) => {
                        c.execute(
                            &format!("{reset} AND id = ANY($3)"),
                            &[&now_ms(), &now(), &ids],
                        )
                        .await?
                    }
                };
                Ok(n)
            })
        })
        .context("replaying dead letters")
    }

    /// MVCC, as the counts: the listing never waits for a writer.
    fn queued_events(&self, filter: QueueFilter, limit: usize) -> Result<Vec<QueueEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT id, state, side, record_id, origin, attempts, available_at,
                                    lease_until, claimed_by, last_error, received_at
                             FROM sync_events WHERE state IN ({}) {ORDER} LIMIT $1",
                            filter.sql_states()
                        ),
                        &[&limit],
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(QueueEntry {
                            id: row.get(0),
                            state: row.get(1),
                            side: side_of(row.get(2))?,
                            record_id: row.get(3),
                            origin: row.get(4),
                            attempts: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
                            available_at: ms_to_text(row.get(6)),
                            lease_until: row.get::<_, Option<i64>>(7).map(ms_to_text),
                            claimed_by: row.get(8),
                            last_error: row.get(9),
                            received_at: row.get(10),
                        })
                    })
                    .collect()
            })
        })
        .context("listing the queued events")
    }

    /// MVCC: the count reads the last commit and never waits for a writer.
    fn queue_counts(&self) -> Result<QueueCounts> {
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT state, COUNT(*) FROM sync_events GROUP BY state",
                        &[],
                    )
                    .await?;
                let mut counts = QueueCounts::default();
                for row in rows {
                    let n = row.get::<_, i64>(1) as u64;
                    match row.get::<_, &str>(0) {
                        "pending" => counts.pending = n,
                        "running" => counts.running = n,
                        "dead" => counts.dead = n,
                        "parked" => counts.parked = n,
                        _ => {}
                    }
                }
                let oldest = c
                    .query_one(
                        "SELECT MIN(received_at) FROM sync_events WHERE state = 'pending'",
                        &[],
                    )
                    .await?;
                counts.oldest_pending_ms = oldest
                    .get::<_, Option<&str>>(0)
                    .and_then(crate::store::millis_of);
                Ok(counts)
            })
        })
        .context("counting the queue")
    }

    fn enqueue(&self, event: &NewEvent) -> Result<Enqueued> {
        let mut stored = self.enqueue_batch(std::slice::from_ref(event))?;
        Ok(stored.pop().expect("one result per event"))
    }

    fn claim_as(&self, replica_id: &str) -> Result<()> {
        self.join_as(replica_id)
            .with_context(|| format!("proving replica `{replica_id}` alive to the others"))
    }

    fn complete(&self, id: i64) -> Result<()> {
        self.complete_with_audit(id, None)
    }

    fn retry_later(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()> {
        self.back_to_pending(id, error, available_at_ms, 0, None)
            .context("putting a failed event back in the queue")
    }

    fn retry_behind(
        &self,
        id: i64,
        lock_key: &str,
        error: &str,
        available_at_ms: i64,
    ) -> Result<()> {
        self.back_to_pending(id, error, available_at_ms, 0, Some(lock_key))
            .context("putting an event back in the queue behind its pair's run")
    }

    fn put_back(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()> {
        self.back_to_pending(id, error, available_at_ms, 1, None)
            .context("putting an event back in the queue while a service is down")
    }

    fn requeue_parked(&self, step: &str, active: &str) -> Result<u64> {
        self.requeue_parked_where(Some((step, active)))
    }

    fn requeue_all_parked(&self) -> Result<u64> {
        self.requeue_parked_where(None)
    }
}

impl PgStore {
    /// Makes running event `id` wait until `at_ms`, giving back `refund` of its attempts, under
    /// `lock_key` if given (else its own).
    fn back_to_pending(
        &self,
        id: i64,
        error: &str,
        at_ms: i64,
        refund: i32,
        lock_key: Option<&str>,
    ) -> Result<()> {
        let error = error.to_owned();
        let lock_key = lock_key.map(str::to_owned);
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                lock_record_of(&tx, id).await?;
                fold_covered(&tx, id).await?;
                tx.execute(
                    "UPDATE sync_events SET state = 'pending', available_at = $2,
                            last_error = $3, lease_until = NULL,
                            attempts = GREATEST(attempts - $4, 0),
                            lock_key = COALESCE($5, lock_key), claimed_by = NULL
                     WHERE id = $1",
                    &[&id, &at_ms, &error, &refund, &lock_key],
                )
                .await?;
                Ok(tx.commit().await?)
            })
        })
    }

    fn requeue_parked_where(&self, step: Option<(&str, &str)>) -> Result<u64> {
        let step = step.map(|(s, v)| (s.to_owned(), v.to_owned()));
        self.with(move |c| {
            Box::pin(async move {
                Ok(match step {
                    Some((step, active)) => {
                        c.execute(
                            &requeue_sql("parked", "AND parked_step = $3 AND parked_version != $4"),
                            &[&now_ms(), &now(), &step, &active],
                        )
                        .await?
                    }
                    None => {
                        c.execute(&requeue_sql("parked", ""), &[&now_ms(), &now()])
                            .await?
                    }
                })
            })
        })
        .context("queueing parked events again")
    }
}
