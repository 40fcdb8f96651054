//! The mapping pipelines: for each sync direction, an ordered list of steps where each step's
//! output is the next step's input.
//!
//! A step's active version sits behind an atomic pointer ([`PipelineStep`]): a record takes a
//! snapshot of it when its call starts and finishes on that version even if a new one is
//! activated meanwhile, so a hot swap never drops or splits a record. A step may also have a
//! shadow version ([`shadow`]) that live runs ([`Pipelines::run_live`]) run beside it, writing
//! nothing.

pub mod fixtures;
pub mod output_diff;
pub mod shadow;
mod step;

pub use output_diff::OutputDiff;
pub use shadow::{Shadow, ShadowOutcome, ShadowReport};
pub use step::{PipelineStep, StepIdentity};

use crate::runtime::{
    CallError, CallStats, Direction, MappingCall, MappingComponent, MappingRuntime,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// How many shadow calls may run at once on a host. One: the pool's call slots are sized for
/// far more calls than the workers make, so "a slot is free" alone would run a shadow beside
/// every record, and a slow shadow (a Python step beside a Rust one) would then compete with
/// the live calls for the cores and push them toward their wall-clock limit. With one at a time
/// a shadow sees every record at a low rate and a sample at a high one (the rest are counted
/// as skipped).
pub const SHADOW_CALLS: usize = 1;

/// One record to run through a pipeline.
#[derive(Debug, Clone)]
pub struct PipelineInput {
    /// The event that triggered the sync, e.g. `referral-created` or `reconcile`.
    pub event: String,
    /// The tenant (partner organisation) the record belongs to.
    pub tenant: String,
    /// The time of the run: every step gets it as its call's timestamp.
    pub timestamp: DateTime<Utc>,
    /// The record as JSON text, the first step's input.
    pub document: String,
    /// The counterpart as it exists now on the destination side, as JSON text, given to every
    /// step; `None` when there is none yet.
    pub current: Option<String>,
}

/// What one step did to a record.
#[derive(Debug, Clone, Serialize)]
pub struct StepRun {
    /// The step's configured name.
    pub step: String,
    /// The version that ran (`sha256:` + hex).
    pub version: String,
    /// What the call used.
    pub stats: CallStats,
}

/// The result of a pipeline run: the final document and the steps it went through.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineOutput {
    /// The last step's output, as JSON text.
    pub document: String,
    /// The steps the record went through, in order.
    pub steps: Vec<StepRun>,
}

/// A pipeline run stopped at a step.
#[derive(Debug, Clone, thiserror::Error)]
#[error("step {position} of the {direction} pipeline: {error}")]
pub struct PipelineError {
    /// The direction of the pipeline that stopped.
    pub direction: Direction,
    /// 1-based position of the failing step.
    pub position: usize,
    /// Why the failing step produced no output.
    pub error: CallError,
    /// The steps that ran before it.
    pub completed: Vec<StepRun>,
}

/// All pipelines of the host, and the runtime their steps run on.
pub struct Pipelines {
    runtime: Arc<MappingRuntime>,
    steps: BTreeMap<String, Arc<PipelineStep>>,
    order: BTreeMap<Direction, Vec<Arc<PipelineStep>>>,
    /// Bounds concurrent calls to what the instance pool holds.
    call_slots: Arc<Semaphore>,
    /// Bounds the shadow calls running at once to [`SHADOW_CALLS`].
    shadow_slots: Arc<Semaphore>,
}

impl Pipelines {
    /// Pipelines made of `steps`, each knowing its direction; order within a direction is the
    /// order of the slice.
    pub fn new(runtime: Arc<MappingRuntime>, steps: Vec<Arc<PipelineStep>>) -> Self {
        let mut order: BTreeMap<Direction, Vec<Arc<PipelineStep>>> = BTreeMap::new();
        for step in &steps {
            order.entry(step.direction).or_default().push(step.clone());
        }
        let call_slots = Arc::new(Semaphore::new(runtime.max_concurrent_calls()));
        Self {
            steps: steps.into_iter().map(|s| (s.name.to_string(), s)).collect(),
            runtime,
            order,
            call_slots,
            shadow_slots: Arc::new(Semaphore::new(SHADOW_CALLS)),
        }
    }

    /// The runtime the steps run on.
    pub fn runtime(&self) -> &Arc<MappingRuntime> {
        &self.runtime
    }

    /// A step by name.
    pub fn step(&self, name: &str) -> Option<&Arc<PipelineStep>> {
        self.steps.get(name)
    }

    /// Every step, by name.
    pub fn steps(&self) -> impl Iterator<Item = &Arc<PipelineStep>> {
        self.steps.values()
    }

