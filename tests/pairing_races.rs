//! Races around the making of a pair, with a real `cosell serve` process and both emulators,
//! each staged deterministically: Partner Center answers slowly, so the host is held inside a
//! run while the test acts, and the test waits for the host's own log lines (never for a time)
//! to know where that run is.
//!
//! - The record cosell creates for a pair has its own change event, which can run before the
//!   run that created it has saved the link. Without a link it has no snapshot of what was
//!   synced, and used to write its record over the other side: a referral's values, as its
//!   create made them, over a seller's newer edit of the opportunity; an opportunity's values,
//!   as created, over Microsoft's newer change of the referral. It now waits for the link.
//! - The referral id written back to a seller's opportunity: when cosell's write-back meets a
//!   seller's edit twice (412), the second time from an edit that changed nothing the
//!   fingerprint covers (the seller's PATCH sent again after its answer was lost), the id is
//!   still written back, instead of the next event being taken for an echo.
//! - A write whose run dies before it saves the result: the written record holds cosell's
//!   values, and the link the state before them. An edit of the source record made while the
//!   write was on its way used to lose to cosell's own write, taken for the other side's newer
//!   change: a seller's edit to a referral PATCH, Microsoft's change to an opportunity update.
//!   The run now records the write before it sends it, and the next run settles it.

mod support;

use cosell::sinks::partner_center::targets_microsoft;
use cosell_emulators::common::faults::{FaultConfig, Faults};
use serde_json::{Value, json};
use support::backend::{Backend, on_both_backends};
use support::sync_env::{SETTLE, SyncEnv, wait_until};

/// Retries come quickly; the pollers are off, so only the webhooks and the queue move records.
const FAST_RETRIES: &str = "[sync]\nretry_base_ms = 200\n";

on_both_backends!(
    a_referrals_event_before_the_link_does_not_overwrite_the_sellers_newer_edit,
    an_opportunitys_event_before_the_link_does_not_overwrite_microsofts_newer_change,
    the_referral_id_is_written_back_after_a_sellers_edits_got_in_the_way_twice,
    a_patch_whose_run_died_before_saving_it_is_not_taken_for_microsofts_change,
    an_update_whose_run_died_before_saving_it_is_not_taken_for_the_sellers_change,
);

/// How long every Partner Center call takes while a race is staged: the window in which the
/// test acts while the host waits for an answer.
const SLOW_MS: u64 = 1_500;

/// Waits until a line of the host log after byte `from` contains every one of `needles`;
/// answers the offset just after that line.
async fn logged(env: &SyncEnv, from: usize, needles: &[&str]) -> usize {
    let found = wait_until(SETTLE, || async {
        let log = env.host_log();
        let tail = log.get(from..)?;
        let mut offset = from;
        for line in tail.split_inclusive('\n') {
            offset += line.len();
            if needles.iter().all(|n| line.contains(n)) {
                return Some(offset);
            }
        }
        None
    })
    .await;
    found.unwrap_or_else(|| panic!("the host never logged {needles:?}\n{}", env.host_log()))
}

/// Faults that hold the host between a write landing and its saving the result: every call
/// takes [`SLOW_MS`] before it is served (the window in which the test edits the source record),
/// and a write's answer comes a hang guard's time after it was applied.
fn answers_held() -> FaultConfig {
    FaultConfig {
        latency_ms: SLOW_MS,
        answer_latency_ms: support::NEVER.as_millis() as u64,
        ..FaultConfig::default()
    }
}

/// Once the write the host is held in has `landed`: SIGKILLs the host, lifts `faults` (the
/// emulator's, set to [`answers_held`]) and starts the host again.
async fn dies_and_restarts(env: &mut SyncEnv, landed: bool, faults: Faults) {
    assert!(landed, "the write lands\n{}", env.host_log());
    env.kill_host();
    faults.set(FaultConfig::default()).unwrap();
    env.start_host().await;
}

/// The deal value and notes of referral `r` and opportunity `o`, for a failure message.
fn deal_on_both_sides(r: &Value, o: &Value) -> String {
    format!(
        "referral dealValue {} notes {}, opportunity estimatedvalue {} description {}",
        r["details"]["dealValue"], r["details"]["notes"], o["estimatedvalue"], o["description"]
    )
}

/// Once the queue has drained, opportunity `oid` holds the seller's `value` and `description`.
async fn opportunity_keeps(env: &SyncEnv, oid: &str, value: f64, description: &str) {
    idle(env).await;
    let o = env.opportunity(oid).await;
    assert_eq!(
        (o["estimatedvalue"].as_f64(), o["description"].as_str()),
        (Some(value), Some(description))
    );
}

