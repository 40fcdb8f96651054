//! The event queue, parked events and dead letters on SQLite.
//!
//! States: `pending` (waiting, ready at `available_at`), `running` (claimed by a worker, under
//! a lease until `lease_until`), `parked` (a mapping version fails on it every time: it waits
//! for another version of that step), `dead` (failed every attempt). A processed event is
//! deleted: the audit trail is the history. Claiming skips records that already have an event
//! running, which is what keeps events of one record in order while different records run in
//! parallel; an event whose lease ran out is claimed again.
//!
use super::{SqliteStore, now, write_transaction};
use crate::store::queue_list::{ORDER, QueueEntry, QueueFilter};
use crate::store::sync_store::{
    AuditEntry, DeadLetter, Enqueued, NewEvent, ParkedEvent, QueueCounts, QueueStore, QueuedEvent,
    RECONCILE_ORIGIN, REPLAY_ORIGIN, Side,
};
use anyhow::{Context as _, Result};
use rusqlite::{OptionalExtension, Row, params};
use std::sync::LazyLock;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// SQL turning `column` (ms since the epoch, or NULL) into the text the store writes times as.
fn ms_text(column: &str) -> String {
    format!("strftime('%Y-%m-%dT%H:%M:%fZ', {column} / 1000.0, 'unixepoch')")
}

fn side_of(row: &Row<'_>, index: usize) -> rusqlite::Result<Side> {
    let text: String = row.get(index)?;
    Side::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown side `{text}`").into(),
        )
    })
}

/// The claim queries ([`crate::store::claim_sql`]), built once: claiming is on every worker's
/// path.
static CLAIM_SQL: LazyLock<[String; 2]> =
    LazyLock::new(|| crate::store::claim_sql::claim_queries("?1", None, ""));

/// The other events of the record of running event `id` that its failed attempt stands for:
/// waiting ones received before the attempt started (it read the current state, so it saw
/// what they announced), and re-listings by the reconciliation (no evidence of a change; a
/// referral changed after its dead letter is listed again).
const COVERED: &str = "state = 'pending' AND id != ?1
     AND side = (SELECT side FROM sync_events WHERE id = ?1)
     AND record_id = (SELECT record_id FROM sync_events WHERE id = ?1)
     AND (origin = ?2
          OR CAST(ROUND((julianday(received_at) - 2440587.5) * 86400000.0) AS INTEGER)
             < (SELECT available_at FROM sync_events WHERE id = ?1))";

/// The delete of [`fold_covered`], built once so that the statement cache recognises it.
static FOLD_COVERED_SQL: LazyLock<String> =
    LazyLock::new(|| format!("DELETE FROM sync_events WHERE {COVERED}"));

