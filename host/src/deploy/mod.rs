//! Deploying, listing and rolling back versions of mapping steps, without a restart.
//!
//! A new version is validated ([`validate`]), persisted with its activation in one
//! transaction, then swapped in atomically ([`crate::pipeline::PipelineStep::activate`]).
//! A refused version changes nothing: the active one keeps serving. Every version ever
//! deployed stays in the store, so a rollback can re-activate any of them.
//! Versions arrive through the admin API ([`crate::admin`]) or a watched directory
//! ([`watch_dir`]); [`bootstrap`] builds the pipelines at start-up from the store, falling
//! back to the configured component files. [`Deployer::follow_store`] loads a version another
//! replica of a shared store activated, without storing it again.

mod bootstrap;
#[cfg(test)]
mod follow_tests;
pub mod replay;
pub mod samples;
pub mod shadow;
pub mod step_config;
#[cfg(test)]
mod step_config_tests;
#[cfg(test)]
mod step_limits_tests;
pub mod validate;
pub mod watch_dir;

pub use bootstrap::bootstrap;
pub use validate::{SampleRun, ValidationError};

use crate::metrics::Metrics;
use crate::pipeline::Pipelines;
use crate::runtime::CacheOutcome;
use crate::store::{ActivationReason, DeploymentStore, VersionSummary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a deployment came from (kept with the version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploySource {
    /// A component file named in the host configuration, stored at start-up.
    Config,
    /// An upload through the admin API (the CLI, the console or a direct call).
    AdminApi,
    /// A file dropped in the watched directory ([`watch_dir`]).
    WatchDir,
}

impl DeploySource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeploySource::Config => "config",
            DeploySource::AdminApi => "admin-api",
            DeploySource::WatchDir => "watch-dir",
        }
    }
}

/// Whether a deploy changed the active version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployStatus {
    /// The version is now the active one.
    Activated,
    /// The version was the active one already; nothing was validated or stored.
    AlreadyActive,
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The step deployed to or rolled back.
    pub step: String,
    /// The version now active (`sha256:` + hex).
    pub version: String,
    /// The version that was active before; the same as `version` when it was already active.
    pub previous: String,
    /// Whether the active version changed.
    pub status: DeployStatus,
    /// How the step's sample record fared on the version; absent when it was already active.
    pub sample: Option<SampleRun>,
    /// Time to get the version's machine code: a Cranelift compile, or a load from the
    /// artifact cache (see `artifact_cache`). 0 when nothing was loaded.
    pub compile_ms: f64,
    /// What the artifact cache did: `hit` (loaded precompiled), `miss` (compiled and stored),
    /// `error` (unusable entry or failed write; compiled), `disabled`. Absent when nothing was
    /// loaded (`already-active`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_cache: Option<CacheOutcome>,
}

/// The step's sample record run through one stored version ([`Deployer::try_sample`]).
#[derive(Debug, Clone, Serialize)]
pub struct SampleTrial {
    /// The full version.
    pub version: String,
    /// The output document, or why there is none (it does not load, or the guest refused).
    pub output: Result<String, String>,
}

/// Why a deploy or rollback did not happen. The active version is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// No pipeline has a step of that name.
    #[error("there is no step named `{0}` (see `cosell mapping list`)")]
    UnknownStep(String),
    /// Validation refused the version (it does not load, or its sample run broke it).
    #[error("version refused for step `{step}`: {error}")]
    Invalid {
        /// The step the version was for.
        step: String,
        /// Why validation refused it.
        error: ValidationError,
    },
    /// No stored version of the step matches the hash or prefix given.
    #[error("step `{step}` has no stored version matching `{version}`")]
    UnknownVersion {
        /// The step whose versions were searched.
        step: String,
        /// The hash or prefix given.
        version: String,
    },
    /// The prefix given matches more than one stored version of the step.
    #[error("`{version}` matches several versions of step `{step}`; give more of the hash")]
    AmbiguousVersion {
        /// The step whose versions were searched.
        step: String,
        /// The prefix given.
        version: String,
    },
    /// A rollback without a target, on a step that has never had another version active.
    #[error("step `{0}` has no earlier version to roll back to")]
    NothingToRollBackTo(String),
    /// A config change was refused: it is malformed, or the step's sample fails with it.
    #[error("config change refused for step `{step}`: {reason}")]
    BadConfig {
        /// The step whose config was to change.
        step: String,
        /// Why the change was refused.
        reason: String,
    },
    /// A shadow report, promote or discard asked of a step that has no shadow version.
    #[error(
        "step `{0}` has no shadow version (deploy one with `cosell mapping deploy {0} <file.wasm> --shadow`)"
    )]
    NoShadow(String),
    /// The version given as a shadow is the step's active version.
    #[error(
        "version {version} is already the active version of step `{step}`: a shadow must be another version"
    )]
    ShadowIsActive {
        /// The step asked about.
        step: String,
        /// Its active version.
        version: String,
    },
    /// The state store failed, or loading a version panicked.
    #[error("state store error: {0:#}")]
    Store(#[from] anyhow::Error),
}

