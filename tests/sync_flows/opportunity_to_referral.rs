//! Flows 1 and 2, from the CRM to Partner Center: an opportunity marked for sync becomes a
//! Shared referral when the seller asks Microsoft for help (shared with Microsoft once, in a
//! second step), an Independent one otherwise, once only, with its id, link, audit line and ✔
//! written back; the seller's changes are patched onto the referral (the changed fields only),
//! and winning or losing the opportunity closes it; a referral whose assistance code came from
//! Partner Center stays private through unrelated edits and is shared only when a seller asks
//! for help.

use super::*;
use crate::support::backend::{Backend, on_both_backends};
use crate::support::sync_env::{SETTLE, wait_until};
use cosell::sinks::partner_center::targets_microsoft;
use std::time::{Duration, Instant};

on_both_backends!(
    flow1_a_crm_opportunity_becomes_a_referral_and_its_id_comes_back,
    flow2_crm_changes_are_patched_onto_the_referral_and_closing_sets_its_status,
    a_referral_is_shared_with_microsoft_only_when_a_seller_asks_for_help,
);

async fn flow1_a_crm_opportunity_becomes_a_referral_and_its_id_comes_back(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        let started = Instant::now();
        let oid = seller_creates_opportunity(&env, "Contoso rollout", Some(HELP_WORKLOAD)).await;
        let referral = env
            .wait_referral("the co-sell referral", |r| {
                r["externalReferenceId"] == oid.as_str() && !targets_microsoft(r)
            })
            .await;
        println!(
            "flow 1 latency: opportunity created -> referral created in {:?}",
            started.elapsed()
        );
        assert_eq!(
            referral["type"], "Shared",
            "help from Microsoft makes it co-sell: {referral:#}"
        );
        assert_eq!(referral["name"], "Contoso rollout");
        assert_eq!(referral["details"]["dealValue"].as_f64(), Some(25000.0));
        assert_eq!(referral["details"]["currency"], "EUR");
        assert_eq!(
            referral["inviteContext"]["assistanceRequestCode"],
            "WorkloadSpecificValueProposition"
        );
        // The share with Microsoft is a second step, which may land a moment after the first.
        let engagement = referral["engagementId"].clone();
        let is_microsoft_half =
            |r: &Value| r["engagementId"] == engagement && r["target"].to_string().contains("msft");
        env.wait_referral("the share with Microsoft", is_microsoft_half)
            .await;
        let microsoft_half = env
            .pc
            .referrals()
            .iter()
            .filter(|r| is_microsoft_half(r))
            .count();
        assert_eq!(
            microsoft_half, 1,
            "the co-sell referral is shared with Microsoft once, in a second step"
        );

        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = env
            .wait_opportunity(&oid, "the write-back", |o| {
                o["name"].as_str().is_some_and(|n| n.ends_with('✔'))
            })
            .await;
        assert_eq!(opp["cosell_referralidentifier"], rid.as_str());
        assert!(opp["cosell_referrallink"].as_str().unwrap().contains(&rid));
        assert!(
            opp["cosell_audit"]
                .as_str()
                .unwrap()
                .contains(&format!("created Shared referral {rid}")),
            "{opp:#}"
        );
        assert_eq!(opp["name"], "Contoso rollout ✔");

        // Without help: a private (Independent) referral.
        let (_, independent) = synced_pair(&env, "Fabrikam renewal", None).await;
        let referral = env.pc.referral(&independent).unwrap();
        assert_eq!(referral["type"], "Independent");
        // Exactly one partner referral per opportunity, even with the pollers re-reading.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mine = env
            .pc
            .referrals()
            .into_iter()
            .filter(|r| r["externalReferenceId"] == oid.as_str() && !targets_microsoft(r))
            .count();
        assert_eq!(mine, 1);
    })
    .await;
}

