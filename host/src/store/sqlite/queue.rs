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
use crate::store::sync::{
    DeadLetter, Enqueued, NewEvent, ParkedEvent, QueueCounts, QueuedEvent, RECONCILE_ORIGIN,
    REPLAY_ORIGIN, Side,
};
use anyhow::{Context as _, Result};
use rusqlite::{OptionalExtension, Row, params};
use std::sync::LazyLock;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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

/// The join condition of link alias `l` for event alias `e`: by opportunity for a Dataverse
/// event, by referral for a Partner Center one.
fn link_of(e: &str, l: &str) -> String {
    format!(
        "({e}.side = 'dataverse' AND {l}.opportunity_id = {e}.record_id)
         OR ({e}.side = 'partner-center' AND {l}.referral_id = {e}.record_id)"
    )
}

/// The oldest ready event none of whose pair is running: the same lock key, the same record,
/// or (since the lock key was decided when the event was stored) the same link by now.
/// Built once: claiming is on every worker's path.
/// A running event whose lease ran out (its worker died or hangs) is ready again; until it is
/// taken back it still holds its record, so a newer event of that record waits behind it.
/// Those are looked for first, in a query of their own: one `OR` of both states would make
/// SQLite collect and sort every ready event instead of walking its index to the first one.
static CLAIM_SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
    [
        "e.state = 'running' AND e.lease_until <= ?1",
        "e.state = 'pending' AND e.available_at <= ?1",
    ]
    .map(|ready| {
        format!(
            "SELECT e.id, e.side, e.record_id, e.lock_key, e.origin, e.payload, e.attempts,
                        e.received_at
                 FROM sync_events e
                 LEFT JOIN sync_links le ON {link_e}
                 WHERE {ready}
                   AND NOT EXISTS (
                       SELECT 1 FROM sync_events r
                       LEFT JOIN sync_links lr ON {link_r}
                       WHERE r.state = 'running' AND r.id != e.id
                         AND (r.lock_key = e.lock_key
                              OR (r.side = e.side AND r.record_id = e.record_id)
                              OR lr.id = le.id))
                 ORDER BY e.available_at, e.id LIMIT 1",
            link_e = link_of("e", "le"),
            link_r = link_of("r", "lr"),
        )
    })
});

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

