//! Referral create intents: the durable note, written before cosell POSTs a referral, that
//! lets a create whose answer was lost (or whose host stopped mid-call) be looked up instead
//! of sent again. Partner Center takes no client-chosen id, so this note is what stands
//! between an ambiguous failure and a duplicate referral.

use super::SqliteStore;
use anyhow::{Context as _, Result};
use rusqlite::{OptionalExtension as _, params};

impl SqliteStore {
    pub(super) fn intent(&self, opportunity_id: &str) -> Result<Option<i64>> {
        self.conn()
            .prepare_cached("SELECT started_at_ms FROM referral_intents WHERE opportunity_id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![opportunity_id], |row| row.get(0))
                    .optional()
            })
            .with_context(|| format!("reading the referral intent of {opportunity_id}"))
    }

    pub(super) fn begin_intent(&self, opportunity_id: &str, now_ms: i64) -> Result<i64> {
        // Durable: the intent must outlive a crash right after the POST leaves.
        let conn = self.durable_conn()?;
        conn.prepare_cached(
            "INSERT INTO referral_intents (opportunity_id, started_at_ms) VALUES (?1, ?2)
             ON CONFLICT (opportunity_id) DO NOTHING",
        )
        .and_then(|mut stmt| stmt.execute(params![opportunity_id, now_ms]))
        .and_then(|_| {
            conn.prepare_cached(
                "SELECT started_at_ms FROM referral_intents WHERE opportunity_id = ?1",
            )?
            .query_row(params![opportunity_id], |row| row.get(0))
        })
        .with_context(|| format!("saving the referral intent of {opportunity_id}"))
    }

    pub(super) fn end_intent(&self, opportunity_id: &str) -> Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM referral_intents WHERE opportunity_id = ?1")
            .and_then(|mut stmt| stmt.execute(params![opportunity_id]))
            .with_context(|| format!("ending the referral intent of {opportunity_id}"))?;
        Ok(())
    }
}
