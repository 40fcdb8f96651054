//! `cosell backfill` next to a running `cosell serve`, on both backends: its `--help`, option
//! errors, `--dry-run --limit` and progress line; the referrals the host synced are skipped,
//! the pile whose events were lost is created once each and the failed referral reported (exit
//! code 1); each open referral gets its opportunity's id, and the host handles every event the
//! backfill's writes fire without writing anything, then and for a later referral event.

use super::*;
use crate::support::backend::{Backend, on_both_backends};
use crate::support::sync_env::{Options as EnvOptions, SETTLE, SyncEnv, wait_until};
use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::partner_center::webhooks::WebhookEvent;
use std::collections::BTreeSet;
use std::process::Command;

/// Runs `cosell args…`; answers its exit code, stdout and stderr.
fn cosell(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .args(args)
        .output()
        .expect("cosell runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits until the host's queue is empty and stays empty for a second.
async fn host_idle(env: &SyncEnv) {
    let idle = wait_until(SETTLE, || async {
        let empty = || async {
            let queue = env.admin_get("/admin/v1/queue").await;
            queue["pending"] == 0 && queue["running"] == 0
        };
        if !empty().await {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        empty().await.then_some(())
    })
    .await;
    assert!(
        idle.is_some(),
        "the host's queue drained\n{}",
        env.host_log()
    );
}

/// Every referral's eTag, by id.
fn etags(env: &SyncEnv) -> BTreeMap<String, Value> {
    env.pc
        .referrals()
        .iter()
        .map(|r| (id(r), r["eTag"].clone()))
        .collect()
}

on_both_backends!(
    next_to_a_running_host_the_cli_skips_what_it_synced_and_the_engine_takes_the_rest_as_synced
);

async fn next_to_a_running_host_the_cli_skips_what_it_synced_and_the_engine_takes_the_rest_as_synced(
    backend: Backend,
) {
    let options = EnvOptions {
        poll_secs: 0,
        bound: BOUND,
        backend,
        ..EnvOptions::default()
    };
    SyncEnv::run_with(options, |env| async move {
        let config = env.config_path.to_str().unwrap().to_owned();
        let (code, help, _) = cosell(&["backfill", "--help"]);
        assert_eq!(code, 0);
        for flag in [
            "--config",
            "--dry-run",
            "--batch-size",
            "--concurrency",
            "--write-mode",
            "--limit",
            "--skip-closed",
        ] {
            assert!(help.contains(flag), "{flag} in --help:\n{help}");
        }

        // The host syncs three referrals as they arrive.
        let live: Vec<String> = (0..3)
            .map(|i| {
                id(&env
                    .pc
                    .microsoft()
                    .create_incoming(json!({"name": format!("Live referral {i}")})))
            })
            .collect();
        for rid in &live {
            let found = wait_until(SETTLE, || async {
                (env.opportunities_for_referral(rid).await.len() == 1).then_some(())
            })
            .await;
            assert!(found.is_some(), "the host synced {rid}\n{}", env.host_log());
        }
        host_idle(&env).await;
        // The pile: referrals whose events were lost (so only the backfill sees them), open
        // and closed, of four customers, and one in a currency Dataverse does not have.
        let dropped = || {
            let deliveries = env.pc.webhooks().deliveries();
            deliveries.iter().filter(|d| d.outcome == "dropped").count()
        };
        let dropped_before = dropped();
        env.pc
            .faults()
            .set(FaultConfig {
                webhook_drop_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        let microsoft = env.pc.microsoft();
        for i in 0..40 {
            let referral = microsoft.create_incoming(json!({
                "name": format!("Pile referral {i}"),
                "customerProfile": {"name": format!("Pile customer {}", i % 4)},
                "details": {"dealValue": 1000 * (i + 1)},
            }));
            let rid = id(&referral);
            match i % 4 {
                1 => drop(microsoft.accept(&rid).unwrap()),
                2 => drop(microsoft.close(&rid, true).unwrap()),
                3 => drop(microsoft.close(&rid, false).unwrap()),
                _ => {}
            }
        }
        let unknown_currency =
            id(&microsoft.create_incoming(json!({"details": {"currency": "ZZZ"}})));
        // Their 41 referral-created and 30 referral-updated events, all lost.
        let lost = wait_until(SETTLE, || async {
            (dropped() >= dropped_before + 71).then_some(())
        })
        .await;
        assert!(lost.is_some(), "the pile's events were dropped");
        env.pc.faults().set(FaultConfig::default()).unwrap();
        let before: BTreeMap<String, Value> = env
            .pc
            .referrals()
            .into_iter()
            .map(|r| (id(&r), r))
            .collect();

        let (code, _, err) = cosell(&["backfill", "--config", &config, "--batch-size", "1001"]);
        assert_eq!(code, 1);
        assert!(err.contains("batch size must be 1 to 1000"), "{err}");
        let (code, out, err) = cosell(&["backfill", "--config", &config, "--dry-run", "--limit", "10"]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains(": 10 referrals in"), "{out}");
        assert!(err.contains("backfill: "), "a progress line on stderr: {err}");
        let (code, out, err) = cosell(&["backfill", "--config", &config, "--dry-run"]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("would create   41"), "{out}");
        assert!(out.contains("already there  3"), "{out}");
        let rows = env
            .seller
            .query("opportunities", "$select=opportunityid")
            .await
            .unwrap();
        assert_eq!(rows.len(), 3, "a dry run writes nothing");

        // What the host writes from here on: its runs that created or updated a record.
        let host_writes = || async {
            let mut total = 0.0;
            for side in ["partner-center", "dataverse"] {
                for outcome in ["created", "updated"] {
                    let labels = [("side", side), ("outcome", outcome)];
                    total += env.metric("cosell_sync_events_total", &labels).await;
                }
            }
            total
        };
        let writes_before = host_writes().await;
        // The host's runs that found nothing to write: an echo (the fingerprint on the link is
        // the record's), a run that read both sides and found them equal, or one the mapping
        // skipped (an opportunity not marked for sync); the last two when its event overtook
        // the backfill's link. Whatever their outcome, the writes are checked below. (And the
        // Dataverse deliveries the intake answers as echoes, which never become runs.)
        let env_ref = &env;
        let no_write = move |side: &'static str| async move {
            let mut total = 0.0;
            for outcome in ["echo", "unchanged", "skipped"] {
                let labels = [("side", side), ("outcome", outcome)];
                total += env_ref.metric("cosell_sync_events_total", &labels).await;
            }
            if side == "dataverse" {
                // A delivery naming the version the backfill recorded as synced is answered
                // at the intake and never queued.
                let labels = [("source", "dataverse-webhook"), ("result", "echo")];
                total += env_ref.metric("cosell_intake_events_total", &labels).await;
            }
            total
        };
        let no_writes_before = (no_write("dataverse").await, no_write("partner-center").await);
        let (code, out, err) = cosell(&[
            "backfill",
            "--config",
            &config,
            "--batch-size",
            "16",
            "--concurrency",
            "3",
            "--json",
        ]);
        assert_eq!(
            code, 1,
            "a failed referral makes the exit code 1\n{out}\n{err}"
        );
        let report: Value = serde_json::from_str(&out).expect("--json prints the report");
        assert_eq!(report["created"], 40, "{report:#}");
        assert_eq!(
            report["already_there"], 3,
            "the host's three are skipped: {report:#}"
        );
        assert_eq!(
            report["failed"][0]["referral_id"],
            json!(unknown_currency),
            "{report:#}"
        );
        let rows = wait_until(SETTLE, || async {
            let rows = env
                .seller
                .query("opportunities", "$select=cosell_referralidentifier")
                .await
                .ok()?;
            (rows.len() == 43).then_some(rows)
        })
        .await
        .expect("43 opportunities");
        let referral_ids: BTreeSet<&str> = rows
            .iter()
            .filter_map(|r| r["cosell_referralidentifier"].as_str())
            .collect();
        assert_eq!(referral_ids.len(), 43, "one opportunity per referral");

        // The backfill finished every pair as the host would have: each open referral holds
        // its opportunity's id (the mapping's CRM -> PC field; closed referrals cannot change)
        // when the command ends, and the links hold both sides' fingerprints. The host hears of
        // every backfilled opportunity (Dataverse's Create, Win and Lose webhooks) and of
        // every referral the backfill updated (Partner Center's referral-updated), and
        // recognises each as an echo: it writes nothing to either side.
        let opportunity_of: BTreeMap<String, Value> = rows
            .iter()
            .map(|r| {
                let rid = r["cosell_referralidentifier"].as_str().unwrap().to_owned();
                (rid, r["opportunityid"].clone())
            })
            .collect();
        let open_in_pile: Vec<&Value> = before
            .values()
            .filter(|r| !is_closed(r) && !live.contains(&id(r)) && id(r) != unknown_currency)
            .collect();
        let missing: Vec<String> = open_in_pile
            .iter()
            .map(|r| env.pc.referral(&id(r)).unwrap())
            .filter(|r| r["externalReferenceId"] != opportunity_of[&id(r)])
            .map(|r| {
                format!(
                    "{} ({}): {}",
                    id(&r),
                    opportunity_of[&id(&r)],
                    r["externalReferenceId"]
                )
            })
            .collect();
        assert!(
            missing.is_empty(),
            "the backfill gave each open referral its opportunity's id; not: {missing:#?}"
        );
        let versions = |rows: &[Value]| -> BTreeMap<String, Value> {
            rows.iter()
                .map(|r| {
                    (
                        r["cosell_referralidentifier"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        r["versionnumber"].clone(),
                    )
                })
                .collect()
        };
        let opportunity_versions = || async {
            versions(
                &env.seller
                    .query(
                        "opportunities",
                        "$select=cosell_referralidentifier,versionnumber",
                    )
                    .await
                    .unwrap(),
            )
        };
        let (referrals_written, opportunities_written) =
            (etags(&env), opportunity_versions().await);
        // Each backfilled opportunity's webhook, and each patched referral's, was handled.
        let handled = wait_until(SETTLE, || async {
            let dv = no_write("dataverse").await - no_writes_before.0;
            let pc = no_write("partner-center").await - no_writes_before.1;
            (dv >= 40.0 && pc >= open_in_pile.len() as f64).then_some(())
        })
        .await;
        assert!(
            handled.is_some(),
            "the host handled every backfilled opportunity's and patched referral's event without a write\n{}",
            env.host_log()
        );
        host_idle(&env).await;
        assert_eq!(
            host_writes().await,
            writes_before,
            "the host created or updated nothing beside the backfill\n{}",
            env.host_log()
        );
        assert_eq!(etags(&env), referrals_written, "the host patched no referral");
        assert_eq!(
            opportunity_versions().await,
            opportunities_written,
            "the host updated no opportunity"
        );
        println!(
            "next to the host: {} backfilled, {} open referrals given their opportunity's id by the backfill; the host wrote nothing",
            report["created"],
            open_in_pile.len()
        );
        host_idle(&env).await;
        let strip = |r: &Value| {
            let mut r = r.clone();
            for volatile in ["eTag", "updatedDateTime", "externalReferenceId"] {
                r.as_object_mut().unwrap().remove(volatile);
            }
            r
        };
        for referral in env.pc.referrals() {
            let rid = id(&referral);
            let earlier = &before[&rid];
            assert_eq!(
                strip(&referral),
                strip(earlier),
                "referral {rid}\n{}",
                env.host_log()
            );
            if is_closed(&referral) || live.contains(&rid) {
                assert_eq!(
                    referral["eTag"], earlier["eTag"],
                    "referral {rid} was not written"
                );
            }
        }
        let after = etags(&env);
        let settled = opportunity_versions().await;

        // A referral event for a backfilled referral, unchanged, is recognised as synced.
        let echo = [("side", "partner-center"), ("outcome", "echo")];
        let echoes_before = env.metric("cosell_sync_events_total", &echo).await;
        let backfilled: Vec<&String> = before
            .keys()
            .filter(|r| !live.contains(r) && **r != unknown_currency)
            .take(5)
            .collect();
        for rid in &backfilled {
            let uri = format!("{}/v1.0/engagements/referrals/{rid}", env.pc_url);
            env.pc.webhooks().enqueue(WebhookEvent::new(
                "referral-updated",
                "referral",
                uri,
                chrono::Utc::now(),
            ));
        }
        let wanted = echoes_before + backfilled.len() as f64;
        let echoed = wait_until(SETTLE, || async {
            (env.metric("cosell_sync_events_total", &echo).await >= wanted).then_some(())
        })
        .await;
        assert!(
            echoed.is_some(),
            "each event was an echo\n{}",
            env.host_log()
        );
        host_idle(&env).await;
        assert_eq!(etags(&env), after, "no referral was written");
        let now = versions(
            &env.seller
                .query(
                    "opportunities",
                    "$select=cosell_referralidentifier,versionnumber",
                )
                .await
                .unwrap(),
        );
        assert_eq!(now, settled, "no opportunity was written");
    })
    .await;
}
