//! One call of a mapping step on one record: a fresh `Store`, the limits, the outcome.

use super::bindings::{
    GuestContext, GuestDirection, GuestMappingError, LogBudgetExceeded, MappingStep,
};
use super::component::MappingComponent;
use super::engine::deadline_ticks;
use super::guest_env::{CallState, SandboxSpec, StepConfig};
use super::guest_log::{GuestLog, GuestLogLine};
use super::json_depth;
use super::limits::{Limit, Limits};
pub use crate::domain::Direction;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store, Trap};

/// Everything one call needs besides the component.
#[derive(Debug, Clone)]
pub struct MappingCall<'a> {
    /// The configured name of the step, given to the guest and used to tag its log lines.
    pub mapping_name: Arc<str>,
    /// Which way the record is travelling.
    pub direction: Direction,
    /// The event that triggered the sync, e.g. `referral-created` or `reconcile`.
    pub event: &'a str,
    /// The tenant (partner organisation) the record belongs to.
    pub tenant: &'a str,
    /// The time of the call. The guest sees it in its context and as its frozen wall clock, so
    /// a re-run of the same record gives the same output.
    pub timestamp: DateTime<Utc>,
    /// The input document, as JSON text.
    pub input: &'a str,
    /// The counterpart record as it exists now on the destination side, as JSON text; `None`
    /// when there is none yet.
    pub current: Option<&'a str>,
    /// The operator's key/values for this step, read by the guest through the `config` import.
    pub config: Arc<StepConfig>,
}

/// What a call used, for `cosell mapping test`, metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CallStats {
    /// Fuel the call burned, out of [`Limits::fuel`].
    pub fuel_used: u64,
    /// The most linear memory the instance held at once, in bytes.
    pub peak_memory_bytes: usize,
    /// Wall-clock time of the whole call, instantiation included.
    pub duration: Duration,
}

/// The outcome of a call: the output document or the error, plus what it used and logged.
#[derive(Debug)]
pub struct CallReport {
    /// The output document as JSON text, or why there is none.
    pub result: Result<String, CallError>,
    /// What the call used, filled in whether it succeeded or not.
    pub stats: CallStats,
    /// Every line the guest logged: the `log` import's lines in order, then stdout's, then
    /// stderr's.
    pub logs: Vec<GuestLogLine>,
}

/// A call that produced no output, naming the mapping and version it ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mapping `{mapping}` version {version}: {kind}")]
pub struct CallError {
    /// The configured name of the step that ran.
    pub mapping: Arc<str>,
    /// The content hash of the component version that ran (`sha256:` + hex).
    pub version: Arc<str>,
    /// Why the call produced no output.
    pub kind: CallErrorKind,
}

/// Why a call produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallErrorKind {
    /// The guest rejected the record: it is bad and retrying will not help.
    #[error("rejected the record: {0}")]
    Rejected(String),
    /// The guest chose not to sync the record.
    #[error("skipped the record: {0}")]
    Skipped(String),
    /// The guest hit a transient problem; the record can be retried.
    #[error("failed (retryable): {0}")]
    Failed(String),
    /// The call ran into one of its limits.
    #[error("exceeded its {limit}: {detail} (raise {key} if this record is legitimate)", key = limit.config_key())]
    LimitExceeded {
        /// The limit the call ran into.
        limit: Limit,
        /// What went over it, with the figures (for example the output's size and the cap).
        detail: String,
    },
    /// The guest crashed (a panic, `unreachable`, an out-of-bounds access, a forbidden call).
    #[error("trapped: {0}")]
    Trapped(String),
    /// The guest returned text that is not a JSON document.
    #[error("returned output that is not valid JSON: {0}")]
    InvalidOutput(String),
    /// The host could not instantiate the component (for example the instance pool is full).
    #[error("could not be instantiated: {0}")]
    Instantiation(String),
}

impl CallErrorKind {
    /// A short snake_case name of the kind of failure, for API answers and metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            CallErrorKind::Rejected(_) => "rejected",
            CallErrorKind::Skipped(_) => "skipped",
            CallErrorKind::Failed(_) => "failed",
            CallErrorKind::LimitExceeded { .. } => "limit_exceeded",
            CallErrorKind::Trapped(_) => "trapped",
            CallErrorKind::InvalidOutput(_) => "invalid_output",
            CallErrorKind::Instantiation(_) => "instantiation",
        }
    }

    /// Whether running the same record on the same version again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CallErrorKind::Failed(_)
                | CallErrorKind::Instantiation(_)
                | CallErrorKind::LimitExceeded {
                    limit: Limit::Timeout,
                    ..
                }
        )
    }
}

