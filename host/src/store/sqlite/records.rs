//! Links, cursors, rotated credentials and the audit trail on SQLite, and the [`SyncStore`]
//! implementation that puts them together with the queue.

use super::{SqliteStore, now, write_transaction};
use crate::store::audit_query::{self, AuditPage, AuditQuery};
use crate::store::sync_store::{
    AuditEntry, DeadLetter, Enqueued, Link, NewEvent, QueueCounts, QueuedEvent, SyncStore,
};
use anyhow::{Context as _, Result};
use rusqlite::{OptionalExtension, params};

/// The link of a referral, then of an opportunity (the columns [`link_from`] reads).
const LINK_BY_REFERRAL: &str = "SELECT id, referral_id, opportunity_id, pc_hash, pc_snapshot, \
                                crm_hash, crm_snapshot, last_error, pending_write FROM sync_links \
                                WHERE referral_id = ?1";
const LINK_BY_OPPORTUNITY: &str = "SELECT id, referral_id, opportunity_id, pc_hash, pc_snapshot, \
                                   crm_hash, crm_snapshot, last_error, pending_write FROM sync_links \
                                   WHERE opportunity_id = ?1";

fn link_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        id: row.get(0)?,
        referral_id: row.get(1)?,
        opportunity_id: row.get(2)?,
        pc_hash: row.get(3)?,
        pc_snapshot: row.get(4)?,
        crm_hash: row.get(5)?,
        crm_snapshot: row.get(6)?,
        last_error: row.get(7)?,
        pending_write: row.get(8)?,
    })
}

impl SqliteStore {
    /// The link whose `column` is `value`; `sql` is the query of that column (one text per
    /// column, so the statement cache keeps it prepared).
    fn link_where(&self, column: &str, sql: &str, value: &str) -> Result<Option<Link>> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row(params![value], link_from).optional())
            .with_context(|| format!("reading the link of {column} {value}"))
    }
}

/// Saves `link` inside `tx`; answers its id.
fn save_link_in(tx: &rusqlite::Transaction<'_>, link: &Link) -> Result<i64> {
    // Two runs may each have started a link for the same pair (one from each side): the
    // saved one absorbs any other row naming either record, so the pair has one link.
    let target: Option<i64> = match link.id {
        Some(id) => Some(id),
        None => tx
            .prepare_cached(
                "SELECT id FROM sync_links WHERE referral_id = ?1 OR opportunity_id = ?2
                 ORDER BY id LIMIT 1",
            )?
            .query_row(params![link.referral_id, link.opportunity_id], |row| {
                row.get(0)
            })
            .optional()?,
    };
    tx.prepare_cached(
        "DELETE FROM sync_links WHERE (referral_id = ?1 OR opportunity_id = ?2) AND id != ?3",
    )?
    .execute(params![
        link.referral_id,
        link.opportunity_id,
        target.unwrap_or(-1)
    ])?;
    let values = params![
        link.referral_id,
        link.opportunity_id,
        link.pc_hash,
        link.pc_snapshot,
        link.crm_hash,
        link.crm_snapshot,
        link.last_error,
        now(),
        target,
        link.pending_write
    ];
    let id = match target {
        Some(id) => {
            tx.prepare_cached(
                "UPDATE sync_links SET referral_id = ?1, opportunity_id = ?2, pc_hash = ?3,
                 pc_snapshot = ?4, crm_hash = ?5, crm_snapshot = ?6, last_error = ?7,
                 updated_at = ?8, pending_write = ?10 WHERE id = ?9",
            )?
            .execute(values)?;
            id
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO sync_links (referral_id, opportunity_id, pc_hash, pc_snapshot,
                 crm_hash, crm_snapshot, last_error, updated_at, id, pending_write)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(values)?;
            tx.last_insert_rowid()
        }
    };
    Ok(id)
}

