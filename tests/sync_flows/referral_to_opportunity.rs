//! Flows 3 and 4, from Partner Center to the CRM: a Microsoft referral becomes an open
//! opportunity marked for sync, matching the customer's account by name and postal code or
//! creating it (found again by a name with `&` and `+`), with its contact, and its updates
//! follow; the seller accepting or declining it in the CRM answers Microsoft; won, lost,
//! declined and expired set in Partner Center close the opportunity with the documented state
//! and status.

use super::*;
use crate::support::backend::{Backend, on_both_backends};
use crate::support::seller::customer;
use crate::support::sync_env::{SETTLE, wait_until};
use cosell::connections::odata::literal;
use std::time::{Duration, Instant};

on_both_backends!(
    flow3_and_4_a_microsoft_referral_becomes_an_opportunity_and_its_updates_follow,
    flow2_accepting_and_declining_in_the_crm_answers_microsoft,
    closings_in_partner_center_close_the_opportunity_through_the_running_host,
);

async fn flow3_and_4_a_microsoft_referral_becomes_an_opportunity_and_its_updates_follow(
    backend: Backend,
) {
    SyncEnv::run_on(backend, "", |env| async move {
        // The customer exists already: matched by company name and postal code.
        let (account, _) = customer(&env, "Adatum Corporation", "98052").await;
        let started = Instant::now();
        let referral = env.pc.microsoft().create_incoming(json!({
            "name": "Adatum data platform",
            "customerProfile": {"name": "Adatum Corporation", "address": {"postalCode": "98052", "country": "US"},
                                "team": [{"firstName": "Ravi", "lastName": "Kumar", "email": "ravi@adatum.example"}]},
            "details": {"dealValue": 48000, "currency": "USD"}
        }));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid)).await.unwrap_or_else(|| panic!("no opportunity for {rid}\n{}", env.host_log()));
        println!("flow 3 latency: referral-created webhook -> opportunity created in {:?}", started.elapsed());
        let oid = opp["opportunityid"].as_str().unwrap().to_owned();
        assert_eq!(opp["cosell_syncwithpartnercenter"], true);
        assert_eq!(opp["statecode"], 0, "an open opportunity");
        assert_eq!(opp["_customerid_value"], account.as_str(), "the existing account was matched");
        let contacts = env.seller.query("contacts", &format!("$filter=_parentcustomerid_value eq {account}")).await.unwrap();
        assert!(contacts.iter().any(|c| c["emailaddress1"] == "ravi@adatum.example"), "the customer contact was added");

        // referral-updated: only what differs is written.
        let etag_before = env.etag(&oid).await;
        let started = Instant::now();
        env.pc.microsoft().update(&rid, json!({"details": {"dealValue": 52000}})).unwrap();
        let opp = env.wait_opportunity(&oid, "the new estimated value", |o| o["estimatedvalue"].as_f64() == Some(52000.0)).await;
        println!("flow 4 latency: referral-updated webhook -> opportunity updated in {:?}", started.elapsed());
        assert_eq!(opp["name"].as_str().map(|n| n.trim_end_matches(" ✔")), Some("Adatum data platform"));
        assert!(opp["cosell_audit"].as_str().unwrap().contains("estimatedvalue"));
        assert_ne!(env.etag(&oid).await, etag_before);
        let accounts = env.seller.query("accounts", "$filter=name eq 'Adatum Corporation'").await.unwrap();
        assert_eq!(accounts.len(), 1, "no second account was created");

        // A customer the CRM does not know yet: its account is created (and found again by name,
        // even with `&` and `+` in it).
        let referral = env.pc.microsoft().create_incoming(json!({
            "name": "Blue Yonder pilot",
            "customerProfile": {"name": "Blue Yonder & Sons+", "address": {"postalCode": "10001", "country": "US"}}
        }));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid)).await.expect("an opportunity");
        // A name with characters that mean something in a query string.
        let filter = format!("$filter=name eq {}", literal("Blue Yonder & Sons+"));
        let accounts = env.seller.query("accounts", &filter).await.unwrap();
        assert_eq!(accounts.len(), 1, "the account was created");
        assert_eq!(opp["_customerid_value"], accounts[0]["accountid"]);
    })
    .await;
}