    /// The steps of one direction, in order.
    pub fn direction(&self, direction: Direction) -> &[Arc<PipelineStep>] {
        self.order.get(&direction).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every step of both pipelines, Partner Center → CRM first, each with its direction and
    /// its 1-based position in its pipeline (the admin API's and the console's listings).
    pub fn in_order(&self) -> impl Iterator<Item = (Direction, usize, &Arc<PipelineStep>)> {
        [Direction::PartnerCenterToCrm, Direction::CrmToPartnerCenter]
            .into_iter()
            .flat_map(move |direction| {
                self.direction(direction)
                    .iter()
                    .enumerate()
                    .map(move |(index, step)| (direction, index + 1, step))
            })
    }

    /// Runs `input` through every step of `direction`, in order (a preview: shadows do not
    /// run).
    pub async fn run(
        &self,
        direction: Direction,
        input: PipelineInput,
    ) -> Result<PipelineOutput, PipelineError> {
        self.run_with(direction, input, RunKind::Preview).await
    }

    /// Runs a live record (`referral:<id>` or `opportunity:<id>`) through the pipeline, as
    /// [`Pipelines::run`], and each step's shadow beside it, off the record's path.
    pub async fn run_live(
        &self,
        direction: Direction,
        input: PipelineInput,
        record: &str,
    ) -> Result<PipelineOutput, PipelineError> {
        self.run_with(direction, input, RunKind::Live(record)).await
    }

    /// Runs `input` through the pipeline with `candidate` in place of the active version of
    /// the step named `step` (a replay; shadows do not run).
    pub async fn run_replacing(
        &self,
        direction: Direction,
        input: PipelineInput,
        step: &str,
        candidate: Arc<MappingComponent>,
    ) -> Result<PipelineOutput, PipelineError> {
        self.run_with(direction, input, RunKind::Replacing(step, candidate))
            .await
    }

    async fn run_with(
        &self,
        direction: Direction,
        mut input: PipelineInput,
        kind: RunKind<'_>,
    ) -> Result<PipelineOutput, PipelineError> {
        let mut document = std::mem::take(&mut input.document);
        let mut completed = Vec::new();
        for (index, step) in self.direction(direction).iter().enumerate() {
            let component = match &kind {
                RunKind::Replacing(name, candidate) if **name == *step.name => candidate.clone(),
                _ => step.active(),
            };
            let shadow_input = match kind {
                RunKind::Live(record) => step
                    .shadow()
                    .map(|shadow| (record, shadow, document.clone())),
                _ => None,
            };
            let (run, result) = self
                .run_component(
                    step,
                    component,
                    &input.event,
                    &input.tenant,
                    input.timestamp,
                    document,
                    input.current.clone(),
                )
                .await;
            if let Some((record, shadow, shadow_document)) = shadow_input {
                self.spawn_shadow(step, shadow, record, &input, shadow_document, &result);
            }
            match result {
                Ok(output) => {
                    document = output;
                    completed.push(run);
                }
                Err(error) => {
                    return Err(PipelineError {
                        direction,
                        position: index + 1,
                        error,
                        completed,
                    });
                }
            }
        }
        Ok(PipelineOutput {
            document,
            steps: completed,
        })
    }

    /// Runs one step on a blocking thread, on the version active when the call starts.
    pub async fn run_step(
        &self,
        step: &Arc<PipelineStep>,
        event: &str,
        tenant: &str,
        timestamp: DateTime<Utc>,
        document: String,
        current: Option<String>,
    ) -> (StepRun, Result<String, CallError>) {
        self.run_component(
            step,
            step.active(),
            event,
            tenant,
            timestamp,
            document,
            current,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_component(
        &self,
        step: &Arc<PipelineStep>,
        component: Arc<MappingComponent>,
        event: &str,
        tenant: &str,
        timestamp: DateTime<Utc>,
        document: String,
        current: Option<String>,
    ) -> (StepRun, Result<String, CallError>) {
        let _slot = self
            .call_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the call semaphore is never closed");
        let runtime = self.runtime.clone();
        let (step_arc, event, tenant) = (step.clone(), event.to_owned(), tenant.to_owned());
        let version = component.version.to_string();
        let report = tokio::task::spawn_blocking(move || {
            runtime.call_with_limits(
                &component,
                &MappingCall {
                    mapping_name: step_arc.name.clone(),
                    direction: step_arc.direction,
                    event: &event,
                    tenant: &tenant,
                    timestamp,
                    input: &document,
                    current: current.as_deref(),
                    config: step_arc.config(),
                },
                &step_arc.limits,
            )
        })
        .await
        .expect("a mapping call never panics the host thread");
        step.record(&report);
        (
            StepRun {
                step: step.name.to_string(),
                version,
                stats: report.stats,
            },
            report.result,
        )
    }

    /// Runs `shadow` on what the active version of `step` just ran on, on a task of its own,
    /// when a call slot is free right now (otherwise the call is counted as skipped): the
    /// record goes on without waiting for it.
    fn spawn_shadow(
        &self,
        step: &Arc<PipelineStep>,
        shadow: Arc<Shadow>,
        record: &str,
        input: &PipelineInput,
        document: String,
        active: &Result<String, CallError>,
    ) {
        // A shadow is a sample beside the live records, never a second workload: while one
        // shadow call runs (or every call slot is taken), the record is counted as skipped.
        let slots = self
            .shadow_slots
            .clone()
            .try_acquire_owned()
            .ok()
            .zip(self.call_slots.clone().try_acquire_owned().ok());
        let Some(slot) = slots else {
            step.record_shadow(shadow.skipped());
            return;
        };
        let (runtime, step) = (self.runtime.clone(), step.clone());
        let (record, active) = (record.to_owned(), active.clone());
        let (event, tenant, timestamp, current) = (
            input.event.clone(),
            input.tenant.clone(),
            input.timestamp,
            input.current.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let report = runtime.call_with_limits(
                &shadow.component,
                &MappingCall {
                    mapping_name: step.name.clone(),
                    direction: step.direction,
                    event: &event,
                    tenant: &tenant,
                    timestamp,
                    input: &document,
                    current: current.as_deref(),
                    config: step.config(),
                },
                &step.limits,
            );
            let outcome = shadow.compare(&record, &active, &report.result);
            step.record_shadow(outcome);
            if outcome == ShadowOutcome::Failed {
                tracing::info!(step = %step.name, %record, version = %shadow.component.version, "the shadow version failed on a record (nothing is written from it)");
            }
        });
    }
}

/// What a pipeline run is for.
enum RunKind<'a> {
    /// A preview: the active versions only.
    Preview,
    /// A live record (its key): the shadows run too.
    Live(&'a str),
    /// A replay with a candidate in place of one step's active version.
    Replacing(&'a str, Arc<MappingComponent>),
}
