//! A step's operator config, changed without a restart and versioned: every config a step has
//! had is a stored revision (who, what, when). A change is validated like a deploy (the step's
//! sample through the active version with the new config), stored, then swapped in atomically
//! ([`crate::pipeline::PipelineStep::set_config`]); the other replicas of a shared store follow
//! it as they follow activations.
//!
//! At start-up the stored latest revision wins over the configuration file, unless the file's
//! config for the step changed since the last revision that came from the file: then the
//! file's config becomes a new revision (an operator editing the file means it).

use super::validate;
use super::{DeployError, Deployer};
use crate::pipeline::PipelineStep;
use crate::runtime::{CallErrorKind, StepConfig};
use crate::store::{ConfigRevision, DeploymentStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where the start-up revision of a step's config comes from.
const FROM_FILE: &str = "config-file";

/// A change asked for: keys to set and keys to remove, or a revision to go back to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    /// Keys to add or change, with their new values.
    #[serde(default)]
    pub set: StepConfig,
    /// Keys to remove; each must be set.
    #[serde(default)]
    pub unset: Vec<String>,
    /// Go back to this revision's config (as a new revision); exclusive with set/unset.
    pub revert_to: Option<i64>,
}

/// A step's config in force.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigState {
    /// The step the config belongs to.
    pub step: String,
    /// The number of the revision in force; `None` before the store numbered one.
    pub revision: Option<i64>,
    /// The key/values the step's calls read through the `config` import.
    pub config: StepConfig,
    /// The stored revision's details (absent only before the store numbered it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<ConfigRevisionView>,
}

/// A stored revision, its config parsed.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRevisionView {
    /// The revision's number, counting up from 1 per step.
    pub revision: i64,
    /// The key/values of this revision.
    pub config: StepConfig,
    /// Where it came from: `config-file` (the host configuration at start-up), `admin-api`, or
    /// `revert-to <n>`.
    pub source: String,
    /// Who changed it, as the CLI or the caller said.
    pub changed_by: String,
    /// When it was stored (RFC 3339).
    pub at: String,
}

impl ConfigRevisionView {
    fn of(stored: ConfigRevision) -> anyhow::Result<Self> {
        Ok(Self {
            revision: stored.revision,
            config: serde_json::from_str(&stored.config).map_err(|err| {
                anyhow::anyhow!(
                    "config revision {} is not a JSON object of strings: {err}",
                    stored.revision
                )
            })?,
            source: stored.source,
            changed_by: stored.changed_by,
            at: stored.at,
        })
    }
}

fn to_json(config: &StepConfig) -> String {
    serde_json::to_string(config).expect("a map of strings always serialises")
}

/// Puts the config `step` starts with in force (see the module docs). Blocking.
pub(super) fn adopt_at_start(
    step: &PipelineStep,
    file: &StepConfig,
    store: &dyn DeploymentStore,
) -> anyhow::Result<()> {
    let revisions = store.config_revisions(&step.name)?;
    let last_from_file = revisions.iter().find(|r| r.source == FROM_FILE);
    let file_unchanged = last_from_file
        .map(|r| serde_json::from_str::<StepConfig>(&r.config).ok().as_ref() == Some(file))
        .unwrap_or(false);
    match revisions.first() {
        Some(latest) if file_unchanged => {
            let view = ConfigRevisionView::of(latest.clone())?;
            if view.revision != last_from_file.map_or(0, |r| r.revision) {
                tracing::info!(step = %step.name, revision = view.revision, "serving the stored config revision (changed through the admin API since the file's)");
            }
            step.set_config(view.revision, view.config);
        }
        _ => {
            let revision =
                store.save_config_revision(&step.name, &to_json(file), FROM_FILE, "config file")?;
            step.set_config(revision, file.clone());
        }
    }
    Ok(())
}

