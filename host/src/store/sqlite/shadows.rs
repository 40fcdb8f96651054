//! SQLite: each step's shadow version ([`DeploymentStore::save_shadow`]) and the revisions of
//! its configuration; the trait impl forwards here.
//!
//! [`DeploymentStore::save_shadow`]: crate::store::DeploymentStore::save_shadow

use super::{SqliteStore, now, write_transaction};
use crate::store::{ConfigRevision, ShadowDesignation};
use anyhow::{Context as _, Result};
use rusqlite::{OptionalExtension, params};
impl SqliteStore {
    pub(super) fn save_shadow_impl(
        &self,
        step: &str,
        version: &str,
        wasm: &[u8],
        source: &str,
    ) -> Result<()> {
        // Durable: the shadow is answered "started", and a restart must keep it.
        let mut conn = self.durable_conn()?;
        let tx = write_transaction(&mut conn)?;
        super::deployments::insert_version(&tx, step, version, wasm, source)?;
        tx.execute(
            "INSERT INTO mapping_shadows (step, version, since) VALUES (?1, ?2, ?3)
             ON CONFLICT (step) DO UPDATE SET version = excluded.version, since = excluded.since",
            params![step, version, now()],
        )?;
        tx.commit()
            .with_context(|| format!("saving version {version} as the shadow of step `{step}`"))
    }

    pub(super) fn shadow_impl(&self, step: &str) -> Result<Option<ShadowDesignation>> {
        self.conn()
            .query_row(
                "SELECT version, since FROM mapping_shadows WHERE step = ?1",
                params![step],
                |row| {
                    Ok(ShadowDesignation {
                        version: row.get(0)?,
                        since: row.get(1)?,
                    })
                },
            )
            .optional()
            .with_context(|| format!("reading the shadow of step `{step}`"))
    }

    pub(super) fn end_shadow_impl(&self, step: &str) -> Result<bool> {
        let removed = self
            .durable_conn()?
            .execute("DELETE FROM mapping_shadows WHERE step = ?1", params![step])
            .with_context(|| format!("ending the shadow of step `{step}`"))?;
        Ok(removed > 0)
    }

    pub(super) fn save_config_revision_impl(
        &self,
        step: &str,
        config: &str,
        source: &str,
        changed_by: &str,
    ) -> Result<i64> {
        let mut conn = self.durable_conn()?;
        let tx = write_transaction(&mut conn)?;
        let revision: i64 = tx.query_row(
            "SELECT COALESCE(MAX(revision), 0) + 1 FROM step_config_revisions WHERE step = ?1",
            params![step],
            |row| row.get(0),
        )?;
        tx.execute(
            "INSERT INTO step_config_revisions (step, revision, config, source, changed_by, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![step, revision, config, source, changed_by, now()],
        )?;
        tx.commit()
            .with_context(|| format!("saving a config revision of step `{step}`"))?;
        Ok(revision)
    }

    pub(super) fn config_revisions_impl(&self, step: &str) -> Result<Vec<ConfigRevision>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT revision, config, source, changed_by, at FROM step_config_revisions
             WHERE step = ?1 ORDER BY revision DESC",
        )?;
        let rows = stmt.query_map(params![step], |row| {
            Ok(ConfigRevision {
                revision: row.get(0)?,
                config: row.get(1)?,
                source: row.get(2)?,
                changed_by: row.get(3)?,
                at: row.get(4)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .with_context(|| format!("reading the config revisions of step `{step}`"))
    }
}
