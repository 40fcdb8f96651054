//! Building the pipelines at start-up: each step on its persisted active version, or on the
//! configured component file the first time the step is seen, with its stored shadow version.

use super::samples::sample_for;
use super::validate::validate;
use crate::config::{PipelinesConfig, StepSpec};
use crate::metrics::Metrics;
use crate::pipeline::{PipelineStep, Pipelines, StepIdentity};
use crate::runtime::{Direction, MappingRuntime};
use crate::store::{ActivationReason, DeploymentStore};
use anyhow::{Context as _, Result, anyhow};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The pipelines and each step's sample input, ready to serve.
pub struct Bootstrapped {
    pub pipelines: Arc<Pipelines>,
    pub samples: BTreeMap<String, String>,
}

/// Loads every configured step. A restart keeps whatever was deployed last: the configured
/// component file is only used for a step that has no version in the store yet.
pub fn bootstrap(
    config: &PipelinesConfig,
    runtime: Arc<MappingRuntime>,
    store: &dyn DeploymentStore,
    metrics: Arc<Metrics>,
) -> Result<Bootstrapped> {
    let mut steps = Vec::new();
    let mut samples = BTreeMap::new();
    for (direction, specs) in config.by_direction() {
        for (position, spec) in specs.iter().enumerate() {
            let sample = sample_for(spec, direction, position)?;
            let step = load_step(spec, direction, &runtime, store, &sample, metrics.clone())
                .with_context(|| {
                    format!("loading step `{}` of the {direction} pipeline", spec.step)
                })?;
            // A shadow that no longer loads must not keep the host from starting: it is
            // reported, and the step runs without it.
            super::step_config::adopt_at_start(&step, &spec.config, store)
                .with_context(|| format!("choosing the config of step `{}`", spec.step))?;
            if let Err(err) = super::shadow::follow_shadow(&step, store, &runtime) {
                tracing::warn!(step = %spec.step, error = %format!("{err:#}"), "the step's shadow version is not run");
            }
            samples.insert(spec.step.clone(), sample);
            steps.push(Arc::new(step));
        }
    }
    Ok(Bootstrapped {
        pipelines: Arc::new(Pipelines::new(runtime, steps)),
        samples,
    })
}

fn load_step(
    spec: &StepSpec,
    direction: Direction,
    runtime: &MappingRuntime,
    store: &dyn DeploymentStore,
    sample: &str,
    metrics: Arc<Metrics>,
) -> Result<PipelineStep> {
    let identity = StepIdentity {
        name: spec.step.as_str().into(),
        direction,
        config: Arc::new(spec.config.clone()),
        limits: Arc::new(spec.effective_limits(runtime.limits())),
    };
    if let Some(stored) = store.active_version(&spec.step)? {
        let component = runtime.load_with_limits(&stored.wasm, &identity.limits).map_err(|err| {
            anyhow!(
                "its active version {} no longer loads ({err}); roll back with `cosell mapping rollback {}` after fixing the limits, or deploy a new version",
                stored.version,
                spec.step
            )
        })?;
        metrics.record_component_load(component.artifact);
        tracing::info!(step = %spec.step, version = %component.version, artifact_cache = component.artifact.label(), "serving the persisted active version");
        return Ok(PipelineStep::new(identity, Arc::new(component), metrics));
    }
    let wasm = std::fs::read(&spec.component).with_context(|| {
        format!(
            "the step has no deployed version yet and its component file {} cannot be read (build the default components with `make guests`, or fix pipelines.{direction}.component)",
            spec.component.display()
        )
    })?;
    let validated = validate(runtime, &identity, &wasm, sample).with_context(|| {
        format!(
            "the component file {} was refused",
            spec.component.display()
        )
    })?;
    store.save_and_activate(
        &spec.step,
        &validated.component.version,
        &wasm,
        super::DeploySource::Config.as_str(),
        ActivationReason::Bootstrap,
    )?;
    metrics.record_component_load(validated.component.artifact);
    tracing::info!(step = %spec.step, version = %validated.component.version, file = %spec.component.display(), artifact_cache = validated.component.artifact.label(), "deployed the configured component");
    Ok(PipelineStep::new(identity, validated.component, metrics))
}
