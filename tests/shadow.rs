//! Shadow deploys and replays through a running host syncing the emulators: a shadow runs
//! beside the active version on live records and is reported, never written; promote makes
//! it active, discard ends it; a record's last run replays through the active version or a
//! candidate. Each test runs on SQLite and on PostgreSQL.

mod support;

use serde_json::{Value, json};
use std::process::Command;
use support::backend::{Backend, on_both_backends};
use support::sync_env::{SETTLE, SyncEnv, wait_until};
use support::{TOKEN, guest_path};

const STEP: &str = "referral-to-opportunity";

on_both_backends!(
    a_shadow_that_changes_a_field_is_reported_while_records_are_written_as_the_active_version_maps_them,
    a_shadow_that_traps_counts_failures_the_records_still_sync_and_discard_ends_it,
);

/// Runs `cosell` against the environment's admin API; answers (exit code, stdout, stderr).
fn cosell(env: &SyncEnv, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .args(args)
        .args(["--admin-url", &env.admin_url])
        .env("COSELL_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("cosell runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A referral Microsoft sends the partner; answers its id.
fn incoming_referral(env: &SyncEnv, name: &str) -> String {
    let referral = env.pc.microsoft().create_incoming(json!({
        "name": name,
        "customerProfile": {"name": "Adatum Corporation", "address": {"postalCode": "98052", "country": "US"}},
        "details": {"dealValue": 48000, "currency": "USD"}
    }));
    referral["id"].as_str().unwrap().to_owned()
}

/// The opportunity synced from referral `rid`, once its run has finished. The worker keeps the
/// pipeline run for replays and writes the audit line together, after the writes, so the
/// opportunity shows in Dataverse a moment before the run can be replayed.
async fn synced_opportunity(env: &SyncEnv, rid: &str) -> Value {
    let opportunity = wait_until(SETTLE, || async {
        env.opportunities_for_referral(rid).await.into_iter().next()
    })
    .await
    .unwrap_or_else(|| panic!("no opportunity for {rid}\n{}", env.host_log()));
    wait_until(SETTLE, || async {
        let audit = env
            .admin_get(&format!("/admin/v1/audit?record=referral:{rid}"))
            .await;
        (audit["audit"]
            .as_array()
            .is_some_and(|lines| !lines.is_empty()))
        .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the run for {rid} never settled\n{}", env.host_log()));
    opportunity
}

/// The shadow report once `done` holds for it.
async fn shadow_report_when(env: &SyncEnv, done: impl Fn(&Value) -> bool) -> Value {
    wait_until(SETTLE, || async {
        let answer = env
            .admin_get(&format!("/admin/v1/steps/{STEP}/shadow"))
            .await;
        done(&answer["report"]).then_some(answer["report"].clone())
    })
    .await
    .unwrap_or_else(|| panic!("the shadow report never got there\n{}", env.host_log()))
}

fn name_of(opportunity: &Value) -> String {
    opportunity["name"]
        .as_str()
        .unwrap()
        .trim_end_matches(" ✔")
        .to_owned()
}

async fn a_shadow_that_changes_a_field_is_reported_while_records_are_written_as_the_active_version_maps_them(
    backend: Backend,
) {
    SyncEnv::run_on(backend, "", |env| async move {
        let active = env.admin_get("/admin/v1/steps").await["steps"][0]["active_version"].clone();
        let candidate = guest_path("testing/renamed_referral_to_opportunity.wasm");
        let (code, out, err) = cosell(
            &env,
            &[
                "mapping",
                "deploy",
                STEP,
                candidate.to_str().unwrap(),
                "--shadow",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        println!(
            "$ cosell mapping deploy {STEP} renamed_referral_to_opportunity.wasm --shadow\n{out}"
        );
        let deployed: Value = serde_json::from_str(&out).unwrap();
        let shadow_version = deployed["shadow"].as_str().unwrap().to_owned();
        assert_eq!(
            deployed["active"], active,
            "the active version keeps serving"
        );

        // Written exactly as the active version maps it.
        let rid = incoming_referral(&env, "Adatum data platform");
        let opp = synced_opportunity(&env, &rid).await;
        assert_eq!(name_of(&opp), "Adatum data platform");
        let report = shadow_report_when(&env, |r| r["different"].as_u64() >= Some(1)).await;
        assert_eq!(report["version"], shadow_version.as_str());
        let example = &report["different_examples"][0];
        assert_eq!(example["record"], format!("referral:{rid}"));
        assert_eq!(example["changed"], json!(["/name"]), "{report}");
        assert!(
            example["diff"]
                .as_str()
                .unwrap()
                .contains("[v2] Adatum data platform"),
            "{report}"
        );
        let (code, text, err) = cosell(&env, &["mapping", "shadow", STEP]);
        assert_eq!(code, 0, "{err}");
        println!("$ cosell mapping shadow {STEP}\n{text}");
        assert!(
            text.contains(&format!("referral:{rid}  changed: /name")),
            "{text}"
        );
        let metrics = reqwest::get(format!("{}/metrics", env.admin_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!(
                "cosell_shadow_calls_total{{step=\"{STEP}\",outcome=\"different\"}}"
            ))),
            "{metrics}"
        );
        let opp = env
            .opportunity(opp["opportunityid"].as_str().unwrap())
            .await;
        assert_eq!(
            name_of(&opp),
            "Adatum data platform",
            "nothing the shadow produced was written"
        );

        // Replay: the active version gives what was written; the candidate differs at /name.
        let record = format!("referral:{rid}");
        let (code, out, err) = cosell(&env, &["mapping", "replay", &record]);
        println!("$ cosell mapping replay {record}\n{out}{err}");
        assert_eq!(code, 0, "{out}{err}");
        assert!(err.contains("no difference"), "{err}");
        let (code, out, err) = cosell(
            &env,
            &[
                "mapping",
                "replay",
                &rid,
                "--wasm",
                candidate.to_str().unwrap(),
            ],
        );
        println!(
            "$ cosell mapping replay {rid} --wasm renamed_referral_to_opportunity.wasm\n{out}{err}"
        );
        assert_eq!(code, 2, "a difference exits 2: {out}{err}");
        assert!(out.contains("[v2] Adatum data platform"), "{out}");
        assert!(
            err.contains("+  \"name\": \"[v2] Adatum data platform\""),
            "{err}"
        );
        let (_, out, _) = cosell(
            &env,
            &[
                "mapping",
                "replay",
                &record,
                "--wasm",
                candidate.to_str().unwrap(),
                "--json",
            ],
        );
        let answer: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(answer["diff"]["changed"], json!(["/name"]), "{answer}");
        assert_eq!(answer["candidate"]["step"], STEP);

        // The step's config, changed without a restart (the default mapping reads `audit-max-lines`).
        let (code, out, err) = cosell(&env, &["mapping", "config", STEP]);
        println!("$ cosell mapping config {STEP}\n{out}");
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("config revision 1 (config-file"), "{out}");
        let (code, out, err) = cosell(
            &env,
            &["mapping", "config", STEP, "--set", "audit-max-lines=5"],
        );
        println!("$ cosell mapping config {STEP} --set audit-max-lines=5\n{out}");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("config revision 2 (admin-api by ") && out.contains("audit-max-lines = 5"),
            "{out}"
        );
        let (code, _, err) = cosell(
            &env,
            &[
                "mapping",
                "config",
                STEP,
                "--set",
                "column-prefix=not a prefix!",
            ],
        );
        assert_eq!(code, 1, "a config the sample fails on is refused");
        assert!(err.contains("column-prefix"), "{err}");
        let (code, out, err) = cosell(&env, &["mapping", "config", STEP, "--history"]);
        println!("$ cosell mapping config {STEP} --history\n{out}");
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("revision 2 "), "{out}");
        let (code, out, err) = cosell(&env, &["mapping", "config", STEP, "--revert-to", "1"]);
        println!("$ cosell mapping config {STEP} --revert-to 1\n{out}");
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("config revision 3 (revert-to 1"), "{out}");
        let listed = env
            .admin_get(&format!("/admin/v1/steps/{STEP}/versions"))
            .await;
        assert_eq!(listed["config_revisions"][0]["revision"], 3, "{listed}");

        // Promote: the shadow is the active version, and the next record gets its name.
        let (code, out, err) = cosell(&env, &["mapping", "promote", STEP]);
        println!("$ cosell mapping promote {STEP}\n{out}");
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            env.admin_get("/admin/v1/steps").await["steps"][0]["active_version"],
            shadow_version.as_str()
        );
        let (code, _, err) = cosell(&env, &["mapping", "shadow", STEP]);
        assert_eq!(code, 1);
        assert!(err.contains("has no shadow version"), "{err}");
        let rid = incoming_referral(&env, "Adatum analytics");
        let opp = synced_opportunity(&env, &rid).await;
        assert_eq!(name_of(&opp), "[v2] Adatum analytics");
    })
    .await;
}

