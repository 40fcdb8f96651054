//! `cosell mapping test --fixtures DIR [--update]`: every case of a fixtures directory run on
//! one compiled component under the production limits, one line per case (outcome, fuel, peak
//! memory, time), a readable diff of each mismatch, a summary line and an exit code a CI job
//! can use. The format itself is [`crate::pipeline::fixtures`].

use super::mapping_test::{TestArgs, compile};
use crate::pipeline::fixtures::{Expected, FixtureCase, write_expected};
use crate::pipeline::output_diff;
use crate::runtime::{CallStats, Direction, Limits, MappingCall};
use anyhow::Result;
use serde::Serialize;
use std::io::Write as _;
use std::sync::Arc;

/// What happened to one case.
#[derive(Debug, Serialize)]
struct CaseResult {
    name: String,
    /// `pass`, `fail` or `updated`.
    status: Status,
    fuel_used: u64,
    peak_memory_bytes: usize,
    time_ms: f64,
    /// Why it failed, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The JSON pointers that differ from the expected outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changed: Vec<String>,
    /// A unified diff, expected (`-`) against actual (`+`).
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Fail,
    Updated,
}

#[derive(Debug, Serialize)]
struct Summary {
    component: String,
    compile_ms: f64,
    passed: usize,
    failed: usize,
    updated: usize,
    cases: Vec<CaseResult>,
}

/// Runs the suite (blocking: compiles and calls); returns the exit code, 0 only when every
/// case passed (or was updated).
pub(super) fn run_suite(
    args: &TestArgs,
    limits: Limits,
    bytes: &[u8],
    cases: Vec<FixtureCase>,
) -> Result<i32> {
    let (runtime, component, compile_time) = compile(&args.component, limits, bytes)?;
    let default_direction: Direction = args.direction.unwrap_or_default().into();
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let report = runtime.call(
            &component,
            &MappingCall {
                mapping_name: Arc::from(args.step.as_str()),
                direction: case.context.direction.unwrap_or(default_direction),
                event: &case.context.event,
                tenant: &case.context.tenant,
                timestamp: case.context.timestamp,
                input: &case.input,
                current: case.current.as_deref(),
                config: Arc::new(case.config.clone()),
            },
        );
        let actual = Expected::from_call(&report.result);
        let result = judge(case, actual, args.update, report.stats)?;
        if !args.json {
            print_case(&result);
        }
        results.push(result);
    }
    let count = |status| results.iter().filter(|r| r.status == status).count();
    let summary = Summary {
        component: component.version.to_string(),
        compile_ms: compile_time.as_secs_f64() * 1000.0,
        passed: count(Status::Pass),
        failed: count(Status::Fail),
        updated: count(Status::Updated),
        cases: results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let updated = match summary.updated {
            0 => String::new(),
            n => format!(", {n} updated"),
        };
        let line = format!(
            "{} passed, {} failed{updated} ({} cases of {}; compile {:.1} ms)",
            summary.passed,
            summary.failed,
            summary.cases.len(),
            args.fixtures
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display(),
            summary.compile_ms,
        );
        // A closed pipe (`| head`) is the reader's choice, not an error.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
    Ok(if summary.failed == 0 { 0 } else { 1 })
}

/// Compares what the component did with what the case expects, rewriting the expected file
/// under `--update`.
fn judge(
    case: &FixtureCase,
    actual: Result<Expected, String>,
    update: bool,
    stats: CallStats,
) -> Result<CaseResult> {
    let mut result = CaseResult {
        name: case.name.clone(),
        status: Status::Fail,
        fuel_used: stats.fuel_used,
        peak_memory_bytes: stats.peak_memory_bytes,
        time_ms: stats.duration.as_secs_f64() * 1000.0,
        reason: None,
        changed: Vec::new(),
        diff: None,
    };
    let actual = match actual {
        Ok(actual) => actual,
        Err(reason) => {
            // A trap, a limit or broken output is never an expected outcome, so --update
            // does not record it either.
            result.reason = Some(format!("the step {reason}"));
            return Ok(result);
        }
    };
    let difference = match &case.expected {
        Some(expected) => output_diff::diff(&expected.to_json(), &actual.to_json()).map(|diff| {
            let kinds = (
                matches!(expected, Expected::Error(_)),
                matches!(actual, Expected::Error(_)),
            );
            let reason = match kinds {
                (false, true) => "expected an output, the step refused the record",
                (true, false) => "expected a refusal (expected-error.json), the step gave an output",
                (true, true) => "the step refused the record differently",
                (false, false) => "the output differs from expected.json",
            };
            (reason.to_owned(), diff.changed, Some(diff.text))
        }),
        None => Some((
            "no expected.json or expected-error.json: review the outcome and record it with --update".to_owned(),
            Vec::new(),
            Some(pretty(&actual.to_json())),
        )),
    };
    match difference {
        None => result.status = Status::Pass,
        Some(_) if update => {
            write_expected(&case.dir, &actual)?;
            result.status = Status::Updated;
        }
        Some((reason, changed, diff)) => {
            result.reason = Some(reason);
            result.changed = changed;
            result.diff = diff;
        }
    }
    Ok(result)
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value always serialises") + "\n"
}

fn print_case(result: &CaseResult) {
    let status = match result.status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Updated => "UPDATED",
    };
    let mut out = format!(
        "{status:<8}{:<40} fuel {:>11}  memory {:>7.2} MiB  time {:>8.3} ms\n",
        result.name,
        result.fuel_used,
        result.peak_memory_bytes as f64 / 1048576.0,
        result.time_ms,
    );
    if let Some(reason) = &result.reason {
        out.push_str(&format!("        {reason}\n"));
    }
    if !result.changed.is_empty() {
        out.push_str(&format!("        changed: {}\n", result.changed.join(", ")));
    }
    if let Some(diff) = &result.diff {
        for line in diff.lines() {
            out.push_str(&format!("        {line}\n"));
        }
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}