/// Runs `call` on a fresh instance of `component` under `limits`.
pub fn call_mapping(
    engine: &Engine,
    limits: &Limits,
    component: &MappingComponent,
    call: &MappingCall<'_>,
) -> CallReport {
    let started = Instant::now();
    let error = |kind| CallError {
        mapping: call.mapping_name.clone(),
        version: component.version.clone(),
        kind,
    };
    let input_too_big = [Some(call.input), call.current]
        .into_iter()
        .flatten()
        .find(|doc| doc.len() as u64 > limits.max_input_bytes);
    if let Some(doc) = input_too_big {
        return CallReport {
            result: Err(error(CallErrorKind::LimitExceeded {
                limit: Limit::InputSize,
                detail: format!(
                    "a document of {} bytes is over {} bytes",
                    doc.len(),
                    limits.max_input_bytes
                ),
            })),
            stats: CallStats::default(),
            logs: Vec::new(),
        };
    }

    let mut store = new_store(engine, limits, component, call);
    let context = guest_context(component, call);
    let outcome = component
        .pre
        .instantiate(&mut store)
        .map_err(|err| classify_instantiation(&err, store.data(), limits))
        .and_then(|instance| invoke(&mut store, &instance, &context, call, limits));

    let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
    let state = store.into_data();
    let peak_memory_bytes = state.limiter.peak_bytes();
    let mut log = state.log;
    let stdio_within_budget = log.collect_stdio();
    let result = match outcome {
        Err(kind) => Err(kind),
        Ok(_) if stdio_within_budget.is_err() => Err(log_budget_exceeded(limits)),
        Ok(Ok(output)) => check_output(output, limits),
        Ok(Err(guest_error)) => Err(guest_error_kind(guest_error)),
    };
    CallReport {
        result: result.map_err(error),
        stats: CallStats {
            fuel_used,
            peak_memory_bytes,
            duration: started.elapsed(),
        },
        logs: log.into_lines(),
    }
}

/// A fresh store for one call of `component`, with its sandbox and limits set.
pub(super) fn new_store(
    engine: &Engine,
    limits: &Limits,
    component: &MappingComponent,
    call: &MappingCall<'_>,
) -> Store<CallState> {
    let frozen_time = call.timestamp.signed_duration_since(DateTime::UNIX_EPOCH);
    let state = CallState::new(SandboxSpec {
        memory_cap: limits.memory_bytes,
        log: GuestLog::new(
            call.mapping_name.clone(),
            component.version.clone(),
            limits.max_log_bytes,
        ),
        config: call.config.clone(),
        frozen_time: frozen_time.to_std().unwrap_or_default(),
        seed_material: &[component.version.as_bytes(), call.input.as_bytes()],
    });
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store
        .set_fuel(limits.fuel)
        .expect("fuel metering is enabled on the engine");
    store.set_epoch_deadline(deadline_ticks(limits.timeout()));
    store
}

