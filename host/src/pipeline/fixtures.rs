//! The fixture format of mapping steps: a directory with one directory per case, read by
//! `cosell mapping test --fixtures`, written by `--update` and by `cosell mapping new`, and
//! read by the repository's own tests of the default mappings.
//!
//! ```text
//! <case>/input.json            required: the input document
//! <case>/current.json          optional: the current counterpart on the destination side
//! <case>/config.json           optional: the step's config, an object of string values
//! <case>/context.json          optional: {"event", "timestamp", "tenant", "direction"}
//! <case>/expected.json         the expected output document, or
//! <case>/expected-error.json   {"kind": "reject" | "skip" | "fail", "message": "..."}
//! ```
//!
//! Reading is strict, so a typo never silently turns a case into one that checks less: any
//! other file in a case directory, a file that is not JSON, or both expected files is an error
//! naming the file. A case with neither expected file loads (its `expected` is `None`): the
//! runner reports it as a failure that says to run `--update`.

use crate::runtime::{CallError, CallErrorKind, Direction, StepConfig};
use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The files a case directory may hold.
pub const CASE_FILES: [&str; 6] = [INPUT, CURRENT, CONFIG, CONTEXT, EXPECTED, EXPECTED_ERROR];
const INPUT: &str = "input.json";
const CURRENT: &str = "current.json";
const CONFIG: &str = "config.json";
const CONTEXT: &str = "context.json";
const EXPECTED: &str = "expected.json";
const EXPECTED_ERROR: &str = "expected-error.json";

/// The context timestamp of a case whose `context.json` gives none: fixed, so that outputs
/// that record the time are reproducible.
pub const DEFAULT_TIMESTAMP: &str = "2026-01-01T00:00:00Z";

/// One case of a fixtures directory, with its documents read.
#[derive(Debug, Clone)]
pub struct FixtureCase {
    /// The case's name: its directory's name.
    pub name: String,
    /// The case's directory.
    pub dir: PathBuf,
    /// The input document's text, as the step receives it.
    pub input: String,
    /// The current counterpart's text, if the case has one.
    pub current: Option<String>,
    /// The step's configuration (empty: the step's defaults).
    pub config: StepConfig,
    /// The call's context.
    pub context: CaseContext,
    /// What the step must do; `None` when neither expected file exists yet.
    pub expected: Option<Expected>,
}

/// `context.json`, with the defaults filled in (the direction has none: it comes from the
/// command line or the project when the case does not say).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseContext {
    /// The event the step is told triggered the call; `test` when not given.
    #[serde(default = "default_name")]
    pub event: String,
    /// The tenant the step is told the record belongs to; `test` when not given.
    #[serde(default = "default_name")]
    pub tenant: String,
    /// The call's timestamp; [`DEFAULT_TIMESTAMP`] when not given.
    #[serde(default = "default_timestamp")]
    pub timestamp: DateTime<Utc>,
    /// The direction to run the case in; `None` leaves it to the command line or the project.
    #[serde(default)]
    pub direction: Option<Direction>,
}

impl Default for CaseContext {
    fn default() -> Self {
        Self {
            event: default_name(),
            tenant: default_name(),
            timestamp: default_timestamp(),
            direction: None,
        }
    }
}

fn default_name() -> String {
    "test".to_owned()
}

fn default_timestamp() -> DateTime<Utc> {
    DEFAULT_TIMESTAMP
        .parse()
        .expect("a valid RFC 3339 constant")
}

/// What a case expects of the step: an output document or a refusal.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// `expected.json`: the output, compared as parsed JSON.
    Output(Value),
    /// `expected-error.json`: the step rejects, skips or fails the record with this message.
    Error(ExpectedError),
}

/// `expected-error.json`: the kind and the exact message of a step's refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    /// Whether the step rejects, skips or fails the record.
    pub kind: ErrorKind,
    /// The exact message the step gives.
    pub message: String,
}

/// The refusals a step can return through the contract's `mapping-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The record is bad: `reject`.
    Reject,
    /// The record is deliberately not synced: `skip`.
    Skip,
    /// A transient failure: `fail`.
    Fail,
}

impl Expected {
    /// What a call did, as a case would expect it; `Err` (with the reason) for outcomes no
    /// fixture can expect: a limit, a trap, output that is not JSON.
    pub fn from_call(result: &Result<String, CallError>) -> Result<Self, String> {
        match result {
            Ok(text) => serde_json::from_str(text)
                .map(Expected::Output)
                .map_err(|err| format!("the output is not JSON: {err}")),
            Err(err) => {
                let (kind, message) = match &err.kind {
                    CallErrorKind::Rejected(m) => (ErrorKind::Reject, m),
                    CallErrorKind::Skipped(m) => (ErrorKind::Skip, m),
                    CallErrorKind::Failed(m) => (ErrorKind::Fail, m),
                    _ => return Err(err.kind.to_string()),
                };
                Ok(Expected::Error(ExpectedError {
                    kind,
                    message: message.clone(),
                }))
            }
        }
    }

    /// The expectation as the JSON document its file holds.
    pub fn to_json(&self) -> Value {
        match self {
            Expected::Output(value) => value.clone(),
            Expected::Error(error) => serde_json::to_value(error).expect("serialisable"),
        }
    }
}

