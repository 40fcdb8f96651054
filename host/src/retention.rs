//! Bounded growth: the periodic pruning of what cosell would otherwise keep forever.
//!
//! Three things grow with use: the audit trail (a line per sync), the stored mapping versions
//! (every upload, kept for rollback) and the per-customer locks of the Dataverse lookups (one
//! per customer ever synced, in memory). [`Retention`] prunes them as `[retention]` says, once
//! when the host starts and then every `interval_secs`: audit entries past their age or count,
//! mapping versions beyond the most recently activated ones (never the active one, never a
//! pinned one), and the customer locks nobody holds. Each pruning is logged and counted in
//! `cosell_retention_pruned_total{what}`; a failure is logged and retried at the next run,
//! never stopping the host. Among replicas of one PostgreSQL state, only the leader prunes the
//! shared audit trail and stored versions ([`crate::replicas`]); each prunes its own locks.

use crate::config::RetentionConfig;
use crate::deploy::Deployer;
use crate::metrics::Metrics;
use crate::sinks::dataverse::lookups::Lookups;
use crate::store::SyncStore;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PrunedLabels {
    pub(crate) what: &'static str,
}

/// What one pruning removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Audit trail entries deleted, past their age or beyond the count kept.
    pub audit_entries: u64,
    /// Stored mapping versions deleted, beyond the most recently activated ones.
    pub mapping_versions: u64,
    /// Per-customer locks of the Dataverse lookups dropped, because nobody held them.
    pub customer_locks: u64,
}

/// Registers `cosell_retention_pruned_total{what}` in `metrics`.
pub(crate) fn pruned_metric(metrics: &Metrics) -> Family<PrunedLabels, Counter> {
    let pruned = Family::<PrunedLabels, Counter>::default();
    metrics.register(
        "retention_pruned",
        "What retention deleted, by kind: audit_entries, mapping_versions, customer_locks",
        pruned.clone(),
    );
    pruned
}

/// The pruning of one host: what it prunes and how much it keeps.
pub struct Retention {
    config: RetentionConfig,
    deployer: Arc<Deployer>,
    audit: Option<Arc<dyn SyncStore>>,
    customer_locks: Option<Arc<Lookups>>,
    /// Whether this replica leads; `None`: a host on its own. Only the leader prunes what
    /// the replicas share (the audit trail, the stored versions).
    leader: Option<watch::Receiver<bool>>,
    pruned: Family<PrunedLabels, Counter>,
}

impl Retention {
    /// Pruning of the stored mapping versions of `deployer`, counted in `metrics`.
    pub fn new(config: RetentionConfig, deployer: Arc<Deployer>, metrics: &Metrics) -> Self {
        let pruned = pruned_metric(metrics);
        Self {
            config,
            deployer,
            audit: None,
            customer_locks: None,
            leader: None,
            pruned,
        }
    }

    /// Also prunes the audit trail in `store` and the customer locks of `lookups` (when the
    /// host syncs).
    pub fn with_sync(mut self, store: Arc<dyn SyncStore>, lookups: Arc<Lookups>) -> Self {
        self.audit = Some(store);
        self.customer_locks = Some(lookups);
        self
    }

    /// Prunes the shared state (audit trail, stored versions) only while `leader` is true;
    /// the customer locks, this process's own, are pruned on every replica.
    pub fn while_leader(mut self, leader: watch::Receiver<bool>) -> Self {
        self.leader = Some(leader);
        self
    }

    /// Starts pruning now and then every `interval_secs`; `None` when retention is off.
    pub fn spawn(self) -> Option<JoinHandle<()>> {
        let every = self.config.interval()?;
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.prune_once().await;
            }
        }))
    }

    /// Prunes everything once; logs and counts what went, logs what failed.
    pub async fn prune_once(&self) -> Pruned {
        let mut pruned = Pruned::default();
        let leads = self.leader.as_ref().is_none_or(|leader| *leader.borrow());
        if leads {
            self.prune_shared(&mut pruned).await;
        }
        if let Some(lookups) = &self.customer_locks {
            pruned.customer_locks = lookups.prune_customer_locks() as u64;
        }
        for (what, count) in [
            ("audit_entries", pruned.audit_entries),
            ("mapping_versions", pruned.mapping_versions),
            ("customer_locks", pruned.customer_locks),
        ] {
            self.pruned
                .get_or_create(&PrunedLabels { what })
                .inc_by(count);
        }
        if pruned != Pruned::default() {
            tracing::info!(
                audit_entries = pruned.audit_entries,
                mapping_versions = pruned.mapping_versions,
                customer_locks = pruned.customer_locks,
                "retention: pruned"
            );
        }
        pruned
    }

    /// Prunes the stored versions and the audit trail (the leader's part).
    async fn prune_shared(&self, pruned: &mut Pruned) {
        match self
            .deployer
            .prune_versions(self.config.mapping_versions)
            .await
        {
            Ok(versions) => {
                for (step, version) in &versions {
                    tracing::info!(%step, %version, "retention: stored mapping version deleted");
                }
                pruned.mapping_versions = versions.len() as u64;
            }
            Err(err) => {
                tracing::warn!(error = %err, "retention: could not prune the stored mapping versions; retried at the next run");
            }
        }
        if let Some(store) = &self.audit {
            match self.prune_audit(store.clone()).await {
                Ok(count) => pruned.audit_entries = count,
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "retention: could not prune the audit trail; retried at the next run");
                }
            }
        }
    }

    async fn prune_audit(&self, store: Arc<dyn SyncStore>) -> anyhow::Result<u64> {
        let before = match self.config.audit_max_age_days {
            // Nothing is older than the epoch: no age limit.
            0 => String::new(),
            days => (chrono::Utc::now() - chrono::Duration::days(days.min(365_000) as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let keep = match self.config.audit_max_entries {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        // SQLite work: off the async threads. The runs kept for replays (one per record and
        // direction) go with the audit trail's age limit.
        tokio::task::spawn_blocking(move || {
            let pruned = store.prune_audit(&before, keep)?;
            store.prune_last_runs(&before)?;
            Ok(pruned)
        })
        .await?
    }
}
