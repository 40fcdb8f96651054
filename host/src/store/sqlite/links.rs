//! Links between referrals and opportunities on SQLite, and the referral create intents: the
//! durable note, written before cosell POSTs a referral, that lets a create whose answer was
//! lost (or whose host stopped mid-call) be looked up instead of sent again. Partner Center
//! takes no client-chosen id, so this note is what stands between an ambiguous failure and a
//! duplicate referral.

use super::{SqliteStore, now, write_transaction};
use crate::store::sync_store::{Link, LinkStore};
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
pub(super) fn save_link_in(tx: &rusqlite::Transaction<'_>, link: &Link) -> Result<i64> {
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

impl LinkStore for SqliteStore {
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

    fn referral_intent(&self, opportunity_id: &str) -> Result<Option<i64>> {
        self.conn()
            .prepare_cached("SELECT started_at_ms FROM referral_intents WHERE opportunity_id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![opportunity_id], |row| row.get(0))
                    .optional()
            })
            .with_context(|| format!("reading the referral intent of {opportunity_id}"))
    }

    fn begin_referral_intent(&self, opportunity_id: &str, now_ms: i64) -> Result<i64> {
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

    fn end_referral_intent(&self, opportunity_id: &str) -> Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM referral_intents WHERE opportunity_id = ?1")
            .and_then(|mut stmt| stmt.execute(params![opportunity_id]))
            .with_context(|| format!("ending the referral intent of {opportunity_id}"))?;
        Ok(())
    }
}
