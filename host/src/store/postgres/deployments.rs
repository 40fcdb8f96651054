//! [`DeploymentStore`] on PostgreSQL: mapping versions (content-addressed) and the activation
//! log, as `sqlite/deployments.rs` keeps them.

use super::PgStore;
use crate::store::now;
use crate::store::{ActivationReason, DeploymentStore, StoredVersion, VersionSummary};
use anyhow::{Context as _, Result};

/// The prefix of a host secret in the credentials table (as on SQLite).
const SECRET_PREFIX: &str = "host-secret:";

/// Stores a version's bytes (content-addressed: a version stored before is kept as it is), in
/// the transaction that activates it or makes it a shadow.
pub(super) async fn insert_version(
    tx: &tokio_postgres::Transaction<'_>,
    step: &str,
    version: &str,
    wasm: &[u8],
    source: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO mapping_versions (step, version, wasm, size, source, uploaded_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        &[
            &step,
            &version,
            &wasm,
            &(wasm.len() as i64),
            &source,
            &now(),
        ],
    )
    .await?;
    Ok(())
}

async fn insert_activation(
    client: &tokio_postgres::Transaction<'_>,
    step: &str,
    version: &str,
    reason: ActivationReason,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO mapping_activations (step, version, reason, activated_at)
             VALUES ($1, $2, $3, $4)",
            &[&step, &version, &reason.as_str(), &now()],
        )
        .await?;
    // Delivered when the transaction commits, to every replica listening (and to none if it
    // rolls back).
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&super::DEPLOYMENTS_CHANNEL, &step],
        )
        .await?;
    Ok(())
}

impl DeploymentStore for PgStore {
    fn host_secret(&self, name: &str) -> Result<[u8; 32]> {
        use ring::rand::SecureRandom as _;
        let key = format!("{SECRET_PREFIX}{name}");
        let mut fresh = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
        let (name, db_key) = (name.to_owned(), key.clone());
        let stored: String = self
            .with(move |c| {
                Box::pin(async move {
                    // Insert-if-absent, then read: replicas opening a new database at once agree
                    // on one secret (the second insert waits for the first and does nothing).
                    c.execute(
                        "INSERT INTO credentials (name, value, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING",
                        &[&db_key, &hex::encode(fresh), &now()],
                    )
                    .await?;
                    let row = c
                        .query_one("SELECT value FROM credentials WHERE name = $1", &[&db_key])
                        .await?;
                    Ok(row.get(0))
                })
            })
            .with_context(|| format!("saving the host secret `{name}`"))?;
        hex::decode(&stored)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .with_context(|| {
                format!(
                    "the host secret `{name}` in the state database is not 32 bytes of hex; \
                     delete the credentials row `{key}` and a new one is made"
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
        let (s, v, wasm, source) = (
            step.to_owned(),
            version.to_owned(),
            wasm.to_vec(),
            source.to_owned(),
        );
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                insert_version(&tx, &s, &v, &wasm, &source).await?;
                insert_activation(&tx, &s, &v, reason).await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .with_context(|| format!("saving version {version} of step `{step}`"))
    }

    fn activate(&self, step: &str, version: &str, reason: ActivationReason) -> Result<()> {
        let (s, v) = (step.to_owned(), version.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                insert_activation(&tx, &s, &v, reason).await?;
                Ok(tx.commit().await?)
            })
        })
        .with_context(|| format!("activating version {version} of step `{step}`"))
    }

