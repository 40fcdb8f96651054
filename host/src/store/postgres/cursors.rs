//! Poller cursors and rotated credentials on PostgreSQL. A credential is written under its
//! row's lock, so the single-use refresh token one replica rotates is the one the next reads.

use super::PgStore;
use crate::store::now;
use crate::store::sync_store::CursorStore;
use anyhow::{Context as _, Result};

impl PgStore {
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

impl CursorStore for PgStore {
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
}