/// The context the guest is given for `call`.
pub(super) fn guest_context(component: &MappingComponent, call: &MappingCall<'_>) -> GuestContext {
    GuestContext {
        direction: match call.direction {
            Direction::PartnerCenterToCrm => GuestDirection::PartnerCenterToCrm,
            Direction::CrmToPartnerCenter => GuestDirection::CrmToPartnerCenter,
        },
        event: call.event.to_owned(),
        tenant: call.tenant.to_owned(),
        mapping_name: call.mapping_name.to_string(),
        mapping_version: component.version.to_string(),
        timestamp: call.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// Calls the guest's `map` on an instance in `store`, naming the limit it ran into if it trapped.
pub(super) fn invoke(
    store: &mut Store<CallState>,
    instance: &MappingStep,
    context: &GuestContext,
    call: &MappingCall<'_>,
    limits: &Limits,
) -> Result<Result<String, GuestMappingError>, CallErrorKind> {
    instance
        .call_map(&mut *store, context, call.input, call.current)
        .map_err(|err| classify_trap(&err, store.data(), limits))
}

/// The kind of failure a guest's own error result stands for.
pub(super) fn guest_error_kind(error: GuestMappingError) -> CallErrorKind {
    match error {
        GuestMappingError::Reject(reason) => CallErrorKind::Rejected(reason),
        GuestMappingError::Skip(reason) => CallErrorKind::Skipped(reason),
        GuestMappingError::Fail(reason) => CallErrorKind::Failed(reason),
    }
}

fn check_output(output: String, limits: &Limits) -> Result<String, CallErrorKind> {
    if output.len() as u64 > limits.max_output_bytes {
        return Err(CallErrorKind::LimitExceeded {
            limit: Limit::OutputSize,
            detail: format!(
                "the output is {} bytes, over {} bytes",
                output.len(),
                limits.max_output_bytes
            ),
        });
    }
    // Depth first: it is one pass over the bytes whatever the text, and it is what lets every
    // later reader (serde_json's `Value`, the diff, the fingerprint) recurse without limits.
    if let Err(depth) = json_depth::within(&output, json_depth::MAX_DEPTH) {
        return Err(CallErrorKind::LimitExceeded {
            limit: Limit::OutputDepth,
            detail: format!(
                "the output nests arrays and objects {depth} or more levels deep, over {}",
                json_depth::MAX_DEPTH
            ),
        });
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&output)
        .map_err(|err| CallErrorKind::InvalidOutput(err.to_string()))?;
    Ok(output)
}

fn log_budget_exceeded(limits: &Limits) -> CallErrorKind {
    CallErrorKind::LimitExceeded {
        limit: Limit::LogSize,
        detail: format!("the guest logged more than {} bytes", limits.max_log_bytes),
    }
}

/// Names the limit an instantiation ran into, or says why it failed.
///
/// The memory cap and the counts of core instances, memories and tables are deterministic:
/// the same component always fails the same way, so they are limits, not retryable
/// instantiation failures (which stand for a full instance pool).
pub(super) fn classify_instantiation(
    err: &wasmtime::Error,
    state: &CallState,
    limits: &Limits,
) -> CallErrorKind {
    if state.limiter.exceeded() {
        return CallErrorKind::LimitExceeded {
            limit: Limit::Memory,
            detail: format!(
                "the component's memories need more than {} bytes together when instantiated",
                limits.memory_bytes
            ),
        };
    }
    let message = format!("{err:#}");
    // wasmtime's wording when the store's limiter refuses a core instance, memory or table
    // (`StoreOpaque::bump_resource_counts`); pinned by a test in tests/hostile_components.rs.
    if message.contains("resource limit exceeded") {
        return CallErrorKind::LimitExceeded {
            limit: Limit::InstanceResources,
            detail: message,
        };
    }
    CallErrorKind::Instantiation(message)
}

/// Names the limit a trapped call ran into, or describes the crash.
fn classify_trap(err: &wasmtime::Error, state: &CallState, limits: &Limits) -> CallErrorKind {
    if state.limiter.exceeded() {
        return CallErrorKind::LimitExceeded {
            limit: Limit::Memory,
            detail: format!(
                "the guest tried to grow its memory past {} bytes",
                limits.memory_bytes
            ),
        };
    }
    if err.downcast_ref::<LogBudgetExceeded>().is_some() {
        return log_budget_exceeded(limits);
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallErrorKind::LimitExceeded {
            limit: Limit::Fuel,
            detail: format!("all {} units of fuel were used", limits.fuel),
        },
        Some(Trap::Interrupt) => CallErrorKind::LimitExceeded {
            limit: Limit::Timeout,
            detail: format!("the call ran past {} ms", limits.timeout_ms),
        },
        Some(Trap::StackOverflow) => CallErrorKind::LimitExceeded {
            limit: Limit::Stack,
            detail: "the guest's call stack overflowed (runaway recursion?)".into(),
        },
        Some(Trap::UnreachableCodeReached) => CallErrorKind::Trapped(with_last_error_line(
            "the guest panicked or aborted (wasm `unreachable` executed)",
            state,
        )),
        Some(trap) => CallErrorKind::Trapped(with_last_error_line(&trap.to_string(), state)),
        None => CallErrorKind::Trapped(format!("{err:#}")),
    }
}

/// Appends the guest's last error-level log line, which is where a panic hook puts its message.
fn with_last_error_line(summary: &str, state: &CallState) -> String {
    use super::guest_log::GuestLevel;
    match state
        .log
        .lines()
        .iter()
        .rev()
        .find(|line| line.level == GuestLevel::Error)
    {
        Some(line) => format!("{summary}; guest said: {}", line.message),
        None => summary.to_owned(),
    }
}
