//! Links between referrals and opportunities on PostgreSQL, saved under an advisory lock so
//! two replicas linking one pair make one link, and the referral create intents (see
//! `sqlite/links.rs` for why they exist).

use super::{LINKS_LOCK, PgStore};
use crate::store::now;
use crate::store::sync_store::{Link, LinkStore};
use anyhow::{Context as _, Result};
use tokio_postgres::{Row, Transaction};

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
}

impl LinkStore for PgStore {
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
}