/// Adds `entry` to the audit trail on `conn` (or inside a transaction on it).
pub(super) fn audit_in(conn: &rusqlite::Connection, entry: &AuditEntry) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_trail (at, record, direction, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            entry.at,
            entry.record,
            entry.direction,
            entry.outcome,
            entry.detail
        ])
    })
    .context("writing the audit trail")?;
    Ok(())
}

impl SyncStore for SqliteStore {
    fn enqueue(&self, event: &NewEvent) -> Result<Enqueued> {
        self.queue_enqueue(event)
    }
    fn enqueue_batch(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>> {
        self.queue_enqueue_batch(events)
    }
    fn claim(&self, now_ms: i64, lease_ms: i64) -> Result<Option<QueuedEvent>> {
        self.queue_claim(now_ms, lease_ms)
    }
    fn complete(&self, id: i64) -> Result<()> {
        self.queue_complete(id, None)
    }
    fn complete_with_audit(&self, id: i64, audit: Option<&AuditEntry>) -> Result<()> {
        self.queue_complete(id, audit)
    }
    fn retry_later(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()> {
        self.queue_retry_later(id, error, available_at_ms)
    }
    fn dead_letter(&self, id: i64, error: &str) -> Result<()> {
        self.queue_dead_letter(id, error)
    }
    fn requeue_running(&self) -> Result<u64> {
        self.queue_requeue_running()
    }
    fn next_ready_at(&self) -> Result<Option<i64>> {
        self.queue_next_ready_at()
    }
    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.queue_dead_letters(limit)
    }
    fn replay_dead_letters(&self, ids: Option<&[i64]>) -> Result<u64> {
        self.queue_replay(ids)
    }
    fn queue_counts(&self) -> Result<QueueCounts> {
        SqliteStore::queue_counts(self)
    }
    fn queued_events(
        &self,
        filter: crate::store::QueueFilter,
        limit: usize,
    ) -> Result<Vec<crate::store::QueueEntry>> {
        self.queue_list(filter, limit)
    }
    fn put_back(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()> {
        self.queue_put_back(id, error, available_at_ms)
    }
    fn retry_behind(
        &self,
        id: i64,
        lock_key: &str,
        error: &str,
        available_at_ms: i64,
    ) -> Result<()> {
        self.queue_retry_behind(id, lock_key, error, available_at_ms)
    }
    fn park(&self, id: i64, step: &str, version: &str, error: &str) -> Result<()> {
        self.queue_park(id, step, version, error)
    }
    fn requeue_parked(&self, step: &str, active: &str) -> Result<u64> {
        self.queue_requeue_parked(Some((step, active)))
    }
    fn requeue_all_parked(&self) -> Result<u64> {
        self.queue_requeue_parked(None)
    }
    fn parked(&self, limit: usize) -> Result<Vec<crate::store::ParkedEvent>> {
        self.queue_parked(limit)
    }

    fn link_by_referral(&self, referral_id: &str) -> Result<Option<Link>> {
        self.link_where("referral_id", LINK_BY_REFERRAL, referral_id)
    }

    fn link_by_opportunity(&self, opportunity_id: &str) -> Result<Option<Link>> {
        self.link_where("opportunity_id", LINK_BY_OPPORTUNITY, opportunity_id)
    }

    fn save_link(&self, link: &Link) -> Result<i64> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let id = save_link_in(&tx, link)?;
        tx.commit().context("saving a link")?;
        Ok(id)
    }

    fn save_unlinked(&self, links: &[Link]) -> Result<Vec<Option<String>>> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let mut linked = Vec::with_capacity(links.len());
        for link in links {
            let existing: Option<String> = match &link.referral_id {
                Some(referral) => tx
                    .prepare_cached("SELECT opportunity_id FROM sync_links WHERE referral_id = ?1")?
                    .query_row(params![referral], |row| row.get(0))
                    .optional()?
                    .flatten(),
                None => None,
            };
            if existing.is_none() {
                save_link_in(&tx, link)?;
            }
            linked.push(existing);
        }
        tx.commit()
            .with_context(|| format!("saving {} links", links.len()))?;
        Ok(linked)
    }

