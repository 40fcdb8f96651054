//! The audit trail and the last pipeline run of each record on SQLite.

use super::{SqliteStore, write_transaction};
use crate::store::audit_query::{self, AuditPage, AuditQuery};
use crate::store::sync_store::{AuditEntry, AuditStore, LastRun};
use anyhow::{Context as _, Result};
use rusqlite::{OptionalExtension, params};

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

impl AuditStore for SqliteStore {
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

    fn save_last_run(&self, run: &LastRun) -> Result<()> {
        // Not durable (the default): losing the last second of these in a power cut only
        // makes a replay answer an older run.
        save_last_run_in(&self.conn(), run)
    }

    fn last_runs(&self, record: &str) -> Result<Vec<LastRun>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT record, direction, event, tenant, input, current_doc, config_revision, output, error, at
             FROM pipeline_last_runs WHERE record = ?1 ORDER BY direction",
        )?;
        let rows = stmt.query_map(params![record], |row| {
            Ok(LastRun {
                record: row.get(0)?,
                direction: row.get(1)?,
                event: row.get(2)?,
                tenant: row.get(3)?,
                input: row.get(4)?,
                current: row.get(5)?,
                config_revision: row.get(6)?,
                output: row.get(7)?,
                error: row.get(8)?,
                at: row.get(9)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .with_context(|| format!("reading the last pipeline runs of {record}"))
    }

    fn prune_last_runs(&self, before: &str) -> Result<u64> {
        let deleted = self
            .conn()
            .execute(
                "DELETE FROM pipeline_last_runs WHERE at < ?1",
                params![before],
            )
            .context("pruning the kept last pipeline runs")?;
        Ok(deleted as u64)
    }
}

/// Keeps `run` (see [`AuditStore::save_last_run`]) on `conn`, in its transaction if it has one.
pub(super) fn save_last_run_in(conn: &rusqlite::Connection, run: &LastRun) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO pipeline_last_runs
             (record, direction, event, tenant, input, current_doc, config_revision, output, error, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (record, direction) DO UPDATE SET
             event = excluded.event, tenant = excluded.tenant, input = excluded.input, current_doc = excluded.current_doc,
             config_revision = excluded.config_revision, output = excluded.output,
             error = excluded.error, at = excluded.at",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            run.record,
            run.direction,
            run.event,
            run.tenant,
            run.input,
            run.current,
            run.config_revision,
            run.output,
            run.error,
            run.at
        ])
    })
    .with_context(|| format!("keeping the last pipeline run of {}", run.record))?;
    Ok(())
}
