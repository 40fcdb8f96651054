//! Maps every case of `fixtures/cases.json` and compares the result with its expected file.
//! Regenerate deliberately with `UPDATE_EXPECTED=1` (see `fixtures/README.md`).

mod common;

use std::collections::BTreeMap;

use common::{check_expected, fixture, fixture_json, fixtures_dir};
use mapping_rules::{Context, Direction, MappingError};
use serde_json::{Value, json};

struct Case {
    name: String,
    ctx: Context,
    input: String,
    current: Option<String>,
    config: BTreeMap<String, String>,
    expected: String,
}

fn cases() -> Vec<Case> {
    let manifest = fixture_json("cases.json");
    let base = &manifest["context"];
    let text = |v: &Value, key: &str| -> String {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("cases.json: \"{key}\" missing in {v}"))
            .to_owned()
    };
    let cases = manifest["cases"].as_array().expect("cases.json: cases[]");
    cases
        .iter()
        .map(|c| {
            let direction = match text(c, "direction").as_str() {
                "partner-center-to-crm" => Direction::PartnerCenterToCrm,
                "crm-to-partner-center" => Direction::CrmToPartnerCenter,
                other => panic!("cases.json: unknown direction {other}"),
            };
            let config = c["config"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().expect("config values are strings").into(),
                    )
                })
                .collect();
            Case {
                name: text(c, "name"),
                ctx: Context {
                    direction,
                    event: text(c, "event"),
                    tenant: text(base, "tenant"),
                    mapping_name: text(c, "mapping_name"),
                    mapping_version: text(base, "mapping_version"),
                    timestamp: text(base, "timestamp"),
                },
                input: fixture(&text(c, "input")),
                current: c["current"].as_str().map(fixture),
                config,
                expected: text(c, "expected"),
            }
        })
        .collect()
}

fn run(case: &Case) -> Result<String, MappingError> {
    let current = case.current.as_deref();
    match case.ctx.direction {
        Direction::PartnerCenterToCrm => {
            mapping_rules::referral_to_opportunity(&case.ctx, &case.input, current, &case.config)
        }
        Direction::CrmToPartnerCenter => {
            mapping_rules::opportunity_to_referral(&case.ctx, &case.input, current, &case.config)
        }
    }
}

/// An error outcome as recorded in `expected/<name>.err.json`:
/// `{"error": {"kind": "reject"|"skip"|"fail", "message": "..."}}`.
fn error_json(e: &MappingError) -> Value {
    let (kind, message) = match e {
        MappingError::Reject(m) => ("reject", m),
        MappingError::Skip(m) => ("skip", m),
        MappingError::Fail(m) => ("fail", m),
    };
    json!({ "error": { "kind": kind, "message": message } })
}

#[test]
fn every_case_matches_its_expected_file() {
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 12, "cases.json lost cases: {}", cases.len());
    for case in &cases {
        let actual = match (run(case), case.expected.ends_with(".err.json")) {
            (Ok(text), false) => serde_json::from_str(&text).expect("output is JSON"),
            (Err(e), true) => error_json(&e),
            (Ok(text), true) => {
                failures.push(format!("{}: expected an error, got {text}", case.name));
                continue;
            }
            (Err(e), false) => {
                failures.push(format!("{}: expected output, got {e:?}", case.name));
                continue;
            }
        };
        if let Some(failure) = check_expected(&case.expected, &actual) {
            failures.push(format!("{}: {failure}", case.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn outputs_are_byte_for_byte_deterministic() {
    for case in cases() {
        let first = run(&case);
        for _ in 0..3 {
            assert_eq!(run(&case), first, "{} is not deterministic", case.name);
        }
    }
}

#[test]
fn every_input_fixture_is_used_by_a_case() {
    let manifest = fixture_json("cases.json");
    let used: Vec<&str> = manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| [c["input"].as_str(), c["current"].as_str()])
        .flatten()
        .collect();
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") && name != "cases.json" {
            assert!(
                used.contains(&name.as_str()),
                "{name} is not used by cases.json"
            );
        }
    }
}

#[test]
fn validation_samples_are_benchmark_sized() {
    for name in ["referral-sample.json", "opportunity-sample.json"] {
        let len = fixture(name).len();
        assert!(
            (2048..=4096).contains(&len),
            "{name} is {len} bytes, not 2–4 KB"
        );
    }
}