/// Folds the events a failed attempt of `id` stands for into it before it waits for a retry or
/// becomes a dead letter. Left in the queue, they would fail the same way: a record would use
/// several retry budgets at once and end in several dead letters. The event keeps its own
/// attempts, so its dead letter still says `gave up after <sync.max_attempts> attempts`. A
/// change received after the attempt started stays, and runs with the whole budget.
fn fold_covered(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<()> {
    tx.execute(
        &format!("DELETE FROM sync_events WHERE {COVERED}"),
        params![id, RECONCILE_ORIGIN],
    )?;
    Ok(())
}

/// Removes the parked events of the record of event `id` (other than `id`): a later attempt
/// read the record's current state, so what it ended in (synced, refused, parked again)
/// stands for them.
fn drop_parked_of(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<()> {
    tx.execute(
        "DELETE FROM sync_events
         WHERE state = 'parked' AND id != ?1
           AND side = (SELECT side FROM sync_events WHERE id = ?1)
           AND record_id = (SELECT record_id FROM sync_events WHERE id = ?1)",
        params![id],
    )?;
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
            // letter cannot fold it away, see `queue_dead_letter`).
            tx.prepare_cached(
                "UPDATE sync_events SET available_at = MIN(available_at, ?2), attempts = 0,
                        received_at = ?6,
                        payload = CASE WHEN origin = ?3 THEN ?5 ELSE payload END,
                        origin = CASE WHEN origin = ?3 THEN ?4 ELSE origin END
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                now_ms,
                RECONCILE_ORIGIN,
                event.origin,
                event.payload,
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

impl SqliteStore {
    pub(crate) fn queue_enqueue(&self, event: &NewEvent) -> Result<Enqueued> {
        let mut stored = self.queue_enqueue_batch(std::slice::from_ref(event))?;
        Ok(stored.pop().expect("one result per event"))
    }

    /// Group commit: the events in order, in one transaction, so one `fsync` (`synchronous =
    /// FULL`) stores them all. They are received when the transaction holds the database, which
    /// is after any claim that ran before it (see `COVERED`).
    pub(crate) fn queue_enqueue_batch(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>> {
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

    pub(crate) fn queue_claim(&self, now_ms: i64, lease_ms: i64) -> Result<Option<QueuedEvent>> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let mut event = None;
        for sql in CLAIM_SQL.iter() {
            event = tx
                .query_row(sql, params![now_ms], |row| {
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
            // before then, the attempt read (see `queue_dead_letter`).
            tx.execute(
                "UPDATE sync_events SET state = 'running', attempts = attempts + 1,
                        available_at = ?2, lease_until = ?3
                 WHERE id = ?1",
                params![event.id, now_ms, now_ms.saturating_add(lease_ms)],
            )?;
        }
        tx.commit().context("claiming an event from the queue")?;
        Ok(event)
    }

    pub(crate) fn queue_complete(&self, id: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        drop_parked_of(&tx, id)?;
        tx.execute("DELETE FROM sync_events WHERE id = ?1", params![id])?;
        tx.commit().context("removing a processed event")?;
        Ok(())
    }

    pub(crate) fn queue_retry_later(&self, id: i64, error: &str, at_ms: i64) -> Result<()> {
        self.back_to_pending(id, error, at_ms, 0, None)
            .context("putting a failed event back in the queue")
    }

    pub(crate) fn queue_put_back(&self, id: i64, error: &str, at_ms: i64) -> Result<()> {
        self.back_to_pending(id, error, at_ms, 1, None)
            .context("putting an event back in the queue while a service is down")
    }

    pub(crate) fn queue_retry_behind(
        &self,
        id: i64,
        lock_key: &str,
        error: &str,
        at_ms: i64,
    ) -> Result<()> {
        self.back_to_pending(id, error, at_ms, 0, Some(lock_key))
            .context("putting an event back in the queue behind its pair's run")
    }

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
        tx.execute(
            "UPDATE sync_events SET state = 'pending', available_at = ?2, last_error = ?3,
                    lease_until = NULL, attempts = MAX(attempts - ?4, 0),
                    lock_key = COALESCE(?5, lock_key)
             WHERE id = ?1",
            params![id, at_ms, error, refund, lock_key],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn queue_park(&self, id: i64, step: &str, version: &str, error: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        fold_covered(&tx, id)?;
        drop_parked_of(&tx, id)?;
        tx.execute(
            "UPDATE sync_events SET state = 'parked', last_error = ?2, failed_at = ?3,
                    parked_step = ?4, parked_version = ?5, lease_until = NULL
             WHERE id = ?1",
            params![id, error, now(), step, version],
        )?;
        tx.commit()
            .with_context(|| format!("parking an event that failed on {step} {version}"))?;
        Ok(())
    }

    /// Queues parked events again: those of one step parked on a version other than the
    /// active one, or all.
    pub(crate) fn queue_requeue_parked(&self, step: Option<(&str, &str)>) -> Result<u64> {
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

    pub(crate) fn queue_parked(&self, limit: usize) -> Result<Vec<ParkedEvent>> {
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

    pub(crate) fn queue_dead_letter(&self, id: i64, error: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        fold_covered(&tx, id)?;
        tx.execute(
            "UPDATE sync_events SET state = 'dead', last_error = ?2, failed_at = ?3 WHERE id = ?1",
            params![id, error, now()],
        )?;
        tx.commit().context("storing a dead letter")?;
        Ok(())
    }

    pub(crate) fn queue_requeue_running(&self) -> Result<u64> {
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

    pub(crate) fn queue_next_ready_at(&self) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT MIN(at) FROM (
                     SELECT available_at AS at FROM sync_events WHERE state = 'pending'
                     UNION ALL
                     SELECT lease_until FROM sync_events WHERE state = 'running')",
                [],
                |row| row.get(0),
            )
            .context("reading the queue")
    }

    pub(crate) fn queue_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
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

    pub(crate) fn queue_replay(&self, ids: Option<&[i64]>) -> Result<u64> {
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

    /// Counted on the reader connection: health and metrics must not wait behind the intake's
    /// group commit or a worker's write.
    pub(crate) fn queue_counts(&self) -> Result<QueueCounts> {
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
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::{SqliteStore, test_store};
    use crate::store::{Enqueued, NewEvent, RECONCILE_ORIGIN, REPLAY_ORIGIN, Side, SyncStore};

    /// A lease no test outlives, unless it means to.
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

    #[test]
    fn one_record_runs_one_event_at_a_time_and_others_run_meanwhile() {
        let (_dir, store) = test_store();
        let first = store.enqueue(&event("referral:a", "a")).unwrap();
        assert!(matches!(first, Enqueued::New(_)));
        // Waiting events for the same record coalesce.
        assert_eq!(
            store.enqueue(&event("referral:a", "a")).unwrap(),
            Enqueued::Coalesced(first.id())
        );
        store.enqueue(&event("referral:b", "b")).unwrap();
        let now = i64::MAX / 2;
        let a = store.claim(now, LEASE).unwrap().unwrap();
        assert_eq!(a.record_id, "a");
        // While a runs, a new change to a is stored, but not handed out.
        store.enqueue(&event("referral:a", "a")).unwrap();
        let b = store.claim(now, LEASE).unwrap().unwrap();
        assert_eq!(b.record_id, "b");
        assert!(store.claim(now, LEASE).unwrap().is_none());
        store.complete(a.id).unwrap();
        let again = store.claim(now, LEASE).unwrap().unwrap();
        assert_eq!((again.record_id.as_str(), again.attempts), ("a", 1));
    }

    #[test]
    fn an_event_retried_behind_a_lock_key_waits_while_an_event_of_that_key_runs() {
        let (_dir, store) = test_store();
        // A referral's run is creating an opportunity; the opportunity's own event runs
        // meanwhile (its key was decided without a link), finds no link, and waits behind it.
        store.enqueue(&event("referral:r1", "r1")).unwrap();
        let now = i64::MAX / 2;
        let creating = store.claim(now, LEASE).unwrap().unwrap();
        let mut crm = event("opportunity:o1", "o1");
        crm.side = Side::Dataverse;
        store.enqueue(&crm).unwrap();
        let early = store.claim(now, LEASE).unwrap().unwrap();
        assert_eq!(early.record_id, "o1", "no link yet: nothing holds it back");
        store
            .retry_behind(early.id, "referral:r1", "not linked yet", 0)
            .unwrap();
        assert!(
            store.claim(now, LEASE).unwrap().is_none(),
            "it waits for the referral's run"
        );
        store.complete(creating.id).unwrap();
        let again = store.claim(now, LEASE).unwrap().unwrap();
        assert_eq!(
            (
                again.record_id.as_str(),
                again.lock_key.as_str(),
                again.attempts
            ),
            ("o1", "referral:r1", 2),
            "then it runs, its attempt spent"
        );
    }

    #[test]
    fn a_pair_linked_after_its_events_were_stored_still_runs_one_at_a_time() {
        let (_dir, store) = test_store();
        // The opportunity's event was stored before it had a referral...
        let mut crm = event("opportunity:o1", "o1");
        crm.side = Side::Dataverse;
        store.enqueue(&crm).unwrap();
        let running = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
        // ...which its run creates and links, while Partner Center's event for it arrives.
        store
            .save_link(&crate::store::Link {
                referral_id: Some("r1".into()),
                opportunity_id: Some("o1".into()),
                ..Default::default()
            })
            .unwrap();
        store.enqueue(&event("referral:r1", "r1")).unwrap();
        assert!(
            store.claim(i64::MAX / 2, LEASE).unwrap().is_none(),
            "the pair is busy"
        );
        store.complete(running.id).unwrap();
        assert_eq!(
            store.claim(i64::MAX / 2, LEASE).unwrap().unwrap().record_id,
            "r1"
        );
    }

    #[test]
    fn failures_wait_then_die_and_replay_brings_them_back() {
        let (_dir, store) = test_store();
        let id = store.enqueue(&event("referral:a", "a")).unwrap().id();
        let e = store.claim(1_000_000_000_000_000, LEASE).unwrap().unwrap();
        store
            .retry_later(e.id, "503", 2_000_000_000_000_000)
            .unwrap();
        assert!(store.claim(1_000_000_000_000_000, LEASE).unwrap().is_none());
        let e = store.claim(3_000_000_000_000_000, LEASE).unwrap().unwrap();
        assert_eq!(e.attempts, 2);
        store.dead_letter(e.id, "still 503").unwrap();
        let dead = store.dead_letters(10).unwrap();
        assert_eq!((dead[0].id, dead[0].last_error.as_str()), (id, "still 503"));
        assert_eq!(store.queue_counts().unwrap().dead, 1);
        assert_eq!(store.replay_dead_letters(None).unwrap(), 1);
        let e = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
        assert_eq!(e.attempts, 1);
    }

    #[test]
    fn a_re_listed_record_keeps_its_backoff_and_attempts_but_a_change_resets_them() {
        let (_dir, store) = test_store();
        store.enqueue(&event("referral:a", "a")).unwrap();
        let now = super::now_ms();
        let e = store.claim(now, LEASE).unwrap().unwrap();
        store.retry_later(e.id, "trapped", now + 60_000).unwrap();
        // The reconciliation lists it again: no evidence of a change.
        let relisted = NewEvent {
            origin: crate::store::RECONCILE_ORIGIN.into(),
            ..event("referral:a", "a")
        };
        assert_eq!(store.enqueue(&relisted).unwrap(), Enqueued::Coalesced(e.id));
        assert!(
            store.claim(now + 59_999, LEASE).unwrap().is_none(),
            "still backing off"
        );
        let e = store.claim(now + 60_000, LEASE).unwrap().unwrap();
        assert_eq!(e.attempts, 2, "the attempts still count");
        store.retry_later(e.id, "trapped", i64::MAX / 2).unwrap();
        // A webhook says it changed: it runs now, with the whole budget.
        store.enqueue(&event("referral:a", "a")).unwrap();
        let e = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        assert_eq!(e.attempts, 1);
    }

    #[test]
    fn a_dead_letter_stands_for_what_its_last_attempt_read_but_not_for_later_changes() {
        let (_dir, store) = test_store();
        let tick = || std::thread::sleep(std::time::Duration::from_millis(3));
        let relisted = || NewEvent {
            origin: crate::store::RECONCILE_ORIGIN.into(),
            ..event("referral:a", "a")
        };
        let failing = store.enqueue(&event("referral:a", "a")).unwrap().id();
        let e = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        tick();
        // A notification while the first attempt runs waits behind it...
        let before = store.enqueue(&event("referral:a", "a")).unwrap();
        assert!(matches!(before, Enqueued::New(_)));
        store.retry_later(e.id, "trapped", 0).unwrap();
        tick();
        // ...and the last attempt, which started after it arrived, read what it announced.
        let e = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        assert_eq!(e.id, failing);
        tick();
        // A re-listing during the last attempt announces no change.
        store.enqueue(&relisted()).unwrap();
        let attempt_started = chrono::Utc::now() - chrono::Duration::milliseconds(3);
        tick();
        store.dead_letter(e.id, "trapped").unwrap();
        let letter = &store.dead_letters(10).unwrap()[0];
        assert_eq!(letter.id, failing);
        // The letter says when the attempt it stands for started: before it failed.
        let last_attempt = chrono::DateTime::parse_from_rfc3339(&letter.last_attempt_at).unwrap();
        let failed = chrono::DateTime::parse_from_rfc3339(&letter.failed_at).unwrap();
        assert!(
            last_attempt <= attempt_started && last_attempt < failed,
            "{letter:?}"
        );
        let counts = store.queue_counts().unwrap();
        assert_eq!((counts.pending, counts.dead), (0, 1), "{counts:?}");

        // A change that arrives during the last attempt is kept, even if it joined a
        // re-listing, and runs with the whole budget.
        store.replay_dead_letters(None).unwrap();
        let e = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        tick();
        store.enqueue(&relisted()).unwrap();
        store.enqueue(&event("referral:a", "a")).unwrap();
        store.dead_letter(e.id, "trapped again").unwrap();
        let counts = store.queue_counts().unwrap();
        assert_eq!((counts.pending, counts.dead), (1, 1), "{counts:?}");
        let next = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        assert_eq!((next.origin.as_str(), next.attempts), ("test", 1));
    }

    /// A queue entry without its times: id, side, record, key, origin, payload, state, attempts.
    type Row = (i64, String, String, String, String, String, String, u32);

    /// Every queue entry, oldest first.
    fn rows(store: &SqliteStore) -> Vec<Row> {
        let conn = store.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, side, record_id, lock_key, origin, payload, state, attempts
                 FROM sync_events ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// A queue with `a` running and a failed `w` waiting for its retry.
    fn busy_store() -> (tempfile::TempDir, SqliteStore) {
        let (dir, store) = test_store();
        store.enqueue(&event("referral:a", "a")).unwrap();
        store.enqueue(&event("referral:w", "w")).unwrap();
        let a = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
        let w = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
        assert_eq!((a.record_id.as_str(), w.record_id.as_str()), ("a", "w"));
        store.retry_later(w.id, "503", i64::MAX / 2).unwrap();
        (dir, store)
    }

    /// Events that coalesce with each other and with what waits, in every way `enqueue` knows.
    fn mixed_events() -> Vec<NewEvent> {
        let relisted = |key: &str, id: &str| NewEvent {
            origin: RECONCILE_ORIGIN.into(),
            payload: "{}".into(),
            ..event(key, id)
        };
        let webhook = |key: &str, id: &str, n: u32| NewEvent {
            origin: "partner-center-webhook".into(),
            payload: format!("{{\"n\":{n}}}"),
            ..event(key, id)
        };
        let mut crm = webhook("opportunity:o1", "o1", 9);
        crm.side = Side::Dataverse;
        vec![
            webhook("referral:a", "a", 1), // a runs: a new entry waits behind it
            webhook("referral:a", "a", 2), // joins that entry
            relisted("referral:b", "b"),   // new
            webhook("referral:b", "b", 3), // turns the re-listing into a change
            relisted("referral:b", "b"),   // changes nothing
            webhook("referral:w", "w", 4), // the failed one runs now, with its whole budget
            crm,
            webhook("referral:b", "b", 5), // joins, keeps the change's payload
        ]
    }

    #[test]
    fn a_batch_stores_each_event_as_enqueue_would_in_order() {
        let (_one, one_by_one) = busy_store();
        let (_all, batched) = busy_store();
        let events = mixed_events();
        let singles: Vec<Enqueued> = events
            .iter()
            .map(|e| one_by_one.enqueue(e).unwrap())
            .collect();
        let batch = batched.enqueue_batch(&events).unwrap();
        assert_eq!(batch, singles);
        assert!(matches!(batch[0], Enqueued::New(_)), "{batch:?}");
        assert_eq!(batch[1], Enqueued::Coalesced(batch[0].id()));
        assert_eq!(batch[7], Enqueued::Coalesced(batch[2].id()));
        assert_eq!(rows(&batched), rows(&one_by_one));
        // The failed event no longer waits out its backoff.
        let ready: Vec<String> =
            std::iter::from_fn(|| batched.claim(super::now_ms(), LEASE).unwrap())
                .map(|e| e.record_id)
                .collect();
        assert_eq!(
            ready,
            ["w", "b", "o1"],
            "a still runs, so its new entry waits"
        );
        assert!(batched.enqueue_batch(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_batch_that_fails_midway_leaves_the_queue_as_it_was() {
        let (_dir, store) = busy_store();
        store
            .enqueue(&NewEvent {
                origin: RECONCILE_ORIGIN.into(),
                ..event("referral:b", "b")
            })
            .unwrap();
        let before = rows(&store);
        store
            .conn()
            .execute_batch(
                "CREATE TRIGGER poison BEFORE INSERT ON sync_events WHEN NEW.record_id = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let mut events = mixed_events();
        events.insert(6, event("referral:poison", "poison"));
        let err = store.enqueue_batch(&events).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("partner-center poison") && text.contains("injected failure"),
            "{text}"
        );
        // Neither the new entries nor the changes to waiting ones before the failure.
        assert_eq!(rows(&store), before);
        store.conn().execute_batch("DROP TRIGGER poison").unwrap();
        assert_eq!(store.enqueue_batch(&events).unwrap().len(), events.len());
    }

    #[test]
    fn an_event_whose_lease_ran_out_is_taken_by_another_worker() {
        let (_dir, store) = test_store();
        store.enqueue(&event("referral:a", "a")).unwrap();
        let t0 = super::now_ms() + 10;
        let lease = 30_000;
        // A worker claims it and dies: the event stays running, holding its record.
        let first = store.claim(t0, lease).unwrap().unwrap();
        assert_eq!(store.next_ready_at().unwrap(), Some(t0 + lease));
        store.enqueue(&event("referral:a", "a")).unwrap();
        assert!(store.claim(t0 + lease - 1, lease).unwrap().is_none());
        // Its lease ends: another worker takes it (the lost run counted), before the newer
        // event of the same record, which still waits behind it.
        let again = store.claim(t0 + lease, lease).unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (first.id, 2));
        assert!(store.claim(t0 + lease, lease).unwrap().is_none());
        store.complete(again.id).unwrap();
        let newer = store.claim(t0 + lease, lease).unwrap().unwrap();
        assert_ne!(newer.id, first.id);
    }

    #[test]
    fn a_parked_event_waits_for_another_version_of_its_step() {
        let (_dir, store) = test_store();
        store.enqueue(&event("referral:a", "a")).unwrap();
        let e = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        store.park(e.id, "step", "v1", "out of fuel").unwrap();
        let counts = store.queue_counts().unwrap();
        assert_eq!((counts.pending, counts.running, counts.parked), (0, 0, 1));
        assert!(store.claim(i64::MAX / 2, LEASE).unwrap().is_none());
        let parked = store.parked(10).unwrap();
        assert_eq!(
            (parked[0].step.as_str(), parked[0].version.as_str()),
            ("step", "v1")
        );
        assert_eq!(parked[0].reason, "out of fuel");
        // The same version again, or another step, leaves it parked.
        assert_eq!(store.requeue_parked("step", "v1").unwrap(), 0);
        assert_eq!(store.requeue_parked("other", "v2").unwrap(), 0);
        // A change of the record runs, and parking it again folds the older one away.
        store.enqueue(&event("referral:a", "a")).unwrap();
        let change = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        store
            .park(change.id, "step", "v1", "out of fuel again")
            .unwrap();
        assert_eq!(store.queue_counts().unwrap().parked, 1);
        // A new version of the step queues it again, with the whole budget, run in full.
        assert_eq!(store.requeue_parked("step", "v2").unwrap(), 1);
        let rerun = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        assert_eq!((rerun.attempts, rerun.origin.as_str()), (1, REPLAY_ORIGIN));
        store.park(rerun.id, "step", "v2", "still").unwrap();
        // A run that completes settles the parked events of its record.
        store.enqueue(&event("referral:a", "a")).unwrap();
        let fixed = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        store.complete(fixed.id).unwrap();
        assert_eq!(store.queue_counts().unwrap(), Default::default());
        // At start-up every parked event runs once more (the limits may have changed).
        store.enqueue(&event("referral:b", "b")).unwrap();
        let b = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        store.park(b.id, "step", "v2", "trap").unwrap();
        assert_eq!(store.requeue_all_parked().unwrap(), 1);
    }

    #[test]
    fn an_event_put_back_during_an_outage_keeps_its_attempts() {
        let (_dir, store) = test_store();
        store.enqueue(&event("referral:a", "a")).unwrap();
        let e = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        store.retry_later(e.id, "503", 0).unwrap();
        let e = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        assert_eq!(e.attempts, 2);
        store.put_back(e.id, "Dataverse is down", 0).unwrap();
        let e = store.claim(super::now_ms(), LEASE).unwrap().unwrap();
        assert_eq!(
            e.attempts, 2,
            "the attempt during the outage was given back"
        );
    }

    #[test]
    fn events_left_running_by_a_crash_are_queued_again() {
        let (_dir, store) = test_store();
        store.enqueue(&event("referral:a", "a")).unwrap();
        store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
        assert_eq!(store.requeue_running().unwrap(), 1);
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
