//! Links, cursors, credentials, referral intents and the audit trail on PostgreSQL, and the
//! [`SyncStore`] implementation that puts them together with the queue.

use super::{LINKS_LOCK, PgStore};
use crate::store::audit_query::{self, AuditPage, AuditQuery};
use crate::store::now;
use crate::store::sync_store::{
    AuditEntry, DeadLetter, Enqueued, Link, NewEvent, ParkedEvent, QueueCounts, QueuedEvent,
    SyncStore,
};
use anyhow::{Context as _, Result};
use tokio_postgres::{Row, Transaction};

/// Adds a line to the audit trail ($1 to $5: at, record, direction, outcome, detail).
pub(super) const AUDIT_INSERT: &str =
    "INSERT INTO audit_trail (at, record, direction, outcome, detail) VALUES ($1, $2, $3, $4, $5)";

const LINK_COLUMNS: &str = "id, referral_id, opportunity_id, pc_hash, pc_snapshot, crm_hash, \
                            crm_snapshot, last_error, pending_write";

fn link_from(row: &Row) -> Link {
    Link {
        id: row.get(0),
        referral_id: row.get(1),
        opportunity_id: row.get(2),
        pc_hash: row.get(3),
        pc_snapshot: row.get(4),
        crm_hash: row.get(5),
        crm_snapshot: row.get(6),
        last_error: row.get(7),
        pending_write: row.get(8),
    }
}

/// Saves `link` inside `tx` (which holds [`LINKS_LOCK`]); answers its id. As on SQLite, the
/// saved row absorbs any other row naming either record.
async fn save_link_in(tx: &Transaction<'_>, link: &Link) -> Result<i64> {
    let target: Option<i64> = match link.id {
        Some(id) => Some(id),
        None => tx
            .query_opt(
                "SELECT id FROM sync_links WHERE referral_id = $1 OR opportunity_id = $2
                 ORDER BY id LIMIT 1",
                &[&link.referral_id, &link.opportunity_id],
            )
            .await?
            .map(|row| row.get(0)),
    };
    tx.execute(
        "DELETE FROM sync_links WHERE (referral_id = $1 OR opportunity_id = $2) AND id != $3",
        &[
            &link.referral_id,
            &link.opportunity_id,
            &target.unwrap_or(-1),
        ],
    )
    .await?;
    let at = now();
    let values: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        &link.referral_id,
        &link.opportunity_id,
        &link.pc_hash,
        &link.pc_snapshot,
        &link.crm_hash,
        &link.crm_snapshot,
        &link.last_error,
        &at,
        &link.pending_write,
    ];
    Ok(match target {
        Some(id) => {
            let mut params = values.to_vec();
            params.push(&id);
            tx.execute(
                "UPDATE sync_links SET referral_id = $1, opportunity_id = $2, pc_hash = $3,
                 pc_snapshot = $4, crm_hash = $5, crm_snapshot = $6, last_error = $7,
                 updated_at = $8, pending_write = $9 WHERE id = $10",
                &params,
            )
            .await?;
            id
        }
        None => tx
            .query_one(
                "INSERT INTO sync_links (referral_id, opportunity_id, pc_hash, pc_snapshot,
                 crm_hash, crm_snapshot, last_error, updated_at, pending_write)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                &values,
            )
            .await?
            .get(0),
    })
}

impl PgStore {
    fn link_where(&self, column: &'static str, value: &str) -> Result<Option<Link>> {
        let v = value.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        &format!("SELECT {LINK_COLUMNS} FROM sync_links WHERE {column} = $1"),
                        &[&v],
                    )
                    .await?;
                Ok(row.as_ref().map(link_from))
            })
        })
        .with_context(|| format!("reading the link of {column} {value}"))
    }

    /// Reads one text column of the row `key` of a `name`/`value` table.
    fn value_of(&self, table: &'static str, key: &str) -> Result<Option<String>> {
        let k = key.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                Ok(
                    c.query_opt(&format!("SELECT value FROM {table} WHERE name = $1"), &[&k])
                        .await?
                        .map(|row| row.get(0)),
                )
            })
        })
    }
}

