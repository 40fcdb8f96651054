//! [`DeploymentStore`] on SQLite: mapping versions (content-addressed) and the activation log.

use super::{SqliteStore, now, write_transaction};
use crate::store::{ActivationReason, DeploymentStore, StoredVersion, VersionSummary};
use anyhow::{Context as _, Result};
use rusqlite::{Connection, OptionalExtension, params};

/// Stores a version's bytes (content-addressed: a version stored before is kept as it is), in
/// the transaction that activates it or makes it a shadow.
pub(super) fn insert_version(
    conn: &Connection,
    step: &str,
    version: &str,
    wasm: &[u8],
    source: &str,
) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO mapping_versions (step, version, wasm, size, source, uploaded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![step, version, wasm, wasm.len() as i64, source, now()],
    )?;
    Ok(())
}

fn insert_activation(
    conn: &Connection,
    step: &str,
    version: &str,
    reason: ActivationReason,
) -> Result<()> {
    conn.execute(
        "INSERT INTO mapping_activations (step, version, reason, activated_at) VALUES (?1, ?2, ?3, ?4)",
        params![step, version, reason.as_str(), now()],
    )?;
    Ok(())
}

/// The prefix of a [`DeploymentStore::host_secret`] in the credentials table, which keeps them
/// apart from the credentials the sync engine rotates.
const SECRET_PREFIX: &str = "host-secret:";

impl DeploymentStore for SqliteStore {
    fn host_secret(&self, name: &str) -> Result<[u8; 32]> {
        use ring::rand::SecureRandom as _;
        let key = format!("{SECRET_PREFIX}{name}");
        let mut fresh = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
        // Insert-if-absent, then read, in one write transaction: two processes opening a new
        // database at once agree on one secret.
        let mut conn = self.durable_conn()?;
        let tx = write_transaction(&mut conn)?;
        tx.execute(
            "INSERT OR IGNORE INTO credentials (name, value, updated_at) VALUES (?1, ?2, ?3)",
            params![key, hex::encode(fresh), now()],
        )?;
        let stored: String = tx.query_row(
            "SELECT value FROM credentials WHERE name = ?1",
            params![key],
            |row| row.get(0),
        )?;
        tx.commit()
            .with_context(|| format!("saving the host secret `{name}`"))?;
        hex::decode(&stored)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .with_context(|| {
                format!(
                    "the host secret `{name}` in the state database is not 32 bytes of hex; delete the credentials row `{key}` and a new one is made"
                )
            })
    }

    fn save_and_activate(
        &self,
        step: &str,
        version: &str,
        wasm: &[u8],
        source: &str,
        reason: ActivationReason,
    ) -> Result<()> {
        // Durable: the deploy is answered "activated", and a restart must serve it.
        let mut conn = self.durable_conn()?;
        let tx = write_transaction(&mut conn)?;
        insert_version(&tx, step, version, wasm, source)?;
        insert_activation(&tx, step, version, reason)?;
        tx.commit()
            .with_context(|| format!("saving version {version} of step `{step}`"))
    }

    fn activate(&self, step: &str, version: &str, reason: ActivationReason) -> Result<()> {
        insert_activation(&*self.durable_conn()?, step, version, reason)
            .with_context(|| format!("activating version {version} of step `{step}`"))
    }

    fn active_version(&self, step: &str) -> Result<Option<StoredVersion>> {
        let conn = self.conn();
        conn.query_row(
            "SELECT v.version, v.wasm FROM mapping_activations a
             JOIN mapping_versions v ON v.step = a.step AND v.version = a.version
             WHERE a.step = ?1 ORDER BY a.id DESC LIMIT 1",
            params![step],
            |row| {
                Ok(StoredVersion {
                    step: step.to_owned(),
                    version: row.get(0)?,
                    wasm: row.get(1)?,
                })
            },
        )
        .optional()
        .with_context(|| format!("reading the active version of step `{step}`"))
    }

    fn version(&self, step: &str, version: &str) -> Result<Option<StoredVersion>> {
        let conn = self.conn();
        conn.query_row(
            "SELECT wasm FROM mapping_versions WHERE step = ?1 AND version = ?2",
            params![step, version],
            |row| {
                Ok(StoredVersion {
                    step: step.to_owned(),
                    version: version.to_owned(),
                    wasm: row.get(0)?,
                })
            },
        )
        .optional()
        .with_context(|| format!("reading version {version} of step `{step}`"))
    }