/// Called with the step and the version after each activation (deploy or rollback).
pub type ActivationHook = Box<dyn Fn(&str, &str) + Send + Sync>;

/// Validates, persists and activates step versions.
pub struct Deployer {
    pipelines: Arc<Pipelines>,
    store: Arc<dyn DeploymentStore>,
    samples: BTreeMap<String, String>,
    metrics: Arc<Metrics>,
    /// The sync engine's: records parked on an earlier version of the step run again.
    on_activation: std::sync::OnceLock<ActivationHook>,
    // One deployment at a time: a validation must not interleave with another activation.
    serial: tokio::sync::Mutex<()>,
}

impl Deployer {
    /// A deployer for `pipelines`, with each step's sample input.
    pub fn new(
        pipelines: Arc<Pipelines>,
        store: Arc<dyn DeploymentStore>,
        samples: BTreeMap<String, String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pipelines,
            store,
            samples,
            metrics,
            on_activation: std::sync::OnceLock::new(),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Validates `wasm` as a new version of `step` (compile, type-check, the step's sample under
    /// its limits) on a blocking thread; answers the bytes back with the validated component.
    /// What every deploy, shadow deploy and promotion goes through before anything is stored.
    async fn validate_version(
        &self,
        step: &crate::pipeline::PipelineStep,
        step_name: &str,
        wasm: Vec<u8>,
    ) -> Result<(Vec<u8>, validate::Validated), DeployError> {
        let sample = self.samples.get(step_name).cloned().unwrap_or_default();
        let runtime = self.pipelines.runtime().clone();
        let identity = step.identity();
        let (wasm, validated) = tokio::task::spawn_blocking(move || {
            let validated = validate::validate(&runtime, &identity, &wasm, &sample);
            (wasm, validated)
        })
        .await
        .expect("validation never panics the host thread");
        let validated = validated.map_err(|error| DeployError::Invalid {
            step: step_name.to_owned(),
            error,
        })?;
        Ok((wasm, validated))
    }

    /// Sets what runs after each activation (once; a second hook is refused with a warning).
    pub fn on_activation(&self, hook: ActivationHook) {
        if self.on_activation.set(hook).is_err() {
            tracing::warn!("an activation hook was set already; the second one is ignored");
        }
    }

    /// The pipelines this deployer changes.
    pub fn pipelines(&self) -> &Arc<Pipelines> {
        &self.pipelines
    }

    /// Validates `wasm` and, if it passes, makes it the active version of `step_name`.
    pub async fn deploy(
        &self,
        step_name: &str,
        wasm: Vec<u8>,
        source: DeploySource,
    ) -> Result<DeployReport, DeployError> {
        let _serial = self.serial.lock().await;
        let result = self
            .validate_and_activate(step_name, wasm, source, ActivationReason::Deploy)
            .await;
        self.count(step_name, "deploy", &result);
        result
    }

    /// Re-activates an earlier version: `to` (a full hash or a unique prefix), or the version
    /// that was active before the current one.
    pub async fn rollback(
        &self,
        step_name: &str,
        to: Option<&str>,
    ) -> Result<DeployReport, DeployError> {
        let _serial = self.serial.lock().await;
        let result = self.rollback_locked(step_name, to).await;
        self.count(step_name, "rollback", &result);
        result
    }

    /// Makes the store's active version of `step_name` the one this host serves, when another
    /// replica activated it: loaded (compiled into this host's artifact cache), not validated
    /// again (the activating replica did) nor stored again, and without the activation hook
    /// (the activating replica requeued the parked records). Answers the version loaded, or
    /// `None` when this host serves the active version already.
    pub async fn follow_store(&self, step_name: &str) -> Result<Option<String>, DeployError> {
        let step = self
            .pipelines
            .step(step_name)
            .ok_or_else(|| DeployError::UnknownStep(step_name.to_owned()))?
            .clone();
        let _serial = self.serial.lock().await;
        let previous = step.active().version.to_string();
        let (store, runtime, name, limits) = (
            self.store.clone(),
            self.pipelines.runtime().clone(),
            step_name.to_owned(),
            step.limits.clone(),
        );
        let loaded = tokio::task::spawn_blocking(move || {
            let Some(active) = store.active_version_id(&name)? else {
                return anyhow::Ok(None);
            };
            if active == previous {
                return Ok(None);
            }
            let stored = store
                .version(&name, &active)?
                .ok_or_else(|| anyhow::anyhow!("the active version {active} of step `{name}` is not stored (deleted meanwhile?)"))?;
            let component = runtime
                .load_with_limits(&stored.wasm, &limits)
                .map_err(|err| anyhow::anyhow!("the active version {active} of step `{name}` does not load here ({err}); check that every replica has the same [limits] and step limits"))?;
            Ok(Some(component))
        })
        .await
        .map_err(|err| DeployError::Store(anyhow::anyhow!("loading a version panicked: {err}")))??;
        let activated = loaded.map(|component| {
            self.metrics.record_component_load(component.artifact);
            let version = component.version.to_string();
            let artifact_cache = component.artifact.label();
            let previous = step.activate(Arc::new(component));
            tracing::info!(step = step_name, %version, previous = %previous.version, artifact_cache, "now serving the version another replica activated");
            version
        });
        // After the activation: a shadow or a config revision that does not load here must not
        // keep this replica on an old active version. It is reported, and tried again at the
        // next check.
        if let Err(err) = self.follow_shadow_of(&step).await {
            tracing::warn!(step = step_name, error = %err, "could not follow the step's shadow version or config");
        }
        Ok(activated)
    }

    async fn follow_shadow_of(
        &self,
        step: &Arc<crate::pipeline::PipelineStep>,
    ) -> Result<(), DeployError> {
        let (step, store, runtime) = (
            step.clone(),
            self.store.clone(),
            self.pipelines.runtime().clone(),
        );
        tokio::task::spawn_blocking(move || {
            step_config::follow_config(&step, &*store)?;
            shadow::follow_shadow(&step, &*store, &runtime)
        })
        .await
        .map_err(|err| DeployError::Store(anyhow::anyhow!("loading a shadow panicked: {err}")))?
        .map_err(DeployError::Store)
    }

    /// Pins a stored version of a step (a full hash or a unique prefix), so that retention
    /// never deletes it; answers the full version.
    pub async fn pin(&self, step_name: &str, version: &str) -> Result<String, DeployError> {
        let _serial = self.serial.lock().await;
        self.known_step(step_name)?;
        let version = self.resolve_version(step_name, version)?;
        if !self.store.pin(step_name, &version)? {
            // Pruned between the lookup and the pin: impossible under `serial`, but say so.
            return Err(DeployError::UnknownVersion {
                step: step_name.to_owned(),
                version,
            });
        }
        Ok(version)
    }

    /// Unpins a version (a full hash or a unique prefix of a stored one); answers the full
    /// version and whether it was pinned.
    pub async fn unpin(
        &self,
        step_name: &str,
        version: &str,
    ) -> Result<(String, bool), DeployError> {
        let _serial = self.serial.lock().await;
        self.known_step(step_name)?;
        let version = self.resolve_version(step_name, version)?;
        let was_pinned = self.store.unpin(step_name, &version)?;
        Ok((version, was_pinned))
    }

    /// Deletes the stored versions retention no longer keeps (see
    /// [`DeploymentStore::prune_versions`]); one at a time with deploys and rollbacks, so a
    /// version being rolled back to is never deleted under it.
    pub async fn prune_versions(&self, keep: usize) -> Result<Vec<(String, String)>, DeployError> {
        let _serial = self.serial.lock().await;
        Ok(self.store.prune_versions(keep)?)
    }

    /// Runs the step's sample record (the one every new version is validated on) through a
    /// stored version (a full hash or a unique prefix), active or not, without activating or
    /// storing anything: what the console shows side by side for two versions. `at` is the
    /// call's timestamp; give both sides of a comparison the same one.
    pub async fn try_sample(
        &self,
        step_name: &str,
        version: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<SampleTrial, DeployError> {
        let step = self
            .pipelines
            .step(step_name)
            .ok_or_else(|| DeployError::UnknownStep(step_name.to_owned()))?
            .clone();
        let version = self.resolve_version(step_name, version)?;
        let stored = self.store.version(step_name, &version)?.ok_or_else(|| {
            DeployError::UnknownVersion {
                step: step_name.to_owned(),
                version: version.clone(),
            }
        })?;
        let sample = self.samples.get(step_name).cloned().unwrap_or_default();
        let runtime = self.pipelines.runtime().clone();
        let identity = step.identity();
        let output = tokio::task::spawn_blocking(move || {
            let component = runtime
                .load_with_limits(&stored.wasm, &identity.limits)
                .map_err(|err| err.to_string())?;
            validate::run_sample(&runtime, &component, &identity, &sample, at)
                .result
                .map_err(|err| err.kind.to_string())
        })
        .await
        .map_err(|err| DeployError::Store(anyhow::anyhow!("a sample run panicked: {err}")))?;
        Ok(SampleTrial { version, output })
    }

    fn known_step(&self, step_name: &str) -> Result<(), DeployError> {
        self.pipelines
            .step(step_name)
            .map(|_| ())
            .ok_or_else(|| DeployError::UnknownStep(step_name.to_owned()))
    }

    /// The stored versions of a step.
    pub fn versions(&self, step_name: &str) -> Result<Vec<VersionSummary>, DeployError> {
        self.pipelines
            .step(step_name)
            .ok_or_else(|| DeployError::UnknownStep(step_name.to_owned()))?;
        Ok(self.store.list_versions(step_name)?)
    }

    async fn rollback_locked(
        &self,
        step_name: &str,
        to: Option<&str>,
    ) -> Result<DeployReport, DeployError> {
        let step = self
            .pipelines
            .step(step_name)
            .ok_or_else(|| DeployError::UnknownStep(step_name.to_owned()))?;
        let current = step.active().version.to_string();
        let target = match to {
            Some(wanted) => self.resolve_version(step_name, wanted)?,
            None => self
                .store
                .activation_history(step_name)?
                .into_iter()
                .find(|version| *version != current)
                .ok_or_else(|| DeployError::NothingToRollBackTo(step_name.to_owned()))?,
        };
        let stored =
            self.store
                .version(step_name, &target)?
                .ok_or_else(|| DeployError::UnknownVersion {
                    step: step_name.to_owned(),
                    version: target.clone(),
                })?;
        self.validate_and_activate(
            step_name,
            stored.wasm,
            DeploySource::AdminApi,
            ActivationReason::Rollback,
        )
        .await
    }

    fn resolve_version(&self, step_name: &str, wanted: &str) -> Result<String, DeployError> {
        let wanted_hash = wanted.trim_start_matches("sha256:");
        let matches: Vec<String> = self
            .store
            .list_versions(step_name)?
            .into_iter()
            .map(|v| v.version)
            .filter(|v| v.trim_start_matches("sha256:").starts_with(wanted_hash))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(DeployError::UnknownVersion {
                step: step_name.to_owned(),
                version: wanted.to_owned(),
            }),
            _ => Err(DeployError::AmbiguousVersion {
                step: step_name.to_owned(),
                version: wanted.to_owned(),
            }),
        }
    }

    async fn validate_and_activate(
        &self,
        step_name: &str,
        wasm: Vec<u8>,
        source: DeploySource,
        reason: ActivationReason,
    ) -> Result<DeployReport, DeployError> {
        let step = self
            .pipelines
            .step(step_name)
            .ok_or_else(|| DeployError::UnknownStep(step_name.to_owned()))?
            .clone();
        let previous = step.active().version.to_string();
        let version = crate::runtime::component::content_hash(&wasm);
        if version == previous {
            return Ok(DeployReport {
                step: step_name.to_owned(),
                version,
                previous,
                status: DeployStatus::AlreadyActive,
                sample: None,
                compile_ms: 0.0,
                artifact_cache: None,
            });
        }
        let (wasm, validated) = self.validate_version(&step, step_name, wasm).await?;
        let artifact = validated.component.artifact;
        self.metrics.record_component_load(artifact);
        // Persist before activating: if the host dies in between, it restarts on the new
        // version, which is what the caller was told.
        self.store
            .save_and_activate(step_name, &version, &wasm, source.as_str(), reason)?;
        step.activate(validated.component);
        if let Some(hook) = self.on_activation.get() {
            hook(step_name, &version);
        }
        let compile_ms = validated.compile_time.as_secs_f64() * 1000.0;
        tracing::info!(step = step_name, %version, %previous, ?reason, artifact_cache = artifact.label(), compile_ms, "activated a new version");
        Ok(DeployReport {
            step: step_name.to_owned(),
            version,
            previous,
            status: DeployStatus::Activated,
            sample: Some(validated.sample),
            compile_ms,
            artifact_cache: Some(artifact),
        })
    }

    fn count(&self, step: &str, action: &str, result: &Result<DeployReport, DeployError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(DeployError::Invalid { .. }) => "refused",
            Err(_) => "error",
        };
        self.metrics
            .record_deployment(step, &format!("{action}_{outcome}"));
        if let Err(err) = result {
            tracing::warn!(step, action, error = %err, "deployment not done; the active version keeps serving");
        }
    }
}