/// Folds the events a failed attempt of `id` stands for into it before it waits for a retry or
/// becomes a dead letter. Left in the queue, they would fail the same way: a record would use
/// several retry budgets at once and end in several dead letters. The event keeps its own
/// attempts, so its dead letter still says `gave up after <sync.max_attempts> attempts`. A
/// change received after the attempt started stays, and runs with the whole budget.
fn fold_covered(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<()> {
    tx.prepare_cached(&FOLD_COVERED_SQL)?
        .execute(params![id, RECONCILE_ORIGIN])?;
    Ok(())
}

/// Removes the parked events of the record of event `id` (other than `id`): a later attempt
/// read the record's current state, so what it ended in (synced, refused, parked again)
/// stands for them.
fn drop_parked_of(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<()> {
    tx.prepare_cached(
        "DELETE FROM sync_events
         WHERE state = 'parked' AND id != ?1
           AND side = (SELECT side FROM sync_events WHERE id = ?1)
           AND record_id = (SELECT record_id FROM sync_events WHERE id = ?1)",
    )?
    .execute(params![id])?;
    Ok(())
}

/// Claims the oldest ready event none of whose pair is running, in `tx` (see
/// [`QueueStore::claim`]).
pub(super) fn claim_in(
    tx: &rusqlite::Transaction<'_>,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Option<QueuedEvent>> {
    let mut event = None;
    for sql in CLAIM_SQL.iter() {
        event = tx
            .prepare_cached(sql)?
            .query_row(params![now_ms], |row| {
                Ok(QueuedEvent {
                    id: row.get(0)?,
                    side: side_of(row, 1)?,
                    record_id: row.get(2)?,
                    lock_key: row.get(3)?,
                    origin: row.get(4)?,
                    payload: row.get(5)?,
                    attempts: row.get::<_, u32>(6)? + 1,
                    received_at: row.get(7)?,
                })
            })
            .optional()?;
        if event.is_some() {
            break;
        }
    }
    if let Some(event) = &event {
        // While it runs, `available_at` holds when this attempt started: what was received
        // before then, the attempt read (see `dead_letter`).
        tx.prepare_cached(
            "UPDATE sync_events SET state = 'running', attempts = attempts + 1,
                    available_at = ?2, lease_until = ?3
             WHERE id = ?1",
        )?
        .execute(params![event.id, now_ms, now_ms.saturating_add(lease_ms)])?;
    }
    Ok(event)
}

/// Removes processed event `id` in `tx`, with its audit line if given (see
/// [`QueueStore::complete_with_audit`]).
pub(super) fn complete_in(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    audit: Option<&AuditEntry>,
) -> Result<()> {
    if let Some(entry) = audit {
        super::audit::audit_in(tx, entry)?;
    }
    drop_parked_of(tx, id)?;
    tx.prepare_cached("DELETE FROM sync_events WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// Queues events of state `from` (with `condition` on top) again as if just received, with the
/// whole retry budget, running in full (the replay origin: a failure's fingerprint in the link
/// must not make the record look unchanged). ?1 is now in ms, ?2 now as text.
fn requeue_sql(from: &str, condition: &str) -> String {
    format!(
        "UPDATE sync_events SET state = 'pending', attempts = 0, available_at = ?1,
         failed_at = NULL, parked_step = NULL, parked_version = NULL,
         origin = '{REPLAY_ORIGIN}', received_at = ?2
         WHERE state = '{from}' {condition}"
    )
}

/// Stores `event` in the open transaction `tx` (or coalesces it with a waiting event of the
/// same record); `now_ms` and `now` are the time it is received.
fn enqueue_in(
    tx: &rusqlite::Transaction<'_>,
    event: &NewEvent,
    now_ms: i64,
    now: &str,
) -> Result<Enqueued> {
    let waiting: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM sync_events
             WHERE lock_key = ?1 AND side = ?2 AND record_id = ?3 AND state = 'pending'
             ORDER BY id LIMIT 1",
        )?
        .query_row(
            params![event.lock_key, event.side.as_str(), event.record_id],
            |row| row.get(0),
        )
        .optional()?;
    Ok(match waiting {
        // The reconciliation re-lists records whether they changed or not: the waiting
        // event keeps its place and its attempts (it reads the current state anyway).
        Some(id) if event.origin == RECONCILE_ORIGIN => Enqueued::Coalesced(id),
        Some(id) => {
            // A change that may fix an earlier failure should not wait out its backoff, and
            // gets the whole retry budget. The event now stands for this notification: it
            // is received now, and a re-listing it joins becomes a change (so a dead
            // letter cannot fold it away, see `dead_letter`).
            tx.prepare_cached(
                "UPDATE sync_events SET available_at = MIN(available_at, ?2), attempts = 0,
                        received_at = ?6,
                        payload = CASE WHEN origin = ?3 OR side = 'dataverse' THEN ?5
                                  ELSE payload END,
                        origin = CASE WHEN origin = ?3 THEN ?4 ELSE origin END
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                now_ms,
                RECONCILE_ORIGIN,
                event.origin,
                event.payload_when_coalesced(),
                now
            ])?;
            Enqueued::Coalesced(id)
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO sync_events
                 (side, record_id, lock_key, origin, payload, state, attempts, available_at, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7)",
            )?
            .execute(params![
                event.side.as_str(),
                event.record_id,
                event.lock_key,
                event.origin,
                event.payload,
                now_ms,
                now
            ])?;
            Enqueued::New(tx.last_insert_rowid())
        }
    })
}

impl QueueStore for SqliteStore {
    fn enqueue(&self, event: &NewEvent) -> Result<Enqueued> {
        let mut stored = self.enqueue_batch(std::slice::from_ref(event))?;
        Ok(stored.pop().expect("one result per event"))
    }

    /// Group commit: the events in order, in one transaction, so one `fsync` (`synchronous =
    /// FULL`) stores them all. They are received when the transaction holds the database, which
    /// is after any claim that ran before it (see `COVERED`).
    fn enqueue_batch(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>> {
        // Durable: the sources acknowledge these events once this returns.
        let mut conn = self.durable_conn()?;
        // Immediate: the write lock is taken (or waited for) up front, never in the middle.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (at_ms, at) = (now_ms(), now());
        let stored = events
            .iter()
            .map(|event| {
                enqueue_in(&tx, event, at_ms, &at).with_context(|| {
                    format!(
                        "storing the event of {} {} in the queue",
                        event.side.as_str(),
                        event.record_id
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit().with_context(|| {
            format!(
                "committing {} event(s) to the queue (nothing of them is stored)",
                events.len()
            )
        })?;
        Ok(stored)
    }

    fn claim(&self, now_ms: i64, lease_ms: i64) -> Result<Option<QueuedEvent>> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let event = claim_in(&tx, now_ms, lease_ms)?;
        tx.commit().context("claiming an event from the queue")?;
        Ok(event)
    }

    /// Removes processed event `id`, writing `audit` in the same transaction if given.
    fn complete_with_audit(&self, id: i64, audit: Option<&AuditEntry>) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        complete_in(&tx, id, audit)?;
        tx.commit().context("removing a processed event")?;
        Ok(())
    }

    fn retry_later(&self, id: i64, error: &str, at_ms: i64) -> Result<()> {
        self.back_to_pending(id, error, at_ms, 0, None)
            .context("putting a failed event back in the queue")
    }

    fn put_back(&self, id: i64, error: &str, at_ms: i64) -> Result<()> {
        self.back_to_pending(id, error, at_ms, 1, None)
            .context("putting an event back in the queue while a service is down")
    }

    fn retry_behind(&self, id: i64, lock_key: &str, error: &str, at_ms: i64) -> Result<()> {
        self.back_to_pending(id, error, at_ms, 0, Some(lock_key))
            .context("putting an event back in the queue behind its pair's run")
    }

    fn park(&self, id: i64, step: &str, version: &str, error: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        fold_covered(&tx, id)?;
        drop_parked_of(&tx, id)?;
        tx.prepare_cached(
            "UPDATE sync_events SET state = 'parked', last_error = ?2, failed_at = ?3,
                    parked_step = ?4, parked_version = ?5, lease_until = NULL
             WHERE id = ?1",
        )?
        .execute(params![id, error, now(), step, version])?;
        tx.commit()
            .with_context(|| format!("parking an event that failed on {step} {version}"))?;
        Ok(())
    }

    fn parked(&self, limit: usize) -> Result<Vec<ParkedEvent>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, side, record_id, origin, COALESCE(parked_step, ''),
                    COALESCE(parked_version, ''), COALESCE(last_error, ''), received_at,
                    COALESCE(failed_at, ''),
                    COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', available_at / 1000.0, 'unixepoch'), '')
             FROM sync_events WHERE state = 'parked' ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |row| {
            Ok(ParkedEvent {
                id: row.get(0)?,
                side: side_of(row, 1)?,
                record_id: row.get(2)?,
                origin: row.get(3)?,
                step: row.get(4)?,
                version: row.get(5)?,
                reason: row.get(6)?,
                received_at: row.get(7)?,
                parked_at: row.get(8)?,
                // As for a dead letter: `available_at` kept the start of the attempt.
                last_attempt_at: row.get(9)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .context("listing parked events")
    }

    fn dead_letter(&self, id: i64, error: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        fold_covered(&tx, id)?;
        tx.prepare_cached(
            "UPDATE sync_events SET state = 'dead', last_error = ?2, failed_at = ?3 WHERE id = ?1",
        )?
        .execute(params![id, error, now()])?;
        tx.commit().context("storing a dead letter")?;
        Ok(())
    }

    fn requeue_running(&self) -> Result<u64> {
        let n = self
            .conn()
            .execute(
                "UPDATE sync_events SET state = 'pending', lease_until = NULL
                 WHERE state = 'running'",
                [],
            )
            .context("re-queueing events a stopped host left running")?;
        Ok(n as u64)
    }

    fn next_ready_at(&self) -> Result<Option<i64>> {
        self.conn()
            .prepare_cached(
                "SELECT MIN(at) FROM (
                     SELECT available_at AS at FROM sync_events WHERE state = 'pending'
                     UNION ALL
                     SELECT lease_until FROM sync_events WHERE state = 'running')",
            )?
            .query_row([], |row| row.get(0))
            .context("reading the queue")
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, side, record_id, origin, attempts, COALESCE(last_error, ''), received_at,
                    COALESCE(failed_at, ''),
                    COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', available_at / 1000.0, 'unixepoch'), '')
             FROM sync_events WHERE state = 'dead' ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |row| {
            Ok(DeadLetter {
                id: row.get(0)?,
                side: side_of(row, 1)?,
                record_id: row.get(2)?,
                origin: row.get(3)?,
                attempts: row.get(4)?,
                last_error: row.get(5)?,
                received_at: row.get(6)?,
                failed_at: row.get(7)?,
                // While an event runs, `available_at` holds the start of its attempt, and a
                // dead letter keeps it.
                last_attempt_at: row.get(8)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .context("listing dead letters")
    }

    fn replay_dead_letters(&self, ids: Option<&[i64]>) -> Result<u64> {
        // Durable: the operator is told how many were replayed.
        let mut conn = self.durable_conn()?;
        let tx = write_transaction(&mut conn)?;
        // Received now: an attempt of the same record already running did not see the
        // operator's request, so it must not fold the replay away (see `COVERED`).
        let reset = requeue_sql("dead", "");
        let n = match ids {
            None => tx.execute(&reset, params![now_ms(), now()])?,
            Some(ids) => {
                let mut n = 0;
                for id in ids {
                    n += tx.execute(
                        &format!("{reset} AND id = ?3"),
                        params![now_ms(), now(), id],
                    )?;
                }
                n
            }
        };
        tx.commit().context("replaying dead letters")?;
        Ok(n as u64)
    }

    /// On the reader connection, as the counts: listing must not wait behind a writer.
    fn queued_events(&self, filter: QueueFilter, limit: usize) -> Result<Vec<QueueEntry>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT id, state, side, record_id, origin, attempts, {at}, {lease}, last_error,
                    received_at
             FROM sync_events WHERE state IN ({states}) {ORDER} LIMIT ?1",
            at = ms_text("available_at"),
            lease = ms_text("lease_until"),
            states = filter.sql_states(),
        ))?;
        let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(QueueEntry {
                id: row.get(0)?,
                state: row.get(1)?,
                side: side_of(row, 2)?,
                record_id: row.get(3)?,
                origin: row.get(4)?,
                attempts: row.get(5)?,
                available_at: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
                lease_until: row.get(7)?,
                // One host on its own state: no replica to name.
                claimed_by: None,
                last_error: row.get(8)?,
                received_at: row.get(9)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .context("listing the queued events")
    }

    /// Counted on the reader connection: health and metrics must not wait behind the intake's
    /// group commit or a worker's write.
    fn queue_counts(&self) -> Result<QueueCounts> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM sync_events GROUP BY state")?;
        let mut counts = QueueCounts::default();
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })?;
        for row in rows {
            let (state, n) = row?;
            match state.as_str() {
                "pending" => counts.pending = n,
                "running" => counts.running = n,
                "dead" => counts.dead = n,
                "parked" => counts.parked = n,
                _ => {}
            }
        }
        let oldest: Option<String> = conn.query_row(
            "SELECT MIN(received_at) FROM sync_events WHERE state = 'pending'",
            [],
            |row| row.get(0),
        )?;
        counts.oldest_pending_ms = oldest.as_deref().and_then(crate::store::millis_of);
        Ok(counts)
    }

    fn complete(&self, id: i64) -> Result<()> {
        self.complete_with_audit(id, None)
    }

    fn requeue_parked(&self, step: &str, active: &str) -> Result<u64> {
        self.requeue_parked_where(Some((step, active)))
    }

    fn requeue_all_parked(&self) -> Result<u64> {
        self.requeue_parked_where(None)
    }
}

impl SqliteStore {
    /// Makes running event `id` wait until `at_ms`, giving back `refund` of its attempts, under
    /// `lock_key` if given (else its own).
    fn back_to_pending(
        &self,
        id: i64,
        error: &str,
        at_ms: i64,
        refund: u32,
        lock_key: Option<&str>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        fold_covered(&tx, id)?;
        tx.prepare_cached(
            "UPDATE sync_events SET state = 'pending', available_at = ?2, last_error = ?3,
                    lease_until = NULL, attempts = MAX(attempts - ?4, 0),
                    lock_key = COALESCE(?5, lock_key)
             WHERE id = ?1",
        )?
        .execute(params![id, at_ms, error, refund, lock_key])?;
        tx.commit()?;
        Ok(())
    }

    /// Queues parked events again: those of one step parked on a version other than the
    /// active one, or all.
    fn requeue_parked_where(&self, step: Option<(&str, &str)>) -> Result<u64> {
        let conn = self.conn();
        let n = match step {
            Some((step, active)) => conn.execute(
                &requeue_sql("parked", "AND parked_step = ?3 AND parked_version != ?4"),
                params![now_ms(), now(), step, active],
            ),
            None => conn.execute(&requeue_sql("parked", ""), params![now_ms(), now()]),
        }
        .context("queueing parked events again")?;
        Ok(n as u64)
    }
}

/// What only SQLite has: the durable connection and the reader beside the writer. The rest of
/// the queue's tests run on every backend (`store/tests/queue.rs`).
#[cfg(test)]
mod tests {
    use crate::store::sqlite::test_store;
    use crate::store::{NewEvent, QueueStore, Side};

    /// A lease no test outlives.
    const LEASE: i64 = 1 << 60;

    fn event(key: &str, id: &str) -> NewEvent {
        NewEvent {
            side: Side::PartnerCenter,
            record_id: id.into(),
            lock_key: key.into(),
            origin: "test".into(),
            payload: "{}".into(),
        }
    }

    /// Fail closed: events a webhook is about to acknowledge are refused, not stored without
    /// the flush, when the connection cannot be made durable (`synchronous = FULL`).
    #[test]
    fn events_are_refused_when_the_write_cannot_be_made_durable() {
        use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
        let (_dir, store) = test_store();
        store
            .conn()
            .authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
                AuthAction::Pragma {
                    pragma_name: "synchronous",
                    ..
                } => Authorization::Deny,
                _ => Authorization::Allow,
            }));
        let error = store
            .enqueue_batch(&[event("referral:a", "a"), event("referral:b", "b")])
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("synchronous = FULL"),
            "{error:#}"
        );
        store
            .conn()
            .authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        assert!(
            store.claim(i64::MAX / 2, LEASE).unwrap().is_none(),
            "nothing of a refused batch may be stored"
        );
        // Once durability can be set again, the same events are stored.
        store.enqueue_batch(&[event("referral:a", "a")]).unwrap();
        assert!(store.claim(i64::MAX / 2, LEASE).unwrap().is_some());
    }

    /// Health and metrics count the queue while the intake holds the store's connection (a
    /// group commit waiting for the disk, or for another process's write lock): the count
    /// must come, and must see what was committed.
    #[test]
    fn queue_counts_answer_while_the_writers_connection_is_held() {
        let (_dir, store) = test_store();
        let store = std::sync::Arc::new(store);
        store.enqueue(&event("k1", "r1")).unwrap();
        let held = store.conn();
        let (tx, rx) = std::sync::mpsc::channel();
        let counting = store.clone();
        std::thread::spawn(move || {
            let _ = tx.send(counting.queue_counts().map(|c| c.pending));
        });
        let counted = rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(held);
        assert_eq!(
            counted
                .expect("counted without waiting for the held connection")
                .unwrap(),
            1
        );
    }
}