async fn flow2_crm_changes_are_patched_onto_the_referral_and_closing_sets_its_status(
    backend: Backend,
) {
    SyncEnv::run_on(backend, "", |env| async move {
        let (oid, rid) = synced_pair(&env, "Northwind expansion", None).await;
        let before = env.pc.referral(&rid).unwrap();
        let started = Instant::now();
        env.seller
            .update(
                "opportunities",
                &oid,
                &json!({"estimatedvalue": 31000, "description": "Now 500 seats"}),
                None,
            )
            .await
            .unwrap();
        let after = env
            .wait_referral("the new deal value", |r| {
                r["id"] == rid.as_str() && r["details"]["dealValue"].as_f64() == Some(31000.0)
            })
            .await;
        println!(
            "flow 2 latency: opportunity changed -> referral patched in {:?}",
            started.elapsed()
        );
        assert_eq!(after["details"]["notes"], "Now 500 seats");
        // Only the changed fields: everything else is as it was.
        assert_eq!(after["customerProfile"], before["customerProfile"]);
        assert_eq!(after["name"], before["name"]);
        let opp = env
            .wait_opportunity(&oid, "the audit line of the update", |o| {
                o["cosell_audit"]
                    .as_str()
                    .is_some_and(|a| a.contains("/details/dealValue"))
            })
            .await;
        let audit = opp["cosell_audit"].as_str().unwrap();
        assert!(
            audit.contains("/details/notes") && !audit.contains("/customerProfile"),
            "{audit}"
        );

        // Won in the CRM → Closed/Won in Partner Center.
        env.seller.win_opportunity(&oid, 3, "Signed").await.unwrap();
        env.wait_referral("Closed/Won", |r| {
            r["id"] == rid.as_str() && r["status"] == "Closed" && r["substatus"] == "Won"
        })
        .await;

        // An accepted referral lost in the CRM → Closed/Lost.
        let (lost_oid, lost_rid) = synced_pair(&env, "Tailspin pilot", None).await;
        env.seller
            .lose_opportunity(&lost_oid, 5, "Went elsewhere")
            .await
            .unwrap();
        env.wait_referral("Closed/Lost", |r| {
            r["id"] == lost_rid.as_str() && r["status"] == "Closed" && r["substatus"] == "Lost"
        })
        .await;
    })
    .await;
}

async fn a_referral_is_shared_with_microsoft_only_when_a_seller_asks_for_help(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        // An Independent referral whose assistance code came from Partner Center itself.
        let referral = env.pc.microsoft().create_incoming(json!({
            "name": "Private with a code",
            "type": "Independent",
            "consent": {"consentToShareReferralWithMicrosoftSellers": false},
            "inviteContext": {"assistanceRequestCode": "CustomerTechnicalArchitecture"}
        }));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid))
            .await
            .unwrap_or_else(|| panic!("no opportunity for {rid}\n{}", env.host_log()));
        let oid = opp["opportunityid"].as_str().unwrap().to_owned();
        let asked = env.opportunity(&oid).await["cosell_howcanmicrosofthelp"].clone();
        assert_eq!(
            asked,
            json!(100_000_001),
            "the code came over as the help column"
        );

        // An unrelated edit by the seller goes to Partner Center; nothing is shared.
        env.seller
            .update(
                "opportunities",
                &oid,
                &json!({"estimatedvalue": 61000}),
                None,
            )
            .await
            .unwrap();
        let after = env
            .wait_referral("the new deal value", |r| {
                r["id"] == rid.as_str() && r["details"]["dealValue"].as_f64() == Some(61000.0)
            })
            .await;
        assert_eq!(after["type"], "Independent", "{after:#}");
        assert_eq!(
            after["consent"]["consentToShareReferralWithMicrosoftSellers"],
            false
        );
        let engagement = after["engagementId"].clone();
        let to_microsoft = |env: &SyncEnv| {
            env.pc
                .referrals()
                .into_iter()
                .filter(|r| r["engagementId"] == engagement && targets_microsoft(r))
                .count()
        };
        assert_eq!(to_microsoft(&env), 0);

        // The seller asks Microsoft for help: now it is shared.
        env.seller
            .update(
                "opportunities",
                &oid,
                &json!({"cosell_howcanmicrosofthelp": HELP_WORKLOAD}),
                None,
            )
            .await
            .unwrap();
        let shared = env
            .wait_referral("the referral shared", |r| {
                r["id"] == rid.as_str() && r["type"] == "Shared"
            })
            .await;
        assert_eq!(
            shared["consent"]["consentToShareReferralWithMicrosoftSellers"],
            true
        );
        assert_eq!(
            shared["inviteContext"]["assistanceRequestCode"],
            "WorkloadSpecificValueProposition"
        );
    })
    .await;
}
