//! `cosell mapping new` as a mapping author uses it, end to end: the project it writes builds
//! with its one command (`./build.sh`), passes its own fixtures under `cosell mapping test
//! --fixtures`, and deploys into a running `cosell sandbox`, whose host then reports the new
//! version active (a Python or JavaScript `--from-default` step as a step after the default
//! mapping, `cosell sandbox --add-step`). One function per language and variant, all through
//! one helper. Also: the
//! command refuses bad names and non-empty directories.
//!
//! The builds fetch toolchains from package registries on their first run (componentize-py
//! from PyPI into the project's `.venv`), so these tests are in nextest's slow group.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::sandbox::Sandbox;

fn cosell(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosell"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The default step of the sandbox's pipeline for `direction`.
fn default_step(direction: &str) -> &'static str {
    match direction {
        "partner-center-to-crm" => "referral-to-opportunity",
        _ => "opportunity-to-referral",
    }
}

/// Where a project's step goes in the sandbox, and the sandbox arguments that put it there: a
/// Python or JavaScript `--from-default` step runs after the default mapping (a step the
/// sandbox adds with `--add-step`), every other project replaces the default step.
fn placement(lang: &str, direction: &str, from_default: bool, name: &str) -> (String, Vec<String>) {
    if from_default && lang != "rust" {
        (
            name.to_owned(),
            vec!["--add-step".to_owned(), format!("{direction}:{name}")],
        )
    } else {
        (default_step(direction).to_owned(), Vec::new())
    }
}