impl SyncStore for PgStore {
    fn enqueue(&self, event: &NewEvent) -> Result<Enqueued> {
        let mut stored = self.queue_enqueue_batch(std::slice::from_ref(event))?;
        Ok(stored.pop().expect("one result per event"))
    }
    fn enqueue_batch(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>> {
        self.queue_enqueue_batch(events)
    }
    fn claim(&self, now_ms: i64, lease_ms: i64) -> Result<Option<QueuedEvent>> {
        self.queue_claim(now_ms, lease_ms)
    }
    fn claim_as(&self, replica_id: &str) -> Result<()> {
        self.join_as(replica_id)
            .with_context(|| format!("proving replica `{replica_id}` alive to the others"))
    }
    fn complete(&self, id: i64) -> Result<()> {
        self.queue_complete(id, None)
    }
    fn complete_with_audit(&self, id: i64, audit: Option<&AuditEntry>) -> Result<()> {
        self.queue_complete(id, audit)
    }
    fn retry_later(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()> {
        self.queue_back_to_pending(id, error, available_at_ms, 0, None)
            .context("putting a failed event back in the queue")
    }
    fn retry_behind(
        &self,
        id: i64,
        lock_key: &str,
        error: &str,
        available_at_ms: i64,
    ) -> Result<()> {
        self.queue_back_to_pending(id, error, available_at_ms, 0, Some(lock_key))
            .context("putting an event back in the queue behind its pair's run")
    }
    fn put_back(&self, id: i64, error: &str, available_at_ms: i64) -> Result<()> {
        self.queue_back_to_pending(id, error, available_at_ms, 1, None)
            .context("putting an event back in the queue while a service is down")
    }
    fn dead_letter(&self, id: i64, error: &str) -> Result<()> {
        self.queue_dead_letter(id, error)
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
    fn parked(&self, limit: usize) -> Result<Vec<ParkedEvent>> {
        self.queue_parked(limit)
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
        PgStore::queue_counts(self)
    }
    fn queued_events(
        &self,
        filter: crate::store::QueueFilter,
        limit: usize,
    ) -> Result<Vec<crate::store::QueueEntry>> {
        self.queue_list(filter, limit)
    }

    fn link_by_referral(&self, referral_id: &str) -> Result<Option<Link>> {
        self.link_where("referral_id", referral_id)
    }

    fn link_by_opportunity(&self, opportunity_id: &str) -> Result<Option<Link>> {
        self.link_where("opportunity_id", opportunity_id)
    }

    fn save_link(&self, link: &Link) -> Result<i64> {
        let link = link.clone();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LINKS_LOCK])
                    .await?;
                let id = save_link_in(&tx, &link).await?;
                tx.commit().await?;
                Ok(id)
            })
        })
        .context("saving a link")
    }

    fn save_unlinked(&self, links: &[Link]) -> Result<Vec<Option<String>>> {
        let links = links.to_vec();
        let count = links.len();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LINKS_LOCK])
                    .await?;
                let mut linked = Vec::with_capacity(links.len());
                for link in &links {
                    let existing: Option<String> = match &link.referral_id {
                        Some(referral) => tx
                            .query_opt(
                                "SELECT opportunity_id FROM sync_links WHERE referral_id = $1",
                                &[referral],
                            )
                            .await?
                            .and_then(|row| row.get(0)),
                        None => None,
                    };
                    if existing.is_none() {
                        save_link_in(&tx, link).await?;
                    }
                    linked.push(existing);
                }
                tx.commit().await?;
                Ok(linked)
            })
        })
        .with_context(|| format!("saving {count} links"))
    }

    fn cursor(&self, name: &str) -> Result<Option<String>> {
        self.value_of("sync_cursors", name)
            .with_context(|| format!("reading cursor {name}"))
    }

    fn set_cursor(&self, name: &str, value: &str) -> Result<()> {
        let (n, v) = (name.to_owned(), value.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO sync_cursors (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[&n, &v],
                )
                .await?;
                Ok(())
            })
        })
        .with_context(|| format!("saving cursor {name}"))
    }

    fn credential(&self, name: &str) -> Result<Option<String>> {
        self.value_of("credentials", name)
            .with_context(|| format!("reading credential {name}"))
    }

    fn set_credential(&self, name: &str, value: &str) -> Result<()> {
        let (n, v) = (name.to_owned(), value.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                // Under the row's lock: a replica rotating the same credential waits for this
                // commit, then writes over a value it can see.
                let held = tx
                    .query_opt(
                        "SELECT 1 FROM credentials WHERE name = $1 FOR UPDATE",
                        &[&n],
                    )
                    .await?
                    .is_some();
                let sql = if held {
                    "UPDATE credentials SET value = $2, updated_at = $3 WHERE name = $1"
                } else {
                    "INSERT INTO credentials (name, value, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at"
                };
                tx.execute(sql, &[&n, &v, &now()]).await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .with_context(|| format!("saving credential {name}"))
    }

    fn referral_intent(&self, opportunity_id: &str) -> Result<Option<i64>> {
        let o = opportunity_id.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                Ok(c.query_opt(
                    "SELECT started_at_ms FROM referral_intents WHERE opportunity_id = $1",
                    &[&o],
                )
                .await?
                .map(|row| row.get(0)))
            })
        })
        .with_context(|| format!("reading the referral intent of {opportunity_id}"))
    }

    fn begin_referral_intent(&self, opportunity_id: &str, now_ms: i64) -> Result<i64> {
        let o = opportunity_id.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO referral_intents (opportunity_id, started_at_ms) VALUES ($1, $2)
                     ON CONFLICT (opportunity_id) DO NOTHING",
                    &[&o, &now_ms],
                )
                .await?;
                Ok(c.query_one(
                    "SELECT started_at_ms FROM referral_intents WHERE opportunity_id = $1",
                    &[&o],
                )
                .await?
                .get(0))
            })
        })
        .with_context(|| format!("saving the referral intent of {opportunity_id}"))
    }

    fn end_referral_intent(&self, opportunity_id: &str) -> Result<()> {
        let o = opportunity_id.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                c.execute(
                    "DELETE FROM referral_intents WHERE opportunity_id = $1",
                    &[&o],
                )
                .await?;
                Ok(())
            })
        })
        .with_context(|| format!("ending the referral intent of {opportunity_id}"))
    }

    fn audit(&self, entry: &AuditEntry) -> Result<()> {
        let e = entry.clone();
        self.with(move |c| {
            Box::pin(async move {
                c.execute(
                    AUDIT_INSERT,
                    &[&e.at, &e.record, &e.direction, &e.outcome, &e.detail],
                )
                .await?;
                Ok(())
            })
        })
        .context("writing the audit trail")
    }

    fn audit_search(&self, query: &AuditQuery) -> Result<AuditPage> {
        let (sql, params) = audit_query::search_sql(query, |n| format!("${n}"));
        let rows = self
            .with(move |c| {
                Box::pin(async move {
                    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                        .iter()
                        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                        .collect();
                    Ok(c.query(&sql, &params).await?)
                })
            })
            .context("reading the audit trail")?;
        let rows = rows
            .iter()
            .map(|row| {
                let entry = AuditEntry {
                    at: row.get(1),
                    record: row.get(2),
                    direction: row.get(3),
                    outcome: row.get(4),
                    detail: row.get(5),
                };
                (row.get(0), entry)
            })
            .collect();
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
        // In batches, each its own short transaction, as on SQLite.
        const BATCH: i64 = 5_000;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for _ in 0..10_000 {
            let before = before.to_owned();
            let batch = self
                .with(move |c| {
                    Box::pin(async move {
                        let tx = c.transaction().await?;
                        let newest_dropped: Option<i64> = tx
                            .query_opt(
                                "SELECT id FROM audit_trail ORDER BY id DESC LIMIT 1 OFFSET $1",
                                &[&keep],
                            )
                            .await?
                            .map(|row| row.get(0));
                        let batch = tx
                            .execute(
                                "DELETE FROM audit_trail WHERE id IN (
                                     SELECT id FROM audit_trail WHERE at < $1 OR id <= $2
                                     ORDER BY id LIMIT $3)",
                                &[&before, &newest_dropped.unwrap_or(0), &BATCH],
                            )
                            .await?;
                        tx.commit().await?;
                        Ok(batch)
                    })
                })
                .context("pruning the audit trail")?;
            deleted += batch;
            if (batch as i64) < BATCH {
                break;
            }
        }
        Ok(deleted)
    }

    fn customer_locks(&self) -> std::sync::Arc<dyn crate::store::CustomerLocks> {
        PgStore::customer_locks(self)
    }
}
