//! A [`Backfill`] from the host's configuration, as `cosell serve` would set its parts up: the
//! state database, the mapping steps on their active (deployed) versions, the Dataverse
//! sink and the `[sync]` settings. The Partner Center sink is the caller's to add
//! ([`Backfill::partner_center`]): it needs the host's sign-in, which a backfill given its
//! referrals in memory does not.

use super::Backfill;
use crate::config::HostConfig;
use crate::deploy;
use crate::metrics::Metrics;
use crate::runtime::MappingRuntime;
use crate::sinks::configured::dataverse_client;
use crate::sinks::dataverse::bulk_write::BulkWriter;
use anyhow::{Context as _, Result};
use std::sync::Arc;

impl Backfill {
    /// Opens the state database of `config` (which a running host may share: SQLite in WAL
    /// mode, or PostgreSQL), loads the pipelines on the versions active there (a step never deployed starts on
    /// its configured component, as at a host's first start), and makes the Dataverse client.
    pub async fn from_config(config: &HostConfig) -> Result<Self> {
        if config.dataverse.is_none() {
            anyhow::bail!("[dataverse] is not configured: a backfill writes opportunities there");
        }
        let (limits, pool_memory) = (config.limits.clone(), config.largest_step_memory());
        let runtime = Arc::new(
            tokio::task::spawn_blocking(move || {
                MappingRuntime::with_pool_memory(limits, pool_memory)
            })
            .await?
            .context("starting the mapping runtime")?,
        );
        let state = crate::store::open(&config.state)?;
        let pipelines = {
            let (pipelines, deployments) = (config.pipelines.clone(), state.deployments.clone());
            tokio::task::spawn_blocking(move || {
                deploy::bootstrap(
                    &pipelines,
                    runtime,
                    deployments.as_ref(),
                    Arc::new(Metrics::new()),
                )
            })
            .await??
            .pipelines
        };
        Ok(Self {
            pipelines,
            dataverse: BulkWriter::new(dataverse_client(config)?),
            store: state.sync,
            sync: config.sync.clone(),
            partner_center: None,
        })
    }
}
