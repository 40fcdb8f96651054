//! The audit trail and the last pipeline run of each record on PostgreSQL.

use super::PgStore;
use crate::store::audit_query::{self, AuditPage, AuditQuery};
use crate::store::sync_store::{AuditEntry, AuditStore, LastRun};
use anyhow::{Context as _, Result};

/// Adds a line to the audit trail ($1 to $5: at, record, direction, outcome, detail).
pub(super) const AUDIT_INSERT: &str =
    "INSERT INTO audit_trail (at, record, direction, outcome, detail) VALUES ($1, $2, $3, $4, $5)";

impl AuditStore for PgStore {
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

    fn save_last_run(&self, run: &LastRun) -> Result<()> {
        let run = run.clone();
        let record = run.record.clone();
        self.with(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO pipeline_last_runs
                         (record, direction, event, tenant, input, current_doc, config_revision, output, error, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (record, direction) DO UPDATE SET
                         event = excluded.event, tenant = excluded.tenant, input = excluded.input, current_doc = excluded.current_doc,
                         config_revision = excluded.config_revision, output = excluded.output,
                         error = excluded.error, at = excluded.at",
                    &[
                        &run.record,
                        &run.direction,
                        &run.event,
                        &run.tenant,
                        &run.input,
                        &run.current,
                        &run.config_revision,
                        &run.output,
                        &run.error,
                        &run.at,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .with_context(|| format!("keeping the last pipeline run of {record}"))
    }

    fn last_runs(&self, record: &str) -> Result<Vec<LastRun>> {
        let r = record.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                Ok(c.query(
                    "SELECT record, direction, event, tenant, input, current_doc, config_revision, output, error, at
                     FROM pipeline_last_runs WHERE record = $1 ORDER BY direction",
                    &[&r],
                )
                .await?
                .into_iter()
                .map(|row| LastRun {
                    record: row.get(0),
                    direction: row.get(1),
                    event: row.get(2),
                    tenant: row.get(3),
                    input: row.get(4),
                    current: row.get(5),
                    config_revision: row.get(6),
                    output: row.get(7),
                    error: row.get(8),
                    at: row.get(9),
                })
                .collect())
            })
        })
        .with_context(|| format!("reading the last pipeline runs of {record}"))
    }

    fn prune_last_runs(&self, before: &str) -> Result<u64> {
        let before = before.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                Ok(
                    c.execute("DELETE FROM pipeline_last_runs WHERE at < $1", &[&before])
                        .await?,
                )
            })
        })
        .context("pruning the kept last pipeline runs")
    }
}