    fn cursor(&self, name: &str) -> Result<Option<String>> {
        self.conn()
            .prepare_cached("SELECT value FROM sync_cursors WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row(params![name], |row| row.get(0)).optional())
            .with_context(|| format!("reading cursor {name}"))
    }

    fn set_cursor(&self, name: &str, value: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO sync_cursors (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute(params![name, value]))
            .with_context(|| format!("saving cursor {name}"))?;
        Ok(())
    }

    fn credential(&self, name: &str) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT value FROM credentials WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()
            .with_context(|| format!("reading credential {name}"))
    }

    fn referral_intent(&self, opportunity_id: &str) -> Result<Option<i64>> {
        self.intent(opportunity_id)
    }

    fn begin_referral_intent(&self, opportunity_id: &str, now_ms: i64) -> Result<i64> {
        self.begin_intent(opportunity_id, now_ms)
    }

    fn end_referral_intent(&self, opportunity_id: &str) -> Result<()> {
        self.end_intent(opportunity_id)
    }

    fn set_credential(&self, name: &str, value: &str) -> Result<()> {
        // Durable: a rotated refresh token is single-use; losing it would lock cosell out.
        self.durable_conn()?
            .execute(
                "INSERT INTO credentials (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                 updated_at = excluded.updated_at",
                params![name, value, now()],
            )
            .with_context(|| format!("saving credential {name}"))?;
        Ok(())
    }

    fn audit(&self, entry: &AuditEntry) -> Result<()> {
        audit_in(&self.conn(), entry)
    }

    fn audit_search(&self, query: &AuditQuery) -> Result<AuditPage> {
        let (sql, params) = audit_query::search_sql(query, |n| format!("?{n}"));
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(&params), |row| {
            Ok((
                row.get(0)?,
                AuditEntry {
                    at: row.get(1)?,
                    record: row.get(2)?,
                    direction: row.get(3)?,
                    outcome: row.get(4)?,
                    detail: row.get(5)?,
                },
            ))
        })?;
        let rows = rows
            .collect::<Result<_, _>>()
            .context("reading the audit trail")?;
        Ok(audit_query::page_of(rows, query.limit))
    }

    fn save_last_run(&self, run: &crate::store::LastRun) -> Result<()> {
        self.save_last_run_impl(run)
    }

    fn last_runs(&self, record: &str) -> Result<Vec<crate::store::LastRun>> {
        self.last_runs_impl(record)
    }

    fn prune_last_runs(&self, before: &str) -> Result<u64> {
        self.prune_last_runs_impl(before)
    }

    fn prune_audit(&self, before: &str, keep: usize) -> Result<u64> {
        // In batches, each its own short transaction, so that webhook intake and the workers,
        // which write to the same database, never wait behind one long delete.
        const BATCH: i64 = 5_000;
        let mut deleted = 0;
        // Bounded: enough batches for 50 million entries; the next run deletes the rest.
        for _ in 0..10_000 {
            let mut conn = self.conn();
            let tx = write_transaction(&mut conn)?;
            let newest_dropped: Option<i64> = tx
                .query_row(
                    "SELECT id FROM audit_trail ORDER BY id DESC LIMIT 1 OFFSET ?1",
                    params![i64::try_from(keep).unwrap_or(i64::MAX)],
                    |row| row.get(0),
                )
                .optional()?;
            let batch = tx
                .execute(
                    "DELETE FROM audit_trail WHERE id IN (
                         SELECT id FROM audit_trail WHERE at < ?1 OR id <= ?2
                         ORDER BY id LIMIT ?3)",
                    params![before, newest_dropped.unwrap_or(0), BATCH],
                )
                .context("pruning the audit trail")?;
            tx.commit().context("pruning the audit trail")?;
            deleted += batch as u64;
            if (batch as i64) < BATCH {
                break;
            }
        }
        Ok(deleted)
    }

    fn customer_locks(&self) -> std::sync::Arc<dyn crate::store::CustomerLocks> {
        SqliteStore::customer_locks(self)
    }
}