    fn list_versions(&self, step: &str) -> Result<Vec<VersionSummary>> {
        let active = self.activation_history(step)?.into_iter().next();
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT v.version, v.size, v.source, v.uploaded_at,
                    (SELECT MAX(a.activated_at) FROM mapping_activations a
                      WHERE a.step = v.step AND a.version = v.version),
                    EXISTS (SELECT 1 FROM mapping_pins p
                      WHERE p.step = v.step AND p.version = v.version)
             FROM mapping_versions v WHERE v.step = ?1
             ORDER BY v.uploaded_at DESC, v.rowid DESC",
        )?;
        let rows = stmt.query_map(params![step], |row| {
            let version: String = row.get(0)?;
            Ok(VersionSummary {
                active: active.as_deref() == Some(version.as_str()),
                version,
                size: row.get::<_, i64>(1)? as u64,
                source: row.get(2)?,
                uploaded_at: row.get(3)?,
                last_activated_at: row.get(4)?,
                pinned: row.get(5)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .with_context(|| format!("listing the versions of step `{step}`"))
    }

    fn activation_history(&self, step: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT version FROM mapping_activations WHERE step = ?1 ORDER BY id DESC")?;
        let rows = stmt.query_map(params![step], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()
            .with_context(|| format!("reading the activation history of step `{step}`"))
    }

    fn pin(&self, step: &str, version: &str) -> Result<bool> {
        let conn = self.durable_conn()?;
        let stored = conn
            .query_row(
                "SELECT 1 FROM mapping_versions WHERE step = ?1 AND version = ?2",
                params![step, version],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if stored {
            conn.execute(
                "INSERT OR IGNORE INTO mapping_pins (step, version, pinned_at) VALUES (?1, ?2, ?3)",
                params![step, version, now()],
            )
            .with_context(|| format!("pinning version {version} of step `{step}`"))?;
        }
        Ok(stored)
    }

    fn unpin(&self, step: &str, version: &str) -> Result<bool> {
        let removed = self
            .durable_conn()?
            .execute(
                "DELETE FROM mapping_pins WHERE step = ?1 AND version = ?2",
                params![step, version],
            )
            .with_context(|| format!("unpinning version {version} of step `{step}`"))?;
        Ok(removed > 0)
    }

    fn prune_versions(&self, keep: usize) -> Result<Vec<(String, String)>> {
        let mut conn = self.durable_conn()?;
        let tx = write_transaction(&mut conn)?;
        // Ranked per step by their last activation (every version is activated when it is
        // stored), so a version rolled back to counts as recent again.
        let doomed: Vec<(String, String)> = {
            let mut stmt = tx.prepare(
                "WITH last_use AS (
                     SELECT v.step, v.version, v.rowid AS stored,
                            COALESCE((SELECT MAX(a.id) FROM mapping_activations a
                                       WHERE a.step = v.step AND a.version = v.version), 0) AS used
                     FROM mapping_versions v),
                 ranked AS (
                     SELECT step, version, ROW_NUMBER() OVER (
                         PARTITION BY step ORDER BY used DESC, stored DESC) AS rank
                     FROM last_use)
                 SELECT r.step, r.version FROM ranked r
                 WHERE r.rank > ?1
                   AND NOT EXISTS (SELECT 1 FROM mapping_pins p
                                    WHERE p.step = r.step AND p.version = r.version)
                   AND NOT EXISTS (SELECT 1 FROM mapping_shadows s
                                    WHERE s.step = r.step AND s.version = r.version)
                   AND r.version IS NOT (SELECT a.version FROM mapping_activations a
                                          WHERE a.step = r.step ORDER BY a.id DESC LIMIT 1)",
            )?;
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![keep], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (step, version) in &doomed {
            tx.execute(
                "DELETE FROM mapping_activations WHERE step = ?1 AND version = ?2",
                params![step, version],
            )?;
            tx.execute(
                "DELETE FROM mapping_versions WHERE step = ?1 AND version = ?2",
                params![step, version],
            )?;
        }
        tx.commit().context("pruning stored mapping versions")?;
        Ok(doomed)
    }

    fn save_shadow(&self, step: &str, version: &str, wasm: &[u8], source: &str) -> Result<()> {
        self.save_shadow_impl(step, version, wasm, source)
    }

    fn shadow(&self, step: &str) -> Result<Option<crate::store::ShadowDesignation>> {
        self.shadow_impl(step)
    }

    fn end_shadow(&self, step: &str) -> Result<bool> {
        self.end_shadow_impl(step)
    }

    fn save_config_revision(
        &self,
        step: &str,
        config: &str,
        source: &str,
        changed_by: &str,
    ) -> Result<i64> {
        self.save_config_revision_impl(step, config, source, changed_by)
    }

    fn config_revisions(&self, step: &str) -> Result<Vec<crate::store::ConfigRevision>> {
        self.config_revisions_impl(step)
    }
}
