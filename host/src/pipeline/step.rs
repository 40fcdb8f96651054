//! One mapping step: its name, direction, operator config and hot-swappable active version.

use crate::metrics::Metrics;
use crate::runtime::{CallReport, Direction, MappingComponent, StepConfig};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// What identifies a step to its component: name, direction and operator config.
#[derive(Debug, Clone)]
pub struct StepIdentity {
    pub name: Arc<str>,
    pub direction: Direction,
    pub config: Arc<StepConfig>,
}

/// A configured step of a pipeline.
pub struct MappingStep {
    pub name: Arc<str>,
    pub direction: Direction,
    pub config: Arc<StepConfig>,
    active: ArcSwap<MappingComponent>,
    metrics: Arc<Metrics>,
}

impl MappingStep {
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
            config: identity.config,
            active: ArcSwap::new(initial),
            metrics,
        }
    }

    /// The step's name, direction and config.
    pub fn identity(&self) -> StepIdentity {
        StepIdentity {
            name: self.name.clone(),
            direction: self.direction,
            config: self.config.clone(),
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

    /// Counts a finished call in the metrics.
    pub(crate) fn record(&self, report: &CallReport) {
        self.metrics.record_call(&self.name, report);
    }
}
