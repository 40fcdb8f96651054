//! Replays: a record's last pipeline run (kept by the sync engine, see
//! [`crate::store::LastRun`]) run again through the active pipeline, or with a candidate
//! component in place of one step, compared with what that run produced. Nothing is synced
//! or stored.

use crate::pipeline::{OutputDiff, PipelineInput, Pipelines};
use crate::runtime::Direction;
use crate::store::{LastRun, SyncStore};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// What a replay gave.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayAnswer {
    /// `referral:<id>` or `opportunity:<id>`.
    pub record: String,
    /// The direction of the pipeline the record ran through.
    pub direction: Direction,
    /// When the replayed run happened (RFC 3339).
    pub ran_at: String,
    /// The step the candidate replaced, and the candidate's version; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<ReplayCandidate>,
    /// The replay's output document, or
    pub output: Option<Value>,
    /// why it produced none.
    pub error: Option<String>,
    /// What the replayed run produced (the document the engine wrote the differences of),
    /// or why it produced none.
    pub written: Option<Value>,
    /// Why the replayed run produced no document (it failed), when it did not.
    pub written_error: Option<String>,
    /// How the replay's outcome differs from the replayed run's (a missing document compared
    /// as `{"error": …}`); absent when they are the same.
    pub diff: Option<OutputDiff>,
}

/// The candidate of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayCandidate {
    /// The step the candidate took the place of.
    pub step: String,
    /// The candidate's version (`sha256:` + hex).
    pub version: String,
}

/// Why a replay did not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No pipeline run is kept for the record asked for.
    #[error(
        "no pipeline run is kept for `{0}` (records are kept from their first sync after the upgrade, and pruned with the audit trail); check the id with `cosell audit --record {0}`"
    )]
    UnknownRecord(String),
    /// The request does not fit the record, for example a `--step` that is not in its
    /// pipeline; holds the explanation.
    #[error("{0}")]
    BadRequest(String),
    /// The candidate component does not load; holds the reason.
    #[error("the candidate was refused: {0}")]
    Candidate(String),
    /// The state store failed, or loading the candidate panicked.
    #[error("state store error: {0:#}")]
    Store(#[from] anyhow::Error),
}

/// The last run of `record`: `referral:<id>`, `opportunity:<id>` or a bare id (either; the
/// most recent run when both are kept).
pub fn last_run(store: &dyn SyncStore, record: &str) -> Result<LastRun, ReplayError> {
    let keys: Vec<String> = if record.starts_with("referral:") || record.starts_with("opportunity:")
    {
        vec![record.to_owned()]
    } else {
        vec![
            format!("referral:{record}"),
            format!("opportunity:{record}"),
        ]
    };
    let mut runs = Vec::new();
    for key in &keys {
        runs.extend(store.last_runs(key)?);
    }
    runs.into_iter()
        .max_by(|a, b| a.at.cmp(&b.at))
        .ok_or_else(|| ReplayError::UnknownRecord(record.to_owned()))
}

/// Runs `run` again through `pipelines` (with the run's event, tenant and time), with `candidate` (the `.wasm` bytes) in place of
/// step `step` (default: the pipeline's only step) when given, and compares the output with
/// what the run produced.
pub async fn replay(
    pipelines: &Pipelines,
    run: LastRun,
    candidate: Option<Vec<u8>>,
    step: Option<&str>,
) -> Result<ReplayAnswer, ReplayError> {
    let direction: Direction = serde_json::from_value(Value::String(run.direction.clone()))
        .map_err(|_| {
            ReplayError::Store(anyhow::anyhow!(
                "the kept run of {} names an unknown direction `{}`",
                run.record,
                run.direction
            ))
        })?;
    // The run's own event, tenant and time: a mapping that stamps them (an audit line, say)
    // gives the same output again.
    let timestamp = chrono::DateTime::parse_from_rfc3339(&run.at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    let input = PipelineInput {
        event: run.event.clone(),
        tenant: run.tenant.clone(),
        timestamp,
        document: run.input.clone(),
        current: run.current.clone(),
    };
    let (result, candidate) = match candidate {
        None => (pipelines.run(direction, input).await, None),
        Some(wasm) => {
            let step = replaced_step(pipelines, direction, step)?;
            let runtime = pipelines.runtime().clone();
            let limits = pipelines
                .step(&step)
                .map(|s| s.limits.clone())
                .unwrap_or_else(|| Arc::new(runtime.limits().clone()));
            let component =
                tokio::task::spawn_blocking(move || runtime.load_with_limits(&wasm, &limits))
                    .await
                    .map_err(|err| ReplayError::Store(anyhow::anyhow!("loading panicked: {err}")))?
                    .map_err(|err| ReplayError::Candidate(err.to_string()))?;
            let version = component.version.to_string();
            let result = pipelines
                .run_replacing(direction, input, &step, Arc::new(component))
                .await;
            (result, Some(ReplayCandidate { step, version }))
        }
    };
    let parse = |text: &str| serde_json::from_str::<Value>(text).ok();
    let (output, error) = match result {
        Ok(out) => (parse(&out.document), None),
        Err(err) => (None, Some(err.to_string())),
    };
    let written = run.output.as_deref().and_then(parse);
    // An outcome without a document is compared as its error, so a record refused then and
    // mapped now (or the reverse) differs, and the same refusal twice does not.
    let outcome = |document: &Option<Value>, error: &Option<String>| match document {
        Some(document) => document.clone(),
        None => serde_json::json!({ "error": error }),
    };
    let diff = crate::pipeline::output_diff::diff(
        &outcome(&written, &run.error),
        &outcome(&output, &error),
    );
    Ok(ReplayAnswer {
        record: run.record,
        direction,
        ran_at: run.at,
        candidate,
        output,
        error,
        written,
        written_error: run.error,
        diff,
    })
}

/// The step a candidate replaces: `step`, which must be in the pipeline, or the pipeline's
/// only step.
fn replaced_step(
    pipelines: &Pipelines,
    direction: Direction,
    step: Option<&str>,
) -> Result<String, ReplayError> {
    let names: Vec<&str> = pipelines
        .direction(direction)
        .iter()
        .map(|s| &*s.name)
        .collect();
    match (step, names.as_slice()) {
        (Some(step), _) if names.contains(&step) => Ok(step.to_owned()),
        (Some(step), _) => Err(ReplayError::BadRequest(format!(
            "step `{step}` is not in the {direction} pipeline this record ran through (its steps: {})",
            names.join(", ")
        ))),
        (None, [only]) => Ok((*only).to_owned()),
        (None, _) => Err(ReplayError::BadRequest(format!(
            "the {direction} pipeline has {} steps ({}): name the one the candidate replaces with --step",
            names.len(),
            names.join(", ")
        ))),
    }
}
