//! The `cosell` binary as an operator and a mapping author use it: `mapping test`, `serve`,
//! `mapping deploy | list | rollback | pin | unpin`, retention of stored versions, and a
//! restart (even after SIGKILL) that keeps the deployed versions and loads them from the
//! artifact cache. The restart and retention tests run with the state in SQLite and in
//! PostgreSQL.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::backend::{Backend, TestState, on_both_backends};
use support::{TOKEN, fixture, guest, guest_path, repo_root, with_custom_section};

fn cosell() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cosell"));
    command
        .env_remove("RUST_LOG")
        .env("COSELL_ADMIN_TOKEN", TOKEN);
    command
}

#[test]
fn mapping_test_prints_the_output_and_the_costs() {
    let sample = repo_root()
        .join("guest-mappings/fixtures/partner-center-to-crm/referral-sample/input.json");
    let output = cosell()
        .args(["mapping", "test"])
        .arg(guest_path("referral_to_opportunity.wasm"))
        .arg("--input")
        .arg(&sample)
        .args([
            "--event",
            "referral-created",
            "--timestamp",
            "2026-11-24T12:00:00Z",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let mapped: Value = serde_json::from_slice(&output.stdout).expect("stdout is the output JSON");
    assert!(mapped.is_object());
    for needle in [
        "fuel used:",
        "peak memory:",
        "time:",
        "component:   sha256:",
    ] {
        assert!(stderr.contains(needle), "stderr lacks {needle}: {stderr}");
    }
    let _ = fixture("partner-center-to-crm/referral-sample/input.json");
}

#[test]
fn mapping_test_exits_non_zero_with_the_guest_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    std::fs::write(&input, r#"{"reject":"customer has no country"}"#).unwrap();
    let output = cosell()
        .args(["mapping", "test"])
        .arg(guest_path("testing/version_stamp.wasm"))
        .arg("--input")
        .arg(&input)
        .args(["--config", "k=v"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rejected the record: customer has no country"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = cosell()
        .args(["mapping", "test"])
        .arg(guest_path("testing/panics.wasm"))
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("deliberate panic in map"), "{stderr}");

    std::fs::write(&input, "not json").unwrap();
    let output = cosell()
        .args(["mapping", "test"])
        .arg(guest_path("testing/version_stamp.wasm"))
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not valid JSON"));
}

on_both_backends!(
    blocking a_restart_keeps_the_deployed_and_rolled_back_versions,
    retention_deletes_old_versions_but_never_the_active_or_a_pinned_one,
);

/// A `cosell serve` child process and the admin URL it printed.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &Path) -> Served {
    let mut child = cosell()
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("admin API on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("cosell serve did not start within 60 s");
    Served { child, url }
}

fn admin(served: &Served, args: &[&str]) -> (i32, Value) {
    let output = cosell()
        .args(["mapping"])
        .args(args)
        .args(["--admin-url", &served.url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let body = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    (output.status.code().unwrap(), body)
}

fn active(served: &Served) -> String {
    let (code, body) = admin(served, &["list"]);
    assert_eq!(code, 0);
    body["steps"][0]["active_version"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn a_restart_keeps_the_deployed_and_rolled_back_versions(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    let config = dir.path().join("cosell.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n{}\
             [[pipelines.partner-center-to-crm]]\nstep = \"pc-to-crm\"\ncomponent = \"{}\"\n",
            state.toml("state/cosell.db"),
            guest_path("testing/version_stamp.wasm").display()
        ),
    )
    .unwrap();
    let v2_file = dir.path().join("v2.wasm");
    std::fs::write(
        &v2_file,
        with_custom_section(&guest("testing/version_stamp.wasm"), "v", b"2"),
    )
    .unwrap();

    let host = serve(&config);
    let v1 = active(&host);
    let (code, report) = admin(&host, &["deploy", "pc-to-crm", v2_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    let v2 = report["version"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    let (code, _) = admin(
        &host,
        &[
            "deploy",
            "pc-to-crm",
            guest_path("testing/memory_bomb.wasm").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "a memory bomb must be refused");
    drop(host); // SIGKILL: no graceful shutdown

    let host = serve(&config);
    assert_eq!(active(&host), v2, "the restart lost the deployed version");
    let (code, versions) = admin(&host, &["list", "pc-to-crm"]);
    assert_eq!(code, 0);
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    let prefix = &v1[..15];
    let (code, report) = admin(&host, &["rollback", "pc-to-crm", "--to", prefix]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["version"], v1.as_str());
    drop(host);

    let host = serve(&config);
    assert_eq!(active(&host), v1, "the restart lost the rollback");
    let health: Value = reqwest_blocking_get(&format!("{}/healthz", host.url));
    assert_eq!(health["status"], "ok");
}

/// The stored versions of `step` as `(version, pinned)`, newest upload first.
fn stored(served: &Served, step: &str) -> Vec<(String, bool)> {
    let (code, body) = admin(served, &["list", step]);
    assert_eq!(code, 0, "{body}");
    body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_owned(),
                v["pinned"] == true,
            )
        })
        .collect()
}

/// Waits (at most 60 s) until the stored versions of `step` are `expected`.
fn wait_for_versions(served: &Served, step: &str, expected: &[(String, bool)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = stored(served, step);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stored versions {now:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn retention_deletes_old_versions_but_never_the_active_or_a_pinned_one(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    let config = dir.path().join("cosell.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n{}\
             [retention]\ninterval_secs = 1\nmapping_versions = 1\n\
             [[pipelines.partner-center-to-crm]]\nstep = \"pc-to-crm\"\ncomponent = \"{}\"\n",
            state.toml("state/cosell.db"),
            guest_path("testing/version_stamp.wasm").display()
        ),
    )
    .unwrap();
    let host = serve(&config);
    let v1 = active(&host);
    let (code, body) = admin(&host, &["pin", "pc-to-crm", &v1[..15]]);
    assert_eq!(code, 0, "{body}");
    assert_eq!(body["version"], v1.as_str(), "the prefix names the version");
    let mut deployed = Vec::new();
    for n in 2..=4 {
        let file = dir.path().join(format!("v{n}.wasm"));
        let stamped = with_custom_section(&guest("testing/version_stamp.wasm"), "v", &[b'0' + n]);
        std::fs::write(&file, stamped).unwrap();
        let (code, report) = admin(&host, &["deploy", "pc-to-crm", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{report}");
        deployed.push(report["version"].as_str().unwrap().to_owned());
    }
    let v4 = deployed[2].clone();
    // v2 and v3 go; v4 is active (and the one most recent), v1 is pinned.
    wait_for_versions(
        &host,
        "pc-to-crm",
        &[(v4.clone(), false), (v1.clone(), true)],
    );
    let metrics = reqwest_blocking_get_text(&format!("{}/metrics", host.url));
    let pruned = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cosell_retention_pruned_total{what=\"mapping_versions\"} "))
        .map(|n| n.trim().parse::<u64>().unwrap());
    assert_eq!(pruned, Some(2), "{metrics}");
    // A pruned version is gone for good: rolling back to it says so.
    let (code, _) = admin(&host, &["rollback", "pc-to-crm", "--to", &deployed[0]]);
    assert_eq!(code, 1, "v2 was deleted");
    // The pinned one is still there to roll back to.
    let (code, report) = admin(&host, &["rollback", "pc-to-crm", "--to", &v1]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(active(&host), v1);
    // Unpinned, and no longer active or the most recent: it goes too... once another is active.
    let (code, body) = admin(&host, &["unpin", "pc-to-crm", &v1]);
    assert_eq!(
        (code, &body["was_pinned"]),
        (0, &Value::Bool(true)),
        "{body}"
    );
    let (code, _) = admin(&host, &["rollback", "pc-to-crm", "--to", &v4]);
    assert_eq!(code, 0);
    wait_for_versions(&host, "pc-to-crm", &[(v4, false)]);
    let (code, _) = admin(&host, &["pin", "pc-to-crm", &v1]);
    assert_eq!(code, 1, "an unknown version cannot be pinned");
}

fn reqwest_blocking_get(url: &str) -> Value {
    serde_json::from_str(&reqwest_blocking_get_text(url)).unwrap()
}

fn reqwest_blocking_get_text(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

/// The `cosell_component_cache_total` counts of a running host, as `(hit, miss, error)`.
fn component_cache_counts(served: &Served) -> (u64, u64, u64) {
    let text = reqwest_blocking_get_text(&format!("{}/metrics", served.url));
    let count = |result: &str| {
        let prefix = format!("cosell_component_cache_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    (count("hit"), count("miss"), count("error"))
}

#[test]
fn a_restarted_host_loads_its_versions_from_the_artifact_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cosell.toml");
    let write_config = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "[admin]\nlisten = \"127.0.0.1:0\"\n[state]\npath = \"state/cosell.db\"\n{extra}\n\
                 [[pipelines.partner-center-to-crm]]\nstep = \"pc-to-crm\"\ncomponent = \"{}\"\n",
                guest_path("testing/version_stamp.wasm").display()
            ),
        )
        .unwrap()
    };
    write_config("");

    let host = serve(&config);
    let version = active(&host);
    assert_eq!(component_cache_counts(&host), (0, 1, 0), "first start");
    drop(host);
    let cache_dir = dir.path().join("state/compiled");
    let entries = std::fs::read_dir(&cache_dir)
        .expect("no compiled/ beside the state database")
        .count();
    assert_eq!(entries, 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "the cache directory is not its owner's only"
        );
    }

    let host = serve(&config);
    assert_eq!(
        component_cache_counts(&host),
        (1, 0, 0),
        "the restart compiled again"
    );
    assert_eq!(active(&host), version);
    drop(host);

    // Disabled: nothing is looked up or counted, and the host still serves.
    write_config("[artifact_cache]\nenabled = false");
    let host = serve(&config);
    assert_eq!(component_cache_counts(&host), (0, 0, 0));
    assert_eq!(active(&host), version);
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["mapping", "--help"],
        vec!["mapping", "test", "--help"],
        vec!["mapping", "new", "--help"],
        vec!["mapping", "deploy", "--help"],
        vec!["mapping", "list", "--help"],
        vec!["mapping", "rollback", "--help"],
        vec!["config", "--help"],
        vec!["config", "check", "--help"],
        vec!["queue", "--help"],
    ] {
        let output = cosell().args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}

#[test]
fn without_room_for_the_instance_pool_the_host_falls_back_to_on_demand_allocation() {
    let sample = repo_root()
        .join("guest-mappings/fixtures/partner-center-to-crm/referral-sample/input.json");
    let run = |limit: Option<&str>| {
        let mut shell = Command::new("bash");
        let ulimit = limit
            .map(|kib| format!("ulimit -v {kib}; "))
            .unwrap_or_default();
        shell
            .arg("-c")
            .arg(format!(
                "{ulimit}exec \"$0\" mapping test \"$1\" --input \"$2\" --timestamp 2026-11-24T12:00:00Z"
            ))
            .arg(env!("CARGO_BIN_EXE_cosell"))
            .arg(guest_path("referral_to_opportunity.wasm"))
            .arg(&sample);
        shell.output().unwrap()
    };
    let roomy = run(None);
    assert!(roomy.status.success());
    assert!(String::from_utf8_lossy(&roomy.stderr).contains("allocator:   Pooling"));
    // 16 GiB of address space: far less than the pool reserves, enough for one instance.
    let tight = run(Some("16777216"));
    let stderr = String::from_utf8_lossy(&tight.stderr);
    assert!(tight.status.success(), "{stderr}");
    assert!(stderr.contains("allocator:   OnDemand"), "{stderr}");
    assert_eq!(
        tight.stdout, roomy.stdout,
        "the allocator changed the mapping's output"
    );
}
