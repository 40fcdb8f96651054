//! One mapping step: its name, direction, operator config, hot-swappable active version and
//! optional shadow version ([`super::shadow`]).

use super::shadow::{Shadow, ShadowOutcome};
use crate::metrics::Metrics;
use crate::runtime::{CallReport, Direction, Limits, MappingComponent, StepConfig};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::Arc;

/// What identifies a step to its component: name, direction, operator config and the
/// step's effective limits (`[limits]` with the step's own `limits` over them).
#[derive(Debug, Clone)]
pub struct StepIdentity {
    /// The step's configured name, e.g. `referral-to-opportunity`.
    pub name: Arc<str>,
    /// The pipeline the step belongs to.
    pub direction: Direction,
    /// The operator's key/values, read through the `config` import.
    pub config: Arc<StepConfig>,
    /// The limits every call of the step runs under.
    pub limits: Arc<Limits>,
}

/// A step's config and the stored revision it is.
struct RevisedConfig {
    revision: Option<i64>,
    values: Arc<StepConfig>,
}

/// A configured step of a pipeline.
pub struct PipelineStep {
    /// The step's configured name, e.g. `referral-to-opportunity`.
    pub name: Arc<str>,
    /// The pipeline the step belongs to.
    pub direction: Direction,
    /// The operator config and its stored revision, swapped like the version
    /// ([`PipelineStep::set_config`]).
    config: ArcSwap<RevisedConfig>,
    /// The limits every call of the step runs under.
    pub limits: Arc<Limits>,
    active: ArcSwap<MappingComponent>,
    shadow: ArcSwapOption<Shadow>,
    metrics: Arc<Metrics>,
}

impl PipelineStep {
    /// A step that starts serving `initial`.
    pub fn new(
        identity: StepIdentity,
        initial: Arc<MappingComponent>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.set_active_version(&identity.name, &initial.version, None);
        Self {
            name: identity.name,
            direction: identity.direction,
            config: ArcSwap::from_pointee(RevisedConfig {
                revision: None,
                values: identity.config,
            }),
            limits: identity.limits,
            active: ArcSwap::new(initial),
            shadow: ArcSwapOption::empty(),
            metrics,
        }
    }

    /// The step's name, direction and config.
    pub fn identity(&self) -> StepIdentity {
        StepIdentity {
            name: self.name.clone(),
            direction: self.direction,
            config: self.config(),
            limits: self.limits.clone(),
        }
    }

    /// The version serving new calls. Callers keep the returned `Arc` for the whole call, which
    /// is what lets in-flight calls finish on the version they started with.
    pub fn active(&self) -> Arc<MappingComponent> {
        self.active.load_full()
    }

    /// Atomically makes `component` the active version; returns the one it replaced.
    pub fn activate(&self, component: Arc<MappingComponent>) -> Arc<MappingComponent> {
        let version = component.version.clone();
        let previous = self.active.swap(component);
        self.metrics
            .set_active_version(&self.name, &version, Some(&previous.version));
        previous
    }

    /// The config calls starting now get. Callers keep the returned `Arc` for the whole call,
    /// so a record in flight finishes on the config it started with.
    pub fn config(&self) -> Arc<StepConfig> {
        self.config.load().values.clone()
    }

    /// The stored revision of the config calls starting now get (`None` before the store
    /// numbered it).
    pub fn config_revision(&self) -> Option<i64> {
        self.config.load().revision
    }

    /// Atomically makes `values` (stored as `revision`) the step's config.
    pub fn set_config(&self, revision: i64, values: StepConfig) {
        self.config.store(Arc::new(RevisedConfig {
            revision: Some(revision),
            values: Arc::new(values),
        }));
    }

    /// The shadow version, if the step has one.
    pub fn shadow(&self) -> Option<Arc<Shadow>> {
        self.shadow.load_full()
    }

    /// Makes `component` the step's shadow (a fresh report), or ends the shadow (`None`);
    /// shadow calls in flight finish and count in the report they started with.
    pub fn set_shadow(&self, component: Option<Arc<MappingComponent>>) {
        self.shadow
            .store(component.map(|c| Arc::new(Shadow::new(c))));
    }

    /// Counts a shadow call in the metrics.
    pub(crate) fn record_shadow(&self, outcome: ShadowOutcome) {
        self.metrics.record_shadow_call(&self.name, outcome.label());
    }

    /// Counts a finished call in the metrics.
    pub(crate) fn record(&self, report: &CallReport) {
        self.metrics.record_call(&self.name, report);
    }
}
