//! Maps every case of `fixtures/<direction>/<case>/` and compares the result with its expected
//! file (the format `cosell mapping test --fixtures` runs on the built components).
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
    /// The expected file, relative to the fixtures directory.
    expected: String,
}

/// The two directions' case directories: `<direction>/<case>/` (the format `cosell mapping test
/// --fixtures` runs; see `fixtures/README.md`).
const DIRECTIONS: [(&str, Direction, &str); 2] = [
    (
        "partner-center-to-crm",
        Direction::PartnerCenterToCrm,
        "referral-to-opportunity",
    ),
    (
        "crm-to-partner-center",
        Direction::CrmToPartnerCenter,
        "opportunity-to-referral",
    ),
];

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (folder, direction, mapping_name) in DIRECTIONS {
        let mut names: Vec<String> = std::fs::read_dir(fixtures_dir().join(folder))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for name in names {
            let case = format!("{folder}/{name}");
            let file = |f: &str| fixtures_dir().join(&case).join(f);
            let context = fixture_json(&format!("{case}/context.json"));
            let text = |key: &str| -> String {
                context[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{case}/context.json: \"{key}\" missing"))
                    .to_owned()
            };
            assert_eq!(text("direction"), folder, "{case}/context.json: direction");
            let config = if file("config.json").exists() {
                serde_json::from_value(fixture_json(&format!("{case}/config.json")))
                    .expect("config values are strings")
            } else {
                BTreeMap::new()
            };
            let expected = if file("expected-error.json").exists() {
                format!("{case}/expected-error.json")
            } else {
                format!("{case}/expected.json")
            };
            cases.push(Case {
                ctx: Context {
                    direction,
                    event: text("event"),
                    tenant: text("tenant"),
                    mapping_name: mapping_name.to_owned(),
                    mapping_version: "sha256:test".to_owned(),
                    timestamp: text("timestamp"),
                },
                input: fixture(&format!("{case}/input.json")),
                current: file("current.json")
                    .exists()
                    .then(|| fixture(&format!("{case}/current.json"))),
                config,
                expected,
                name: case,
            });
        }
    }
    cases
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

/// An error outcome as recorded in `expected-error.json`:
/// `{"kind": "reject"|"skip"|"fail", "message": "..."}`.
fn error_json(e: &MappingError) -> Value {
    let (kind, message) = match e {
        MappingError::Reject(m) => ("reject", m),
        MappingError::Skip(m) => ("skip", m),
        MappingError::Fail(m) => ("fail", m),
    };
    json!({ "kind": kind, "message": message })
}

#[test]
fn every_case_matches_its_expected_file() {
    let mut failures = Vec::new();
    let cases = cases();
    assert!(
        cases.len() >= 12,
        "the fixtures lost cases: {}",
        cases.len()
    );
    for case in &cases {
        let actual = match (run(case), case.expected.ends_with("expected-error.json")) {
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
fn validation_samples_are_benchmark_sized() {
    for name in [
        "partner-center-to-crm/referral-sample/input.json",
        "crm-to-partner-center/opportunity-sample/input.json",
    ] {
        let len = fixture(name).len();
        assert!(
            (2048..=4096).contains(&len),
            "{name} is {len} bytes, not 2–4 KB"
        );
    }
}