    fn active_version(&self, step: &str) -> Result<Option<StoredVersion>> {
        let s = step.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT v.version, v.wasm FROM mapping_activations a
                         JOIN mapping_versions v ON v.step = a.step AND v.version = a.version
                         WHERE a.step = $1 ORDER BY a.id DESC LIMIT 1",
                        &[&s],
                    )
                    .await?;
                Ok(row.map(|row| StoredVersion {
                    step: s.clone(),
                    version: row.get(0),
                    wasm: row.get(1),
                }))
            })
        })
        .with_context(|| format!("reading the active version of step `{step}`"))
    }

    fn active_version_id(&self, step: &str) -> Result<Option<String>> {
        let s = step.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT version FROM mapping_activations WHERE step = $1
                         ORDER BY id DESC LIMIT 1",
                        &[&s],
                    )
                    .await?;
                Ok(row.map(|row| row.get(0)))
            })
        })
        .with_context(|| format!("reading the active version of step `{step}`"))
    }

    fn version(&self, step: &str, version: &str) -> Result<Option<StoredVersion>> {
        let (s, v) = (step.to_owned(), version.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT wasm FROM mapping_versions WHERE step = $1 AND version = $2",
                        &[&s, &v],
                    )
                    .await?;
                Ok(row.map(|row| StoredVersion {
                    step: s.clone(),
                    version: v.clone(),
                    wasm: row.get(0),
                }))
            })
        })
        .with_context(|| format!("reading version {version} of step `{step}`"))
    }

    fn list_versions(&self, step: &str) -> Result<Vec<VersionSummary>> {
        let active = self.activation_history(step)?.into_iter().next();
        let s = step.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT v.version, v.size, v.source, v.uploaded_at,
                                (SELECT MAX(a.activated_at) FROM mapping_activations a
                                  WHERE a.step = v.step AND a.version = v.version),
                                EXISTS (SELECT 1 FROM mapping_pins p
                                  WHERE p.step = v.step AND p.version = v.version)
                         FROM mapping_versions v WHERE v.step = $1
                         ORDER BY v.uploaded_at DESC, v.seq DESC",
                        &[&s],
                    )
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let version: String = row.get(0);
                        VersionSummary {
                            active: active.as_deref() == Some(version.as_str()),
                            version,
                            size: row.get::<_, i64>(1) as u64,
                            source: row.get(2),
                            uploaded_at: row.get(3),
                            last_activated_at: row.get(4),
                            pinned: row.get(5),
                        }
                    })
                    .collect())
            })
        })
        .with_context(|| format!("listing the versions of step `{step}`"))
    }

    fn activation_history(&self, step: &str) -> Result<Vec<String>> {
        let s = step.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT version FROM mapping_activations WHERE step = $1 ORDER BY id DESC",
                        &[&s],
                    )
                    .await?;
                Ok(rows.into_iter().map(|row| row.get(0)).collect())
            })
        })
        .with_context(|| format!("reading the activation history of step `{step}`"))
    }

    fn pin(&self, step: &str, version: &str) -> Result<bool> {
        let (s, v) = (step.to_owned(), version.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                // Only a stored version: the insert selects it, so nothing is pinned otherwise.
                let stored = c
                    .query_opt(
                        "SELECT 1 FROM mapping_versions WHERE step = $1 AND version = $2",
                        &[&s, &v],
                    )
                    .await?
                    .is_some();
                if stored {
                    c.execute(
                        "INSERT INTO mapping_pins (step, version, pinned_at) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        &[&s, &v, &now()],
                    )
                    .await?;
                }
                Ok(stored)
            })
        })
        .with_context(|| format!("pinning version {version} of step `{step}`"))
    }

    fn unpin(&self, step: &str, version: &str) -> Result<bool> {
        let (s, v) = (step.to_owned(), version.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let removed = c
                    .execute(
                        "DELETE FROM mapping_pins WHERE step = $1 AND version = $2",
                        &[&s, &v],
                    )
                    .await?;
                Ok(removed > 0)
            })
        })
        .with_context(|| format!("unpinning version {version} of step `{step}`"))
    }

    fn prune_versions(&self, keep: usize) -> Result<Vec<(String, String)>> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                // As on SQLite: ranked per step by their last activation.
                let doomed: Vec<(String, String)> = tx
                    .query(
                        "WITH last_use AS (
                             SELECT v.step, v.version, v.seq AS stored,
                                    COALESCE((SELECT MAX(a.id) FROM mapping_activations a
                                               WHERE a.step = v.step AND a.version = v.version),
                                             0) AS used
                             FROM mapping_versions v),
                         ranked AS (
                             SELECT step, version, ROW_NUMBER() OVER (
                                 PARTITION BY step ORDER BY used DESC, stored DESC) AS rank
                             FROM last_use)
                         SELECT r.step, r.version FROM ranked r
                         WHERE r.rank > $1
                           AND NOT EXISTS (SELECT 1 FROM mapping_pins p
                                            WHERE p.step = r.step AND p.version = r.version)
                           AND NOT EXISTS (SELECT 1 FROM mapping_shadows s
                                            WHERE s.step = r.step AND s.version = r.version)
                           AND r.version IS DISTINCT FROM (
                               SELECT a.version FROM mapping_activations a
                                WHERE a.step = r.step ORDER BY a.id DESC LIMIT 1)",
                        &[&keep],
                    )
                    .await?
                    .into_iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect();
                for (step, version) in &doomed {
                    tx.execute(
                        "DELETE FROM mapping_activations WHERE step = $1 AND version = $2",
                        &[step, version],
                    )
                    .await?;
                    tx.execute(
                        "DELETE FROM mapping_versions WHERE step = $1 AND version = $2",
                        &[step, version],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(doomed)
            })
        })
        .context("pruning stored mapping versions")
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
