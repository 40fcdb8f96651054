//! Poller cursors and rotated credentials on SQLite.

use super::{SqliteStore, now};
use crate::store::sync_store::CursorStore;
use anyhow::{Context as _, Result};
use rusqlite::{OptionalExtension, params};

impl CursorStore for SqliteStore {
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
}
