//! Shadow deploys: a candidate validated like a deploy, stored as a version and run beside
//! the active one on live records ([`crate::pipeline::shadow`]) until it is promoted (an
//! activation like a deploy) or discarded. The designation is in the store, so it survives a
//! restart and the other replicas of a shared store follow it; the report is per replica.

use super::validate::SampleRun;
use super::{DeployError, DeployReport, DeploySource, Deployer};
use crate::pipeline::{PipelineStep, ShadowReport};
use crate::runtime::{CacheOutcome, MappingRuntime};
use crate::store::{ActivationReason, DeploymentStore};
use serde::Serialize;
use std::sync::Arc;

/// What `deploy --shadow` did.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowDeployReport {
    /// The step the shadow belongs to.
    pub step: String,
    /// The shadow version.
    pub shadow: String,
    /// The active version, which keeps serving.
    pub active: String,
    /// The previous shadow it replaced, if any.
    pub replaced: Option<String>,
    /// How the step's sample record fared on the shadow version.
    pub sample: SampleRun,
    /// Time to get the version's machine code, in milliseconds (see [`DeployReport::compile_ms`]).
    pub compile_ms: f64,
    /// What the artifact cache did when the version was loaded.
    pub artifact_cache: CacheOutcome,
}

/// What `discard` did.
#[derive(Debug, Clone, Serialize)]
pub struct DiscardReport {
    /// The step whose shadow was discarded.
    pub step: String,
    /// The shadow version that ended.
    pub discarded: String,
    /// Its report on this replica when it ended.
    pub report: Option<ShadowReport>,
}

impl Deployer {
    /// Validates `wasm` like a deploy and, if it passes, stores it and makes it the shadow of
    /// `step_name` (replacing any shadow); the active version is unchanged.
    pub async fn deploy_shadow(
        &self,
        step_name: &str,
        wasm: Vec<u8>,
        source: DeploySource,
    ) -> Result<ShadowDeployReport, DeployError> {
        let _serial = self.serial.lock().await;
        let result = self.deploy_shadow_locked(step_name, wasm, source).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(DeployError::Invalid { .. }) => "refused",
            Err(_) => "error",
        };
        self.metrics
            .record_deployment(step_name, &format!("shadow_{outcome}"));
        result
    }

    async fn deploy_shadow_locked(
        &self,
        step_name: &str,
        wasm: Vec<u8>,
        source: DeploySource,
    ) -> Result<ShadowDeployReport, DeployError> {
        let step = self.step_arc(step_name)?;
        let active = step.active().version.to_string();
        let version = crate::runtime::component::content_hash(&wasm);
        if version == active {
            return Err(DeployError::ShadowIsActive {
                step: step_name.to_owned(),
                version,
            });
        }
        let (wasm, validated) = self.validate_version(&step, step_name, wasm).await?;
        self.metrics
            .record_component_load(validated.component.artifact);
        self.store
            .save_shadow(step_name, &version, &wasm, source.as_str())?;
        let replaced = step.shadow().map(|s| s.component.version.to_string());
        let artifact_cache = validated.component.artifact;
        step.set_shadow(Some(validated.component));
        tracing::info!(step = step_name, %version, %active, "a shadow version runs beside the active one");
        Ok(ShadowDeployReport {
            step: step_name.to_owned(),
            shadow: version,
            active,
            replaced,
            sample: validated.sample,
            compile_ms: validated.compile_time.as_secs_f64() * 1000.0,
            artifact_cache,
        })
    }

    /// The report of the shadow of `step_name` on this replica.
    pub fn shadow_report(&self, step_name: &str) -> Result<ShadowReport, DeployError> {
        self.step_arc(step_name)?
            .shadow()
            .map(|shadow| shadow.report())
            .ok_or_else(|| DeployError::NoShadow(step_name.to_owned()))
    }

    /// Activates the shadow version of `step_name` (validated again, stored activation, the
    /// activation hook: exactly a deploy) and ends the shadow.
    pub async fn promote(&self, step_name: &str) -> Result<DeployReport, DeployError> {
        let _serial = self.serial.lock().await;
        let result = self.promote_locked(step_name).await;
        self.count(step_name, "promote", &result);
        result
    }

    async fn promote_locked(&self, step_name: &str) -> Result<DeployReport, DeployError> {
        let step = self.step_arc(step_name)?;
        let designation = self
            .store
            .shadow(step_name)?
            .ok_or_else(|| DeployError::NoShadow(step_name.to_owned()))?;
        let stored = self
            .store
            .version(step_name, &designation.version)?
            .ok_or_else(|| DeployError::UnknownVersion {
                step: step_name.to_owned(),
                version: designation.version.clone(),
            })?;
        let report = self
            .validate_and_activate(
                step_name,
                stored.wasm,
                DeploySource::AdminApi,
                ActivationReason::Promote,
            )
            .await?;
        self.store.end_shadow(step_name)?;
        step.set_shadow(None);
        Ok(report)
    }

    /// Ends the shadow of `step_name`; the version stays stored (retention may prune it).
    pub async fn discard(&self, step_name: &str) -> Result<DiscardReport, DeployError> {
        let _serial = self.serial.lock().await;
        let step = self.step_arc(step_name)?;
        let designation = self
            .store
            .shadow(step_name)?
            .ok_or_else(|| DeployError::NoShadow(step_name.to_owned()))?;
        self.store.end_shadow(step_name)?;
        let report = step.shadow().map(|s| s.report());
        step.set_shadow(None);
        tracing::info!(step = step_name, version = %designation.version, "the shadow version was discarded");
        Ok(DiscardReport {
            step: step_name.to_owned(),
            discarded: designation.version,
            report,
        })
    }

    pub(super) fn step_arc(&self, step_name: &str) -> Result<Arc<PipelineStep>, DeployError> {
        self.pipelines
            .step(step_name)
            .cloned()
            .ok_or_else(|| DeployError::UnknownStep(step_name.to_owned()))
    }
}

/// Makes `step`'s shadow the one the store names (loading it, or ending it), when it differs
/// from the one this host runs: at start-up and when another replica changed it. Blocking.
/// A shadow that is the active version (a promote interrupted before it ended the shadow) is
/// not run.
pub(super) fn follow_shadow(
    step: &PipelineStep,
    store: &dyn DeploymentStore,
    runtime: &MappingRuntime,
) -> anyhow::Result<()> {
    let wanted = store
        .shadow(&step.name)?
        .map(|d| d.version)
        .filter(|version| *version != *step.active().version);
    let running = step.shadow().map(|s| s.component.version.to_string());
    if wanted == running {
        return Ok(());
    }
    let Some(version) = wanted else {
        step.set_shadow(None);
        tracing::info!(step = %step.name, "the shadow version was ended by another replica");
        return Ok(());
    };
    let stored = store.version(&step.name, &version)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the shadow version {version} of step `{}` is not stored",
            step.name
        )
    })?;
    let component = runtime.load_with_limits(&stored.wasm, &step.limits).map_err(|err| {
        anyhow::anyhow!(
            "the shadow version {version} of step `{}` does not load here ({err}); discard it with `cosell mapping discard {}`",
            step.name,
            step.name
        )
    })?;
    step.set_shadow(Some(Arc::new(component)));
    tracing::info!(step = %step.name, %version, "running the stored shadow version beside the active one");
    Ok(())
}
