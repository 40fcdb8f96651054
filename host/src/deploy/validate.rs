//! Deploy-time validation: a new version must load, type-check and survive its sample.
//!
//! Order (the one the WebAssembly plugin hosts converge on): size cap → encode a core module
//! into a component → compile → type-check against the world (`instantiate_pre`) → run the
//! step's sample record under the step's production limits. Only then can it be activated.

use crate::pipeline::StepIdentity;
use crate::runtime::{
    CallError, CallErrorKind, CallReport, CallStats, LoadError, MappingCall, MappingComponent,
    MappingRuntime,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the sample record fared on the new version.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRun {
    /// `ok`, or the typed error the guest returned (`rejected: …`, `skipped: …`, `failed: …`);
    /// a guest may legitimately reject or skip the generic sample.
    pub outcome: String,
    /// What the sample call used.
    pub stats: CallStats,
}

/// Why a version was refused.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The version does not load: too large, not WebAssembly, refused code, does not compile,
    /// or not for the `mapping-step` world.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The sample record made the version trap, go over a limit, return output that is not JSON,
    /// or fail to instantiate. (A guest that rejects, skips or fails the sample passes.)
    #[error("the sample record broke it: {0}")]
    Sample(CallError),
}

/// A version that passed validation, with what validation measured.
pub struct Validated {
    /// The compiled component, ready to activate.
    pub component: Arc<MappingComponent>,
    /// How the step's sample record fared on it.
    pub sample: SampleRun,
    /// Time to load it: size and code checks, then a Cranelift compile (or a load from the
    /// artifact cache) and the type-check.
    pub compile_time: Duration,
}

/// Runs `step`'s sample record through `component` as validation does (event and tenant
/// `sample`, no current record) at the call time `at`. Blocking. The console shows two
/// versions' outputs side by side with it, both at one `at`: a mapping may read the call's
/// timestamp (the rules library's audit line does, to the second), so two different times could
/// make identical versions look different.
pub fn run_sample(
    runtime: &MappingRuntime,
    component: &MappingComponent,
    step: &StepIdentity,
    sample: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> CallReport {
    runtime.call_with_limits(
        component,
        &MappingCall {
            mapping_name: step.name.clone(),
            direction: step.direction,
            event: "sample",
            tenant: "sample",
            timestamp: at,
            input: sample,
            current: None,
            config: step.config.clone(),
        },
        &step.limits,
    )
}

/// Validates `bytes` as a new version of `step`. Blocking: compiles the component.
pub fn validate(
    runtime: &MappingRuntime,
    step: &StepIdentity,
    bytes: &[u8],
    sample: &str,
) -> Result<Validated, ValidationError> {
    let started = Instant::now();
    let component = Arc::new(runtime.load_with_limits(bytes, &step.limits)?);
    let compile_time = started.elapsed();
    let report = run_sample(runtime, &component, step, sample, chrono::Utc::now());
    let outcome = match report.result {
        Ok(_) => "ok".to_owned(),
        Err(err) => match &err.kind {
            CallErrorKind::Rejected(_) | CallErrorKind::Skipped(_) | CallErrorKind::Failed(_) => {
                err.kind.to_string()
            }
            _ => return Err(ValidationError::Sample(err)),
        },
    };
    Ok(Validated {
        component,
        sample: SampleRun {
            outcome,
            stats: report.stats,
        },
        compile_time,
    })
}
