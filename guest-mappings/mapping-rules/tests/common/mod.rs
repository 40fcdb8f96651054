//! Helpers shared by the integration tests: the fixed context, configurations, fixture files
//! and the expected-file comparison (with deliberate regeneration via `UPDATE_EXPECTED=1`).
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeMap;
use std::path::PathBuf;

use mapping_rules::{Context, Direction, MappingError};
use serde_json::Value;

/// The fixed timestamp every test and expected file uses.
pub const TIMESTAMP: &str = "2026-11-24T12:00:00Z";

/// The fixtures directory (`guest-mappings/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The text of a fixture file, relative to the fixtures directory.
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A fixture parsed as JSON.
pub fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("parsing {name}: {e}"))
}

/// The fixed test context for a direction and event.
pub fn ctx(direction: Direction, event: &str) -> Context {
    let mapping_name = match direction {
        Direction::PartnerCenterToCrm => "referral-to-opportunity",
        Direction::CrmToPartnerCenter => "opportunity-to-referral",
    };
    Context {
        direction,
        event: event.to_owned(),
        tenant: "contoso-partner".to_owned(),
        mapping_name: mapping_name.to_owned(),
        mapping_version: "sha256:test".to_owned(),
        timestamp: TIMESTAMP.to_owned(),
    }
}

/// The PC → CRM context for `event`.
pub fn to_crm(event: &str) -> Context {
    ctx(Direction::PartnerCenterToCrm, event)
}

/// The CRM → PC context for `event`.
pub fn to_pc(event: &str) -> Context {
    ctx(Direction::CrmToPartnerCenter, event)
}

/// A configuration from key/value pairs (empty = all defaults).
pub fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Parses a mapping output, failing the test on an error or invalid JSON.
pub fn ok_json(result: Result<String, MappingError>) -> Value {
    let text = result.unwrap_or_else(|e| panic!("mapping failed: {e:?}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("output is not JSON ({e}): {text}"))
}

/// The message of a `Reject`, failing the test on anything else.
pub fn rejected(result: Result<String, MappingError>) -> String {
    match result {
        Err(MappingError::Reject(msg)) => msg,
        other => panic!("expected Reject, got {other:?}"),
    }
}

/// Runs `opportunity_to_referral` (event `opportunity-updated`, no current) with `cfg`.
pub fn to_referral(o: &Value, cfg: &[(&str, &str)]) -> Result<String, MappingError> {
    let ctx = to_pc("opportunity-updated");
    mapping_rules::opportunity_to_referral(&ctx, &o.to_string(), None, &config(cfg))
}

/// Runs `referral_to_opportunity` (event `referral-updated`) with `current` and `cfg`.
pub fn to_opportunity(
    r: &Value,
    current: Option<&Value>,
    cfg: &[(&str, &str)],
) -> Result<String, MappingError> {
    let cur = current.map(Value::to_string);
    let ctx = to_crm("referral-updated");
    mapping_rules::referral_to_opportunity(&ctx, &r.to_string(), cur.as_deref(), &config(cfg))
}

/// The message of a `Skip`, failing the test on anything else.
pub fn skipped(result: Result<String, MappingError>) -> String {
    match result {
        Err(MappingError::Skip(msg)) => msg,
        other => panic!("expected Skip, got {other:?}"),
    }
}

/// The message of a `Fail`, failing the test on anything else.
pub fn failed(result: Result<String, MappingError>) -> String {
    match result {
        Err(MappingError::Fail(msg)) => msg,
        other => panic!("expected Fail, got {other:?}"),
    }
}

/// Whether expected files should be rewritten (only when `UPDATE_EXPECTED=1`).
pub fn updating() -> bool {
    std::env::var("UPDATE_EXPECTED").is_ok_and(|v| v == "1")
}

/// Compares `actual` with the expected file (as JSON values). With `UPDATE_EXPECTED=1` the
/// file is rewritten instead and the test reports it. Returns a failure description.
pub fn check_expected(relative: &str, actual: &Value) -> Option<String> {
    let path = fixtures_dir().join(relative);
    let pretty = serde_json::to_string_pretty(actual).expect("serialisable") + "\n";
    if updating() {
        std::fs::write(&path, &pretty).unwrap_or_else(|e| panic!("writing {relative}: {e}"));
        eprintln!("UPDATE_EXPECTED=1: rewrote {relative}");
        return None;
    }
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Some(format!(
            "{relative} is missing; review the output and create it with UPDATE_EXPECTED=1:\n{pretty}"
        ));
    };
    let expected: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Some(format!("{relative} is not valid JSON: {e}")),
    };
    if &expected == actual {
        return None;
    }
    let want = serde_json::to_string_pretty(&expected).expect("serialisable") + "\n";
    Some(format!(
        "{relative} differs from the mapping output\n{}\n(rerun with UPDATE_EXPECTED=1 only if the change is intended)",
        line_diff(&want, &pretty)
    ))
}

/// A minimal line diff: `-` expected, `+` actual, with two lines of context.
fn line_diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    // Longest common subsequence table (files are small).
    let mut lcs = vec![vec![0usize; a.len() + 1]; e.len() + 1];
    for i in (0..e.len()).rev() {
        for j in (0..a.len()).rev() {
            lcs[i][j] = if e[i] == a[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < e.len() || j < a.len() {
        if i < e.len() && j < a.len() && e[i] == a[j] {
            ops.push((' ', e[i]));
            i += 1;
            j += 1;
        } else if i < e.len() && (j == a.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', e[i]));
            i += 1;
        } else {
            ops.push(('+', a[j]));
            j += 1;
        }
    }
    let near = |k: usize| {
        let lo = k.saturating_sub(2);
        ops[lo..(k + 3).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut out = String::from("--- expected\n+++ actual\n");
    let mut skipped = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if near(k) {
            out.push_str(&format!("{c} {line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("  ...\n");
            skipped = true;
        }
    }
    out
}
