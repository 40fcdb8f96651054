//! `cosell mapping test --fixtures DIR [--update]` as a mapping author runs it: the default
//! components pass the repository's fixtures of their direction; a changed expected output or
//! refusal fails with exit code 1 and a diff naming the field; `--update` rewrites the
//! expected files from what the component did, after which the suite passes; broken fixtures
//! are clear errors naming the file.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{guest_path, repo_root};

const TO_CRM: &str = "partner-center-to-crm";
const TO_PC: &str = "crm-to-partner-center";

/// `cosell mapping test <wasm> --fixtures <dir> <extra...>`.
fn run_suite(wasm: &str, dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .env_remove("RUST_LOG")
        .args(["mapping", "test"])
        .arg(guest_path(wasm))
        .arg("--fixtures")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    (status.code(), stdout, stderr)
}

/// The repository's fixtures of `direction`.
fn repository_fixtures(direction: &str) -> PathBuf {
    repo_root().join("guest-mappings/fixtures").join(direction)
}

/// A copy of some of the repository's cases of `direction`, to change.
fn copy_cases(direction: &str, cases: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for case in cases {
        let from = repository_fixtures(direction).join(case);
        std::fs::create_dir(dir.path().join(case)).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(case).join(entry.file_name())).unwrap();
        }
    }
    dir
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

#[test]
fn the_default_components_pass_the_repository_fixtures() {
    for (wasm, direction) in [
        ("referral_to_opportunity.wasm", TO_CRM),
        ("opportunity_to_referral.wasm", TO_PC),
    ] {
        let cases = std::fs::read_dir(repository_fixtures(direction))
            .unwrap()
            .count();
        let (code, stdout, stderr) = run_suite(wasm, &repository_fixtures(direction), &[]);
        eprintln!("{stdout}");
        assert_eq!(code, Some(0), "{direction}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("{cases} passed, 0 failed")),
            "{stdout}"
        );
        // One line per case with what it cost.
        let pass_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("PASS")).collect();
        assert_eq!(pass_lines.len(), cases, "{stdout}");
        assert!(
            pass_lines
                .iter()
                .all(|l| l.contains("fuel") && l.contains("MiB") && l.contains("ms")),
            "{stdout}"
        );
    }
}

#[test]
fn a_changed_expected_output_fails_with_a_diff_naming_the_field() {
    let dir = copy_cases(TO_CRM, &["referral-lost", "referral-won"]);
    let expected = dir.path().join("referral-won/expected.json");
    let mut document = read_json(&expected);
    document["name"] = json!("A name the mapping does not write");
    write_json(&expected, &document);

    let (code, stdout, stderr) = run_suite("referral_to_opportunity.wasm", dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("PASS    referral-lost"), "{stdout}");
    assert!(stdout.contains("FAIL    referral-won"), "{stdout}");
    assert!(stdout.contains("changed: /name"), "{stdout}");
    assert!(
        stdout.contains("-  \"name\": \"A name the mapping does not write\""),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");

    // --json says the same for a machine.
    let (code, stdout, _) = run_suite("referral_to_opportunity.wasm", dir.path(), &["--json"]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["failed"], 1, "{report}");
    let won = &report["cases"][1];
    assert_eq!(won["name"], "referral-won");
    assert_eq!(won["status"], "fail");
    assert_eq!(won["changed"], json!(["/name"]));
}

#[test]
fn an_expected_error_is_compared_by_kind_and_message() {
    let dir = copy_cases(TO_PC, &["opportunity-sync-no"]);
    let (code, stdout, stderr) = run_suite("opportunity_to_referral.wasm", dir.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("PASS    opportunity-sync-no"), "{stdout}");

    let file = dir.path().join("opportunity-sync-no/expected-error.json");
    let original = read_json(&file);
    for (field, value) in [("message", "another message"), ("kind", "reject")] {
        let mut changed = original.clone();
        changed[field] = json!(value);
        write_json(&file, &changed);
        let (code, stdout, _) = run_suite("opportunity_to_referral.wasm", dir.path(), &[]);
        assert_eq!(code, Some(1), "{stdout}");
        assert!(
            stdout.contains("refused the record differently"),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("changed: /{field}")), "{stdout}");
    }
}

#[test]
fn update_rewrites_the_expected_files_and_then_passes() {
    let dir = copy_cases(
        TO_CRM,
        &["referral-accepted", "referral-lost", "referral-won"],
    );
    let path = |case: &str, file: &str| dir.path().join(case).join(file);
    let originals: Vec<Value> = ["referral-accepted", "referral-lost", "referral-won"]
        .iter()
        .map(|case| read_json(&path(case, "expected.json")))
        .collect();
    // A case without its expected file, one with a stale output, one expecting a refusal.
    std::fs::remove_file(path("referral-accepted", "expected.json")).unwrap();
    write_json(
        &path("referral-lost", "expected.json"),
        &json!({"stale": true}),
    );
    std::fs::remove_file(path("referral-won", "expected.json")).unwrap();
    write_json(
        &path("referral-won", "expected-error.json"),
        &json!({"kind": "skip", "message": "not any more"}),
    );

    let (code, stdout, _) = run_suite("referral_to_opportunity.wasm", dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("no expected.json or expected-error.json") && stdout.contains("--update"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 3 failed"), "{stdout}");

    let (code, stdout, stderr) =
        run_suite("referral_to_opportunity.wasm", dir.path(), &["--update"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.matches("UPDATED ").count(), 3, "{stdout}");
    assert!(stdout.contains("0 passed, 0 failed, 3 updated"), "{stdout}");
    for (case, original) in ["referral-accepted", "referral-lost", "referral-won"]
        .iter()
        .zip(&originals)
    {
        assert_eq!(&read_json(&path(case, "expected.json")), original, "{case}");
    }
    assert!(!path("referral-won", "expected-error.json").exists());

    let (code, stdout, _) = run_suite("referral_to_opportunity.wasm", dir.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
}

#[test]
fn broken_fixtures_are_clear_errors_naming_the_file() {
    let breakages: [(&str, &str, &str); 4] = [
        ("input.json", "{ not json", "input.json is not valid JSON"),
        (
            "notes.txt",
            "what this case is about",
            "notes.txt: unknown file",
        ),
        (
            "expected-error.json",
            "{\"kind\": \"skip\", \"message\": \"\"}",
            "has both expected.json and expected-error.json",
        ),
        (
            "config.json",
            "{\"column-prefix\": 3}",
            "config.json: a step config is a JSON object of string values",
        ),
    ];
    for (file, text, needle) in breakages {
        let dir = copy_cases(TO_CRM, &["referral-lost"]);
        std::fs::write(dir.path().join("referral-lost").join(file), text).unwrap();
        let (code, stdout, stderr) = run_suite("referral_to_opportunity.wasm", dir.path(), &[]);
        assert_eq!(code, Some(1), "{file}: {stdout}{stderr}");
        assert!(
            stderr.contains(needle),
            "{file}: {needle:?} not in {stderr}"
        );
        assert!(stderr.contains("referral-lost"), "{file}: {stderr}");
    }
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_suite("referral_to_opportunity.wasm", empty.path(), &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("has no cases"), "{stderr}");
}
