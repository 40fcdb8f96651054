//! PostgreSQL: each step's shadow version and the revisions of its configuration, as
//! `sqlite/shadows.rs` keeps them; the trait impl forwards here. A shadow change notifies the
//! deployments channel, so the other replicas follow it as they follow activations.

use super::PgStore;
use crate::store::{ConfigRevision, ShadowDesignation, now};
use anyhow::{Context as _, Result};
impl PgStore {
    pub(super) fn save_shadow_impl(
        &self,
        step: &str,
        version: &str,
        wasm: &[u8],
        source: &str,
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
                super::deployments::insert_version(&tx, &s, &v, &wasm, &source).await?;
                tx.execute(
                    "INSERT INTO mapping_shadows (step, version, since) VALUES ($1, $2, $3)
                     ON CONFLICT (step) DO UPDATE SET version = excluded.version,
                                                      since = excluded.since",
                    &[&s, &v, &now()],
                )
                .await?;
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&super::DEPLOYMENTS_CHANNEL, &s],
                )
                .await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .with_context(|| format!("saving version {version} as the shadow of step `{step}`"))
    }

    pub(super) fn shadow_impl(&self, step: &str) -> Result<Option<ShadowDesignation>> {
        let s = step.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                Ok(c.query_opt(
                    "SELECT version, since FROM mapping_shadows WHERE step = $1",
                    &[&s],
                )
                .await?
                .map(|row| ShadowDesignation {
                    version: row.get(0),
                    since: row.get(1),
                }))
            })
        })
        .with_context(|| format!("reading the shadow of step `{step}`"))
    }

    pub(super) fn end_shadow_impl(&self, step: &str) -> Result<bool> {
        let s = step.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let removed = tx
                    .execute("DELETE FROM mapping_shadows WHERE step = $1", &[&s])
                    .await?;
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&super::DEPLOYMENTS_CHANNEL, &s],
                )
                .await?;
                tx.commit().await?;
                Ok(removed > 0)
            })
        })
        .with_context(|| format!("ending the shadow of step `{step}`"))
    }

    pub(super) fn save_config_revision_impl(
        &self,
        step: &str,
        config: &str,
        source: &str,
        changed_by: &str,
    ) -> Result<i64> {
        let (s, c, src, by) = (
            step.to_owned(),
            config.to_owned(),
            source.to_owned(),
            changed_by.to_owned(),
        );
        self.with(move |client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                // One writer per step at a time: the next number is read under the lock.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('cosell-config:' || $1))",
                    &[&s],
                )
                .await?;
                let revision: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(revision), 0) + 1 FROM step_config_revisions
                         WHERE step = $1",
                        &[&s],
                    )
                    .await?
                    .get(0);
                tx.execute(
                    "INSERT INTO step_config_revisions (step, revision, config, source, changed_by, at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&s, &revision, &c, &src, &by, &now()],
                )
                .await?;
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&super::DEPLOYMENTS_CHANNEL, &s],
                )
                .await?;
                tx.commit().await?;
                Ok(revision)
            })
        })
        .with_context(|| format!("saving a config revision of step `{step}`"))
    }

    pub(super) fn config_revisions_impl(&self, step: &str) -> Result<Vec<ConfigRevision>> {
        let s = step.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                Ok(c.query(
                    "SELECT revision, config, source, changed_by, at FROM step_config_revisions
                     WHERE step = $1 ORDER BY revision DESC",
                    &[&s],
                )
                .await?
                .into_iter()
                .map(|row| ConfigRevision {
                    revision: row.get(0),
                    config: row.get(1),
                    source: row.get(2),
                    changed_by: row.get(3),
                    at: row.get(4),
                })
                .collect())
            })
        })
        .with_context(|| format!("reading the config revisions of step `{step}`"))
    }
}