async fn flow2_accepting_and_declining_in_the_crm_answers_microsoft(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        let mut pairs = Vec::new();
        for name in ["Accept me", "Decline me"] {
            let referral = env.pc.microsoft().create_incoming(json!({"name": name}));
            assert_eq!(
                (referral["status"].as_str(), referral["substatus"].as_str()),
                (Some("New"), Some("Pending"))
            );
            let rid = referral["id"].as_str().unwrap().to_owned();
            let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid))
                .await
                .unwrap_or_else(|| panic!("no opportunity for {rid}\n{}", env.host_log()));
            // Pending in Partner Center = the pending status (On Hold) in the CRM.
            assert_eq!(opp["statuscode"], 2, "{opp:#}");
            pairs.push((opp["opportunityid"].as_str().unwrap().to_owned(), rid));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The seller accepts: moves the opportunity to In Progress.
        let (accept_oid, accept_rid) = &pairs[0];
        env.seller
            .update("opportunities", accept_oid, &json!({"statuscode": 1}), None)
            .await
            .unwrap();
        env.wait_referral("Active/Accepted", |r| {
            r["id"] == accept_rid.as_str()
                && r["status"] == "Active"
                && r["substatus"] == "Accepted"
        })
        .await;
        // The seller declines: closes it as lost while the referral is still new.
        let (decline_oid, decline_rid) = &pairs[1];
        env.seller
            .lose_opportunity(decline_oid, 4, "Not for us")
            .await
            .unwrap();
        env.wait_referral("Closed/Declined", |r| {
            r["id"] == decline_rid.as_str()
                && r["status"] == "Closed"
                && r["substatus"] == "Declined"
        })
        .await;
    })
    .await;
}

async fn closings_in_partner_center_close_the_opportunity_through_the_running_host(
    backend: Backend,
) {
    SyncEnv::run_on(backend, "", |env| async move {
        // (outcome, its referral) for four Microsoft referrals that each got their opportunity.
        let mut cases = Vec::new();
        for outcome in ["Won", "Lost", "Declined", "Expired"] {
            let referral = env
                .pc
                .microsoft()
                .create_incoming(json!({"name": format!("Closing as {outcome}")}));
            let rid = referral["id"].as_str().unwrap().to_owned();
            let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid))
                .await
                .unwrap_or_else(|| panic!("no opportunity for {rid}\n{}", env.host_log()));
            cases.push((
                outcome,
                rid,
                opp["opportunityid"].as_str().unwrap().to_owned(),
            ));
        }
        let microsoft = env.pc.microsoft();
        for (outcome, rid, _) in &cases {
            match *outcome {
                "Won" | "Lost" => {
                    microsoft.set_state(rid, "Active", "Accepted").unwrap();
                    microsoft.set_state(rid, "Closed", outcome).unwrap();
                }
                "Declined" => {
                    microsoft.set_state(rid, "Closed", "Declined").unwrap();
                }
                _ => {}
            }
        }
        // Fourteen days without an answer: Partner Center expires the last one (and tells
        // cosell through its webhook, as for every change).
        env.pc.clock().advance(chrono::TimeDelta::days(15));
        let expired = env.pc.referral(&cases[3].1).unwrap();
        assert_eq!(
            (expired["status"].as_str(), expired["substatus"].as_str()),
            (Some("Closed"), Some("Expired"))
        );

        // (statecode, statuscode) the default mapping documents for each outcome.
        let expected = [(1, 3), (2, 5), (2, 4), (2, 4)];
        for ((outcome, rid, oid), (state, status)) in cases.iter().zip(expected) {
            let opp = env
                .wait_opportunity(oid, &format!("the opportunity closed as {outcome}"), |o| {
                    o["statecode"] == state && o["statuscode"] == status
                })
                .await;
            assert!(
                opp["cosell_audit"]
                    .as_str()
                    .is_some_and(|a| a.contains(&format!("{rid} (Closed/{outcome})"))),
                "the seller sees what cosell did to {rid}: {opp:#}"
            );
        }
    })
    .await;
}