/// Every case of a fixtures directory, in name order. Files beside the case directories (a
/// README) are ignored; hidden entries too.
pub fn load_suite(dir: &Path) -> Result<Vec<FixtureCase>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading the fixtures directory {} (it holds one directory per case)",
            dir.display()
        )
    })?;
    let mut cases = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.path().is_dir() {
            cases.push(load_case(&entry.path())?);
        }
    }
    if cases.is_empty() {
        bail!(
            "{} has no cases: a fixtures directory holds one directory per case, each with at least input.json",
            dir.display()
        );
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// One case directory.
pub fn load_case(dir: &Path) -> Result<FixtureCase> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} is not a case directory", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if !CASE_FILES.contains(&file.as_str()) && !file.starts_with('.') {
            bail!(
                "{}: unknown file in a fixture case; a case holds only {}",
                entry.path().display(),
                CASE_FILES.join(", ")
            );
        }
    }
    let input = read_document(&dir.join(INPUT))?.with_context(|| {
        format!(
            "{}: missing; every case needs its input document",
            dir.join(INPUT).display()
        )
    })?;
    let current = read_document(&dir.join(CURRENT))?;
    let config = match read_document(&dir.join(CONFIG))? {
        Some(text) => serde_json::from_str::<StepConfig>(&text).with_context(|| {
            format!(
                "{}: a step config is a JSON object of string values",
                dir.join(CONFIG).display()
            )
        })?,
        None => StepConfig::new(),
    };
    let context = match read_document(&dir.join(CONTEXT))? {
        Some(text) => serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected {{\"event\", \"timestamp\" (RFC 3339), \"tenant\", \"direction\" (partner-center-to-crm | crm-to-partner-center)}}, all optional",
                dir.join(CONTEXT).display()
            )
        })?,
        None => CaseContext::default(),
    };
    let output = read_document(&dir.join(EXPECTED))?;
    let error = read_document(&dir.join(EXPECTED_ERROR))?;
    let expected = match (output, error) {
        (Some(_), Some(_)) => bail!(
            "{}: has both {EXPECTED} and {EXPECTED_ERROR}; keep the one the step must produce",
            dir.display()
        ),
        (Some(text), None) => Some(Expected::Output(
            serde_json::from_str(&text).expect("checked by read_document"),
        )),
        (None, Some(text)) => Some(Expected::Error(serde_json::from_str(&text).with_context(
            || {
                format!(
                    "{}: expected {{\"kind\": \"reject\" | \"skip\" | \"fail\", \"message\": \"...\"}}",
                    dir.join(EXPECTED_ERROR).display()
                )
            },
        )?)),
        (None, None) => None,
    };
    Ok(FixtureCase {
        name,
        dir: dir.to_path_buf(),
        input,
        current,
        config,
        context,
        expected,
    })
}

/// Writes a case's expected file (`expected.json` or `expected-error.json`, pretty-printed)
/// and removes the other one.
pub fn write_expected(case_dir: &Path, expected: &Expected) -> Result<()> {
    let (write, remove) = match expected {
        Expected::Output(_) => (EXPECTED, EXPECTED_ERROR),
        Expected::Error(_) => (EXPECTED_ERROR, EXPECTED),
    };
    write_json(&case_dir.join(write), &expected.to_json())?;
    let stale = case_dir.join(remove);
    match std::fs::remove_file(&stale) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", stale.display()))
        }
        _ => Ok(()),
    }
}

/// Writes a JSON document pretty-printed with a final newline (the form fixtures are kept in).
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value always serialises");
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A file's text if it exists, checked to be JSON.
fn read_document(path: &Path) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    if let Err(err) = serde_json::from_str::<Value>(&text) {
        bail!("{} is not valid JSON: {err}", path.display());
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<FixtureCase>) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a-case");
        std::fs::create_dir(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let loaded = load_case(&dir);
        (root, loaded)
    }

    #[test]
    fn a_minimal_case_gets_the_default_context() {
        let (_root, loaded) = case(&[("input.json", "{}"), ("expected.json", "{\"a\": 1}")]);
        let loaded = loaded.unwrap();
        assert_eq!(loaded.name, "a-case");
        assert_eq!(loaded.context, CaseContext::default());
        assert_eq!(
            loaded.context.timestamp.to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            loaded.expected,
            Some(Expected::Output(serde_json::json!({"a": 1})))
        );
    }

    #[test]
    fn bad_cases_are_errors_naming_the_file() {
        for (files, needle) in [
            (
                vec![("input.json", "{"), ("expected.json", "{}")],
                "input.json is not valid JSON",
            ),
            (vec![("expected.json", "{}")], "input.json: missing"),
            (
                vec![("input.json", "{}"), ("notes.txt", "")],
                "notes.txt: unknown file",
            ),
            (
                vec![
                    ("input.json", "{}"),
                    ("expected.json", "{}"),
                    ("expected-error.json", "{}"),
                ],
                "has both",
            ),
            (
                vec![("input.json", "{}"), ("config.json", "{\"a\": 1}")],
                "config.json",
            ),
            (
                vec![
                    ("input.json", "{}"),
                    (
                        "expected-error.json",
                        "{\"kind\": \"oops\", \"message\": \"\"}",
                    ),
                ],
                "expected-error.json",
            ),
            (
                vec![("input.json", "{}"), ("context.json", "{\"evnt\": \"x\"}")],
                "context.json",
            ),
        ] {
            let (_root, loaded) = case(&files);
            let err = format!("{:#}", loaded.unwrap_err());
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }

    #[test]
    fn writing_one_expected_file_removes_the_other() {
        let (root, loaded) = case(&[("input.json", "{}"), ("expected.json", "{}")]);
        let dir = loaded.unwrap().dir;
        let refusal = Expected::Error(ExpectedError {
            kind: ErrorKind::Skip,
            message: "not now".into(),
        });
        write_expected(&dir, &refusal).unwrap();
        assert!(!dir.join("expected.json").exists());
        assert_eq!(load_case(&dir).unwrap().expected, Some(refusal));
        drop(root);
    }
}