/// `cosell mapping new` → `./build.sh` → `cosell mapping test --fixtures` → deploy into a
/// running sandbox, which reports the version active. Prints the commands' output and the
/// build's duration.
async fn scaffold_builds_passes_its_fixtures_and_deploys(
    lang: &str,
    direction: &str,
    from_default: bool,
) {
    let work = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-step");
    let mut args = vec![
        "mapping",
        "new",
        &name,
        "--lang",
        lang,
        "--direction",
        direction,
    ];
    if from_default {
        args.push("--from-default");
    }
    let created = cosell(work.path(), &args);
    println!("$ cosell {}\n{}", args.join(" "), text(&created));
    assert!(created.status.success(), "{}", text(&created));
    let project = work.path().join(&name);
    for file in ["README.md", "build.sh", ".gitignore", "wit/mapping.wit"] {
        assert!(project.join(file).is_file(), "{file} missing");
    }
    assert!(std::fs::read_dir(project.join("fixtures")).unwrap().count() > 0);

    let started = Instant::now();
    let built = tokio::task::block_in_place(|| {
        Command::new("timeout")
            .args(["900", "./build.sh"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", support::shared_guest_target())
            .output()
            .unwrap()
    });
    println!(
        "$ ./build.sh ({:.1} s)\n{}",
        started.elapsed().as_secs_f64(),
        text(&built)
    );
    assert!(
        built.status.success(),
        "./build.sh failed:\n{}",
        text(&built)
    );
    let wasm = format!("dist/{}.wasm", name.replace('-', "_"));
    assert!(project.join(&wasm).is_file(), "{wasm} was not built");

    let test_args = [
        "mapping",
        "test",
        &wasm,
        "--fixtures",
        "fixtures",
        "--direction",
        direction,
    ];
    let tested = tokio::task::block_in_place(|| cosell(&project, &test_args));
    println!("$ cosell {}\n{}", test_args.join(" "), text(&tested));
    assert!(tested.status.success(), "{}", text(&tested));
    assert!(String::from_utf8_lossy(&tested.stdout).contains(" 0 failed"));

    let sandbox_dir = tempfile::tempdir().unwrap();
    let (step, sandbox_args) = placement(lang, direction, from_default, &name);
    let sandbox_args: Vec<&str> = sandbox_args.iter().map(String::as_str).collect();
    let sandbox = Sandbox::start(sandbox_dir.path(), &sandbox_args, Duration::from_secs(120)).await;
    let admin_url = sandbox.manifest["host"]["admin_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = sandbox.manifest["host"]["admin_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let step = step.as_str();
    let deployed = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_cosell"))
            .current_dir(&project)
            .env_remove("RUST_LOG")
            .env("COSELL_ADMIN_URL", &admin_url)
            .env("COSELL_ADMIN_TOKEN", &token)
            .args(["mapping", "deploy", step, &wasm])
            .output()
            .unwrap()
    });
    println!("$ cosell mapping deploy {step} {wasm}\n{}", text(&deployed));
    assert!(deployed.status.success(), "{}", text(&deployed));
    let answer: Value = serde_json::from_slice(&deployed.stdout).unwrap();
    let version = answer["version"]
        .as_str()
        .expect("the deploy answer names the version");

    let health: Value = reqwest::get(format!("{admin_url}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active = health["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {health}"));
    assert_eq!(active["active_version"], version, "{health}");
    drop(sandbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scaffold_builds_passes_its_fixtures_and_deploys() {
    scaffold_builds_passes_its_fixtures_and_deploys("python", "partner-center-to-crm", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_from_default_scaffold_builds_passes_its_fixtures_and_deploys() {
    scaffold_builds_passes_its_fixtures_and_deploys("python", "crm-to-partner-center", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_scaffold_builds_passes_its_fixtures_and_deploys() {
    scaffold_builds_passes_its_fixtures_and_deploys("rust", "partner-center-to-crm", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_from_default_scaffold_builds_passes_its_fixtures_and_deploys() {
    scaffold_builds_passes_its_fixtures_and_deploys("rust", "partner-center-to-crm", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_scaffold_builds_passes_its_fixtures_and_deploys() {
    scaffold_builds_passes_its_fixtures_and_deploys("js", "partner-center-to-crm", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_from_default_scaffold_builds_passes_its_fixtures_and_deploys() {
    scaffold_builds_passes_its_fixtures_and_deploys("js", "partner-center-to-crm", true).await;
}

#[test]
fn mapping_new_refuses_bad_names_and_non_empty_directories() {
    let work = tempfile::tempdir().unwrap();
    let new = |extra: &[&str]| {
        let mut args = vec!["mapping", "new"];
        args.extend_from_slice(extra);
        args.extend(["--lang", "python", "--direction", "partner-center-to-crm"]);
        cosell(work.path(), &args)
    };
    for bad in ["Deal", "deal_tiers", "2deals", "deal-", "../deal"] {
        let out = new(&[bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(
            text(&out).contains("is not a valid mapping name"),
            "{}",
            text(&out)
        );
    }
    assert!(!work.path().join("deal").exists());

    let occupied = work.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("app.py"), "# my own work\n").unwrap();
    let out = new(&["deal-tiers", "--dir", "occupied"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("exists and is not empty"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(occupied.join("app.py")).unwrap(),
        "# my own work\n"
    );

    let out = new(&["deal-tiers", "--dir", "occupied", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let app = std::fs::read_to_string(occupied.join("app.py")).unwrap();
    assert!(app.contains("deal-tiers"), "placeholders replaced: {app}");
    assert!(!app.contains("{{"), "{app}");
    let output = String::from_utf8_lossy(&out.stdout);
    assert!(output.contains("./build.sh"), "{output}");
    assert!(
        output.contains("cosell mapping test dist/deal_tiers.wasm --fixtures fixtures"),
        "{output}"
    );
}

#[test]
fn from_default_python_fixtures_start_from_the_default_mappings_outputs() {
    let work = tempfile::tempdir().unwrap();
    let out = cosell(
        work.path(),
        &[
            "mapping",
            "new",
            "after-default",
            "--lang",
            "python",
            "--direction",
            "partner-center-to-crm",
            "--from-default",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let fixtures = work.path().join("after-default/fixtures");
    let repository = support::repo_root().join("guest-mappings/fixtures/partner-center-to-crm");
    let read = |path: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    // Every case the default mapping maps (none refuses in this direction) is there, its input
    // the default's output, expected unchanged; the template's own hand-written cases are not.
    let mut cases = 0;
    for entry in std::fs::read_dir(&repository).unwrap() {
        let case = entry.unwrap().file_name();
        let default_output = read(&repository.join(&case).join("expected.json"));
        assert_eq!(
            read(&fixtures.join(&case).join("input.json")),
            default_output
        );
        assert_eq!(
            read(&fixtures.join(&case).join("expected.json")),
            default_output
        );
        assert!(!fixtures.join(&case).join("config.json").exists());
        cases += 1;
    }
    assert_eq!(std::fs::read_dir(&fixtures).unwrap().count(), cases);
    assert!(!fixtures.join("new-referral").exists());
}