/// The partner's referral cosell made from opportunity `oid`, once it exists.
async fn referral_of(env: &SyncEnv, oid: &str) -> Value {
    env.wait_referral("the opportunity's referral", |r| {
        r["externalReferenceId"] == oid && !targets_microsoft(r)
    })
    .await
}

/// Waits until the host's queue has nothing waiting or running.
async fn idle(env: &SyncEnv) {
    let idle = wait_until(SETTLE, || async {
        let queue = env.admin_get("/admin/v1/queue").await;
        (queue["pending"] == 0 && queue["running"] == 0).then_some(())
    })
    .await;
    assert!(idle.is_some(), "the queue drains\n{}", env.host_log());
}

async fn a_referrals_event_before_the_link_does_not_overwrite_the_sellers_newer_edit(
    backend: Backend,
) {
    SyncEnv::run_polling_every_on(backend, FAST_RETRIES, 0, |env| async move {
        // Every Partner Center call takes 1.5 s and every write to it is answered 500 after it
        // was applied: the create's answer is lost, so its run looks the referral up (two more
        // slow calls) before it saves the link, long after the referral-created webhook came.
        env.pc
            .faults()
            .set(FaultConfig {
                latency_ms: SLOW_MS,
                applied_error_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        let oid =
            support::seller::creates_opportunity(&env, "Race of the create", "98040", json!({}))
                .await;
        // The host has read the opportunity and is creating its referral: the seller edits it.
        let at = logged(&env, 0, &["Partner Center request", "method=POST"]).await;
        let edit = json!({"estimatedvalue": 31000, "description": "Seats: 800"});
        env.seller
            .update("opportunities", &oid, &edit, None)
            .await
            .unwrap();
        logged(
            &env,
            at,
            &[&format!("record=opportunity:{oid}"), "outcome=\"created\""],
        )
        .await;
        env.pc.faults().set(FaultConfig::default()).unwrap();

        // The seller's edit reaches the referral, and the opportunity keeps it.
        let synced = wait_until(SETTLE, || async {
            let r = referral_of(&env, &oid).await;
            (r["details"]["dealValue"].as_f64() == Some(31000.0)
                && r["details"]["notes"] == "Seats: 800")
                .then_some(r)
        })
        .await;
        let (r, o) = (referral_of(&env, &oid).await, env.opportunity(&oid).await);
        assert!(
            synced.is_some(),
            "the seller's edit was overwritten by the referral's values as created: {}\n{}",
            deal_on_both_sides(&r, &o),
            env.host_log()
        );
        opportunity_keeps(&env, &oid, 31000.0, "Seats: 800").await;
        // Read again once the host is idle: the write-back may be a later run's.
        let o = env.opportunity(&oid).await;
        assert_eq!(
            o["cosell_referralidentifier"], r["id"],
            "the referral id is written back"
        );
        assert!(
            env.host_log().contains("which is not linked to it yet"),
            "the referral's event waited for the link\n{}",
            env.host_log()
        );
    })
    .await;
}

async fn an_opportunitys_event_before_the_link_does_not_overwrite_microsofts_newer_change(
    backend: Backend,
) {
    SyncEnv::run_polling_every_on(backend, FAST_RETRIES, 0, |env| async move {
        // The host hears of nothing in Partner Center (its webhooks are lost, the pollers off):
        // only of the opportunity, as when the referral's own run is still under way.
        env.pc
            .faults()
            .set(FaultConfig { webhook_drop_rate: 1.0, ..FaultConfig::default() })
            .unwrap();
        let (account, contact) = support::seller::customer(&env, "Northwind Traders", "98052").await;
        let referral = env.pc.microsoft().create_incoming(json!({
            "name": "Northwind rollout",
            "customerProfile": {"name": "Northwind Traders", "address": {"postalCode": "98052", "country": "US"}},
            "details": {"dealValue": 10000, "currency": "USD", "notes": "Rollout to 300 seats"}
        }));
        let rid = referral["id"].as_str().unwrap().to_owned();
        // Microsoft changes the referral after the Partner Center → CRM run read it...
        env.pc
            .microsoft()
            .update(&rid, json!({"details": {"dealValue": 20000}}))
            .unwrap();
        // ...and that run creates the opportunity from what it read, carrying the referral id
        // (its link not saved yet): Dataverse's Create webhook reaches the host.
        let oid = env
            .seller
            .create(
                "opportunities",
                &json!({
                    "name": "Northwind rollout ✔",
                    "estimatedvalue": 10000,
                    "description": "Rollout to 300 seats",
                    "customerid_account@odata.bind": format!("/accounts({account})"),
                    "parentcontactid@odata.bind": format!("/contacts({contact})"),
                    "cosell_syncwithpartnercenter": true,
                    "cosell_referralidentifier": rid,
                }),
            )
            .await
            .unwrap();

        // Microsoft's change stands on both sides.
        let synced = wait_until(SETTLE, || async {
            let r = env.pc.referral(&rid)?;
            let o = env.opportunity(&oid).await;
            (r["details"]["dealValue"].as_f64() == Some(20000.0)
                && o["estimatedvalue"].as_f64() == Some(20000.0))
                .then_some(())
        })
        .await;
        let (r, o) = (env.pc.referral(&rid).unwrap(), env.opportunity(&oid).await);
        assert!(
            synced.is_some(),
            "Microsoft's change was overwritten by the opportunity's values as created: referral \
             dealValue {}, opportunity estimatedvalue {}\n{}",
            r["details"]["dealValue"],
            o["estimatedvalue"],
            env.host_log()
        );
        idle(&env).await;
        assert_eq!(env.pc.referral(&rid).unwrap()["details"]["dealValue"].as_f64(), Some(20000.0));
        assert_eq!(env.opportunities_for_referral(&rid).await.len(), 1, "one opportunity");
        assert!(
            env.host_log().contains("which is not linked to it yet"),
            "the opportunity's event waited for the link\n{}",
            env.host_log()
        );
    })
    .await;
}

async fn the_referral_id_is_written_back_after_a_sellers_edits_got_in_the_way_twice(
    backend: Backend,
) {
    SyncEnv::run_polling_every_on(backend, FAST_RETRIES, 0, |env| async move {
        // Every Partner Center call takes 1.5 s; its webhooks are lost (the host hears only of
        // the opportunity).
        env.pc
            .faults()
            .set(FaultConfig {
                latency_ms: SLOW_MS,
                webhook_drop_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        let oid =
            support::seller::creates_opportunity(&env, "Write-back race", "98041", json!({})).await;
        // The host has read the opportunity and is creating its referral: the seller's edit gets
        // in the way of writing the referral id back (412).
        let at = logged(&env, 0, &["Partner Center request", "method=POST"]).await;
        let edit = json!({"description": "Seats: 500"});
        env.seller
            .update("opportunities", &oid, &edit, None)
            .await
            .unwrap();
        let at = logged(
            &env,
            at,
            &[&format!("record=opportunity:{oid}"), "outcome=\"created\""],
        )
        .await;
        let rid = referral_of(&env, &oid).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // The edit's own event has read the opportunity and the referral and sends the edit on;
        // the seller's client sends the same PATCH again (its answer was lost), which changes
        // nothing but the eTag: the write-back meets a 412 a second time.
        let at = logged(&env, at, &["Partner Center request", "method=GET", &rid]).await;
        env.seller
            .update("opportunities", &oid, &edit, None)
            .await
            .unwrap();
        logged(
            &env,
            at,
            &[&format!("record=opportunity:{oid}"), "outcome=\"updated\""],
        )
        .await;
        env.pc.faults().set(FaultConfig::default()).unwrap();

        let o = env
            .wait_opportunity(&oid, "the referral id written back", |o| {
                o["cosell_referralidentifier"] == rid.as_str()
            })
            .await;
        assert_eq!(o["description"], "Seats: 500");
        idle(&env).await;
        assert_eq!(
            referral_of(&env, &oid).await["details"]["notes"],
            "Seats: 500"
        );
    })
    .await;
}

async fn a_patch_whose_run_died_before_saving_it_is_not_taken_for_microsofts_change(
    backend: Backend,
) {
    SyncEnv::run_polling_every_on(backend, FAST_RETRIES, 0, |mut env| async move {
        let oid = support::seller::creates_opportunity(
            &env,
            "Race of the patch",
            "98041",
            json!({"estimatedvalue": 10000, "description": "Seats: 100"}),
        )
        .await;
        let rid = referral_of(&env, &oid).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        env.wait_opportunity(&oid, "the referral id written back", |o| {
            o["cosell_referralidentifier"] == rid.as_str()
        })
        .await;
        idle(&env).await;

        // The host is held between its PATCH landing and its saving the result.
        env.pc.faults().set(answers_held()).unwrap();
        let from = env.host_log().len();
        let sent = json!({"estimatedvalue": 20000, "description": "Seats: 200"});
        env.seller
            .update("opportunities", &oid, &sent, None)
            .await
            .unwrap();
        // The PATCH is on its way: the seller edits again before it lands, so Partner Center's
        // stamp of cosell's write is the newer one...
        logged(
            &env,
            from,
            &["Partner Center request", "method=PATCH", &rid],
        )
        .await;
        let newer = json!({"estimatedvalue": 30000, "description": "Seats: 300"});
        env.seller
            .update("opportunities", &oid, &newer, None)
            .await
            .unwrap();
        // ...and the host dies once it has landed, before its answer.
        let landed = wait_until(SETTLE, || async {
            let r = env.pc.referral(&rid)?;
            (r["details"]["dealValue"].as_f64() == Some(20000.0)).then_some(())
        })
        .await;
        let faults = env.pc.faults().clone();
        dies_and_restarts(&mut env, landed.is_some(), faults).await;

        // The seller's newer edit reaches the referral, and the opportunity keeps it.
        let synced = wait_until(SETTLE, || async {
            let r = env.pc.referral(&rid)?;
            (r["details"]["dealValue"].as_f64() == Some(30000.0)
                && r["details"]["notes"] == "Seats: 300")
                .then_some(())
        })
        .await;
        let (r, o) = (env.pc.referral(&rid).unwrap(), env.opportunity(&oid).await);
        assert!(
            synced.is_some(),
            "cosell's own PATCH was taken for Microsoft's change: {}\n{}",
            deal_on_both_sides(&r, &o),
            env.host_log()
        );
        opportunity_keeps(&env, &oid, 30000.0, "Seats: 300").await;
        assert!(
            env.host_log()
                .contains("settled a Partner Center PATCH whose run ended before it saved"),
            "the PATCH's record was settled\n{}",
            env.host_log()
        );
    })
    .await;
}

async fn an_update_whose_run_died_before_saving_it_is_not_taken_for_the_sellers_change(
    backend: Backend,
) {
    SyncEnv::run_polling_every_on(backend, FAST_RETRIES, 0, |mut env| async move {
        let referral = env.pc.microsoft().create_incoming(json!({
            "name": "Race of the update",
            "customerProfile": {"name": "Race of the update Inc", "address": {"postalCode": "98042", "country": "US"}},
            "details": {"dealValue": 10000, "currency": "USD", "notes": "Rollout"}
        }));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opportunity = wait_until(SETTLE, || async {
            env.opportunities_for_referral(&rid).await.into_iter().next()
        })
        .await
        .expect("the referral's opportunity");
        let oid = opportunity["opportunityid"].as_str().unwrap().to_owned();
        idle(&env).await;

        // The host is held between its update landing and its saving the result.
        env.dv.faults().set(answers_held()).unwrap();
        let from = env.host_log().len();
        env.pc
            .microsoft()
            .update(&rid, json!({"details": {"dealValue": 20000}}))
            .unwrap();
        // The update is on its way: Microsoft changes the referral again before it lands, so
        // Dataverse's stamp of cosell's write is the newer one...
        logged(&env, from, &["Dataverse request", "method=PATCH", &oid]).await;
        env.pc
            .microsoft()
            .update(&rid, json!({"details": {"dealValue": 30000}}))
            .unwrap();
        // ...and the host dies once it has landed, before its answer.
        let landed = wait_until(SETTLE, || async {
            let o = env.opportunity(&oid).await;
            (o["estimatedvalue"].as_f64() == Some(20000.0)).then_some(())
        })
        .await;
        let faults = env.dv.faults().clone();
        dies_and_restarts(&mut env, landed.is_some(), faults).await;

        // Microsoft's newer change reaches the opportunity, and the referral keeps it.
        let synced = wait_until(SETTLE, || async {
            let o = env.opportunity(&oid).await;
            (o["estimatedvalue"].as_f64() == Some(30000.0)).then_some(())
        })
        .await;
        let (r, o) = (env.pc.referral(&rid).unwrap(), env.opportunity(&oid).await);
        assert!(
            synced.is_some(),
            "cosell's own update was taken for the seller's change: referral dealValue {}, \
             opportunity estimatedvalue {}\n{}",
            r["details"]["dealValue"],
            o["estimatedvalue"],
            env.host_log()
        );
        idle(&env).await;
        let r = env.pc.referral(&rid).unwrap();
        assert_eq!(r["details"]["dealValue"].as_f64(), Some(30000.0));
        assert!(
            env.host_log()
                .contains("settled a Dataverse update whose run ended before it saved"),
            "the update's record was settled\n{}",
            env.host_log()
        );
    })
    .await;
}
