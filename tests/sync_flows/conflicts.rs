//! Flow 6, conflicts: changes made on both sides at once follow the per-field owner, and the
//! conflict is in the audit trail; cosell's own write is no conflict while a seller's edit
//! waits; a referral changed between cosell's read and its PATCH (412) is read again, not
//! overwritten.

use super::*;
use crate::support::backend::{Backend, on_both_backends};
use crate::support::sync_env::{SETTLE, wait_until};
use std::time::Duration;

on_both_backends!(
    flow6_conflicting_changes_follow_the_per_field_owner,
    flow6_cosells_own_write_is_no_conflict_while_a_sellers_edit_waits,
    flow2_a_referral_changed_meanwhile_is_read_again_not_overwritten,
);

async fn flow6_conflicting_changes_follow_the_per_field_owner(backend: Backend) {
    SyncEnv::run_on(backend, r#"[sync.conflicts]
default = "most-recent"
[sync.conflicts.fields]
"estimatedvalue" = "crm"
"/details/dealValue" = "crm"
"description" = "partner-center"
"/details/notes" = "partner-center"
"#, |env| async move {
        let (oid, rid) = synced_pair(&env, "Proseware analytics", None).await;
        env.wait_opportunity(&oid, "the mark", |o| o["name"].as_str().is_some_and(|n| n.ends_with('✔'))).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Partner Center's change is not delivered by webhook (the reconciliation finds it).
        env.pc.faults().set(cosell_emulators::common::faults::FaultConfig { webhook_drop_rate: 1.0, ..Default::default() }).expect("valid faults");
        env.pc.microsoft().update(&rid, json!({"details": {"dealValue": 11111, "notes": "PC notes"}})).unwrap();
        env.seller
            .update("opportunities", &oid, &json!({"estimatedvalue": 22222, "description": "CRM notes"}), None)
            .await
            .unwrap();
        let settled = wait_until(SETTLE, || async {
            let r = env.pc.referral(&rid)?;
            let o = env.opportunity(&oid).await;
            let done = r["details"]["dealValue"].as_f64() == Some(22222.0)
                && o["estimatedvalue"].as_f64() == Some(22222.0)
                && r["details"]["notes"] == "PC notes"
                && o["description"] == "PC notes";
            done.then_some(())
        })
        .await;
        let (r, o) = (env.pc.referral(&rid).unwrap(), env.opportunity(&oid).await);
        assert!(settled.is_some(), "deal value owned by the CRM, notes by Partner Center; got referral {} / {}, opportunity {} / {}\n{}",
            r["details"]["dealValue"], r["details"]["notes"], o["estimatedvalue"], o["description"], env.host_log());
        let audit = env.cosell_admin(&["audit", &format!("referral:{rid}")]);
        assert!(audit.contains("conflict"), "the conflict is in the audit trail: {audit}");
        // The search finds it by its bare id among conflicts of the last hour, and not among
        // the creations.
        let conflicts = env.cosell_admin(&["audit", &rid, "--conflicts", "--since", "1h"]);
        assert!(conflicts.contains(&format!("referral:{rid}")) && conflicts.contains("wins"), "{conflicts}");
        let created = env.cosell_admin(&["audit", &rid, "--outcome", "created"]);
        assert!(!created.contains("wins"), "only creations: {created}");
    })
    .await;
}

async fn flow6_cosells_own_write_is_no_conflict_while_a_sellers_edit_waits(backend: Backend) {
    // The CRM wins conflicts, so a false one would keep Microsoft's value out. No pollers, and
    // Dataverse's webhooks dropped: the seller's edit stays unsynced while Microsoft changes
    // the deal value twice (the drills found this as a reverted deal value).
    let faults = cosell_emulators::common::faults::FaultConfig::default;
    SyncEnv::run_polling_every_on(
        backend,
        "[sync.conflicts]\ndefault = \"crm\"\n",
        0,
        |env| async move {
            let referral = env.pc.microsoft().create_incoming(
                json!({"name": "Relecloud rollout", "details": {"dealValue": 10000}}),
            );
            let rid = referral["id"].as_str().unwrap().to_owned();
            let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid))
                .await
                .expect("an opportunity");
            let oid = opp["opportunityid"].as_str().unwrap().to_owned();
            env.dv
                .faults()
                .set(cosell_emulators::common::faults::FaultConfig {
                    webhook_drop_rate: 1.0,
                    ..faults()
                })
                .unwrap();
            env.seller
                .update(
                    "opportunities",
                    &oid,
                    &json!({"description": "Partner's own notes"}),
                    None,
                )
                .await
                .unwrap();
            env.pc
                .microsoft()
                .update(&rid, json!({"details": {"dealValue": 20000}}))
                .unwrap();
            env.wait_opportunity(&oid, "Microsoft's first change", |o| {
                o["estimatedvalue"].as_f64() == Some(20000.0)
            })
            .await;
            env.pc
                .microsoft()
                .update(&rid, json!({"details": {"dealValue": 30000}}))
                .unwrap();
            env.wait_opportunity(
                &oid,
                "Microsoft's second change (cosell's own write is not the seller's)",
                |o| o["estimatedvalue"].as_f64() == Some(30000.0),
            )
            .await;
            // The seller's edit still goes to Partner Center, and the deal value is not sent back.
            env.dv.faults().set(faults()).unwrap();
            env.seller
                .update(
                    "opportunities",
                    &oid,
                    &json!({"description": "Partner's newer notes"}),
                    None,
                )
                .await
                .unwrap();
            let r = env
                .wait_referral("the seller's notes", |r| {
                    r["id"] == rid.as_str() && r["details"]["notes"] == "Partner's newer notes"
                })
                .await;
            assert_eq!(
                r["details"]["dealValue"].as_f64(),
                Some(30000.0),
                "Microsoft's deal value was kept"
            );
        },
    )
    .await;
}

async fn flow2_a_referral_changed_meanwhile_is_read_again_not_overwritten(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        let (oid, rid) = synced_pair(&env, "Race condition", None).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Every Partner Center call now takes 3 s: the referral cosell reads is changed by a
        // Microsoft seller before cosell's PATCH arrives, so If-Match must fail.
        env.pc
            .faults()
            .set(cosell_emulators::common::faults::FaultConfig {
                latency_ms: 3000,
                ..Default::default()
            })
            .expect("valid faults");
        env.seller
            .update(
                "opportunities",
                &oid,
                &json!({"estimatedvalue": 40000}),
                None,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(4500)).await;
        env.pc
            .microsoft()
            .update(&rid, json!({"details": {"dealValue": 45000}}))
            .unwrap();
        // Partner Center's change is the most recent: it wins on both sides.
        let settled = wait_until(Duration::from_secs(40), || async {
            let r = env.pc.referral(&rid)?;
            let o = env.opportunity(&oid).await;
            (r["details"]["dealValue"].as_f64() == Some(45000.0)
                && o["estimatedvalue"].as_f64() == Some(45000.0))
            .then_some(())
        })
        .await;
        let (r, o) = (env.pc.referral(&rid).unwrap(), env.opportunity(&oid).await);
        assert!(
            settled.is_some(),
            "referral {} / opportunity {}\n{}",
            r["details"]["dealValue"],
            o["estimatedvalue"],
            env.host_log()
        );
        assert!(
            env.host_log().contains("Partner Center answered 412"),
            "the PATCH met a changed referral and was not forced\n{}",
            env.host_log()
        );
    })
    .await;
}