/// Makes the store's latest config revision of `step` the one in force, when another replica
/// changed it. Blocking.
pub(super) fn follow_config(
    step: &PipelineStep,
    store: &dyn DeploymentStore,
) -> anyhow::Result<()> {
    let Some(latest) = store.config_revisions(&step.name)?.into_iter().next() else {
        return Ok(());
    };
    if Some(latest.revision) != step.config_revision() {
        let view = ConfigRevisionView::of(latest)?;
        tracing::info!(step = %step.name, revision = view.revision, "now using the config revision another replica stored");
        step.set_config(view.revision, view.config);
    }
    Ok(())
}

impl Deployer {
    /// The config in force for `step_name`.
    pub fn config(&self, step_name: &str) -> Result<ConfigState, DeployError> {
        let step = self.step_arc(step_name)?;
        let stored = self
            .store
            .config_revisions(step_name)?
            .into_iter()
            .find(|r| Some(r.revision) == step.config_revision())
            .map(ConfigRevisionView::of)
            .transpose()?;
        Ok(ConfigState {
            step: step_name.to_owned(),
            revision: step.config_revision(),
            config: (*step.config()).clone(),
            stored,
        })
    }

    /// Every config revision of `step_name`, newest first.
    pub fn config_history(&self, step_name: &str) -> Result<Vec<ConfigRevisionView>, DeployError> {
        self.step_arc(step_name)?;
        Ok(self
            .store
            .config_revisions(step_name)?
            .into_iter()
            .map(ConfigRevisionView::of)
            .collect::<anyhow::Result<_>>()?)
    }

    /// Applies `change` to the config of `step_name`: validated on the step's sample through
    /// the active version (refused, changing nothing, when that fails), stored as a new
    /// revision by `changed_by`, then swapped in.
    pub async fn change_config(
        &self,
        step_name: &str,
        change: ConfigChange,
        changed_by: &str,
    ) -> Result<ConfigState, DeployError> {
        let _serial = self.serial.lock().await;
        let step = self.step_arc(step_name)?;
        let (config, source) = match change.revert_to {
            Some(_) if !change.set.is_empty() || !change.unset.is_empty() => {
                return Err(DeployError::BadConfig {
                    step: step_name.to_owned(),
                    reason: "revert_to cannot be combined with set or unset".into(),
                });
            }
            Some(revision) => {
                let stored = self
                    .config_history(step_name)?
                    .into_iter()
                    .find(|r| r.revision == revision)
                    .ok_or_else(|| DeployError::BadConfig {
                        step: step_name.to_owned(),
                        reason: format!("it has no config revision {revision} (see --history)"),
                    })?;
                (stored.config, format!("revert-to {revision}"))
            }
            None => {
                let mut config = (*step.config()).clone();
                for key in &change.unset {
                    if config.remove(key).is_none() {
                        return Err(DeployError::BadConfig {
                            step: step_name.to_owned(),
                            reason: format!("it has no key `{key}` to unset"),
                        });
                    }
                }
                config.extend(change.set);
                (config, "admin-api".to_owned())
            }
        };
        let mut identity = step.identity();
        identity.config = Arc::new(config.clone());
        let sample = self.samples.get(step_name).cloned().unwrap_or_default();
        let (runtime, component) = (self.pipelines.runtime().clone(), step.active());
        let report = tokio::task::spawn_blocking(move || {
            validate::run_sample(&runtime, &component, &identity, &sample, chrono::Utc::now())
        })
        .await
        .map_err(|err| DeployError::Store(anyhow::anyhow!("a sample run panicked: {err}")))?;
        // The guest may reject or skip the generic sample (as on a deploy); a `fail` is how a
        // mapping says its config is unusable, so it refuses the change like a trap does.
        if let Err(err) = &report.result
            && !matches!(
                err.kind,
                CallErrorKind::Rejected(_) | CallErrorKind::Skipped(_)
            )
        {
            return Err(DeployError::BadConfig {
                step: step_name.to_owned(),
                reason: format!("the sample record fails with it: {}", err.kind),
            });
        }
        let revision =
            self.store
                .save_config_revision(step_name, &to_json(&config), &source, changed_by)?;
        step.set_config(revision, config);
        tracing::info!(
            step = step_name,
            revision,
            changed_by,
            "the step's config changed"
        );
        self.config(step_name)
    }
}