async fn a_shadow_that_traps_counts_failures_the_records_still_sync_and_discard_ends_it(
    backend: Backend,
) {
    SyncEnv::run_on(backend, "", |env| async move {
        let poisoned = guest_path("testing/poisoned_referral_to_opportunity.wasm");
        let (code, out, err) = cosell(
            &env,
            &[
                "mapping",
                "deploy",
                STEP,
                poisoned.to_str().unwrap(),
                "--shadow",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        let rid = incoming_referral(&env, "POISON-TRAP rollout");
        let opp = synced_opportunity(&env, &rid).await;
        assert_eq!(
            name_of(&opp),
            "POISON-TRAP rollout",
            "the record synced on the active version"
        );
        let report = shadow_report_when(&env, |r| r["failed"].as_u64() >= Some(1)).await;
        let failure = &report["failure_examples"][0];
        assert_eq!(failure["record"], format!("referral:{rid}"));
        assert!(
            failure["error"]
                .as_str()
                .unwrap()
                .contains("poisoned referral"),
            "{report}"
        );
        // A clean record maps the same on both.
        let clean = incoming_referral(&env, "Adatum clean deal");
        synced_opportunity(&env, &clean).await;
        shadow_report_when(&env, |r| r["identical"].as_u64() >= Some(1)).await;

        let (code, out, err) = cosell(&env, &["mapping", "discard", STEP]);
        println!("$ cosell mapping discard {STEP}\n{out}");
        assert_eq!(code, 0, "{err}");
        let steps = env.admin_get("/admin/v1/steps").await;
        assert!(steps["steps"][0]["shadow_version"].is_null(), "{steps}");
        let (code, _, err) = cosell(&env, &["mapping", "discard", STEP]);
        assert_eq!(code, 1, "{err}");
    })
    .await;
}
