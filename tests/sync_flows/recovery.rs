//! Recovery, each record synced once: a co-sell create interrupted between its two steps is
//! finished without a second referral; events stored before a SIGKILL are synced after the
//! restart; writes Dataverse applies but whose answers are lost make one opportunity, account
//! and contact, and creates whose answers Partner Center loses one referral each; an
//! opportunity that carries a referral's id without a link is linked, not made again; with every
//! webhook lost, the reconciliation finds every referral past its first page; changes made
//! while the delta link expired are synced after a full read.

use super::*;
use crate::support::backend::{Backend, on_both_backends};
use crate::support::sync_env::{SETTLE, wait_until};
use cosell::connections::partner_center::PartnerCenterClient;
use cosell::sinks::partner_center::targets_microsoft;
use std::time::Duration;

on_both_backends!(
    flow1_a_co_sell_create_interrupted_between_its_two_steps_is_finished,
    events_stored_before_a_crash_are_synced_after_the_restart,
    when_dataverse_loses_the_answers_of_applied_writes_a_referral_creates_each_row_once,
    when_partner_center_loses_the_answers_of_creates_each_opportunity_gets_one_referral,
    an_opportunity_carrying_a_referrals_id_without_a_link_is_linked_not_made_again,
    the_reconciliation_finds_every_referral_whose_webhook_was_lost_past_the_first_page,
    changes_made_while_the_delta_link_expired_are_synced_after_a_full_read,
);

async fn flow1_a_co_sell_create_interrupted_between_its_two_steps_is_finished(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        // The opportunity exists, not yet marked for sync.
        let oid = seller_creates_opportunity_with(&env, "Half done", Some(HELP_WORKLOAD), json!({"cosell_syncwithpartnercenter": false})).await;
        // A previous run noted its intent, created the partner's Shared referral, then stopped
        // before it saw the answer and before the Microsoft half (a crash, Partner Center down).
        let store = env.state_store().sync;
        store.begin_referral_intent(&oid, chrono::Utc::now().timestamp_millis()).unwrap();
        let pc = PartnerCenterClient::new(support::partner_center_settings(&env.pc, &env.pc_server)).unwrap();
        let first = pc
            .create_referral(&json!({
                "name": "Half done", "type": "Shared", "externalReferenceId": oid, "qualification": "SalesQualified",
                "customerProfile": {"name": "Half done Inc", "address": {"country": "US"},
                                    "team": [{"firstName": "Dana", "lastName": "Buyer", "email": "dana@half.example"}]},
                "consent": {"consentToToShareInfoWithOthers": true, "consentToContact": true, "consentToShareReferralWithMicrosoftSellers": true},
                "details": {"dealValue": 25000, "currency": "EUR", "requirements": {"solutions": [{"id": "SOL-1234", "type": "Name"}]}},
                "inviteContext": {"assistanceRequestCode": "WorkloadSpecificValueProposition"}
            }))
            .await
            .unwrap();
        let engagement = first["engagementId"].clone();
        env.seller.update("opportunities", &oid, &json!({"cosell_syncwithpartnercenter": true}), None).await.unwrap();
        // The sync adopts the referral it made and finishes the co-sell.
        env.wait_referral("the Microsoft half", |r| r["engagementId"] == engagement && targets_microsoft(r)).await;
        let opp = env.wait_opportunity(&oid, "the referral id", |o| referral_id_of(o).is_some()).await;
        assert_eq!(referral_id_of(&opp).as_deref(), first["id"].as_str(), "no second partner referral was made");
        let partner_halves = env.pc.referrals().into_iter().filter(|r| r["externalReferenceId"] == oid.as_str() && !targets_microsoft(r)).count();
        assert_eq!(partner_halves, 1);
    })
    .await;
}

async fn events_stored_before_a_crash_are_synced_after_the_restart(backend: Backend) {
    // No pollers: only the stored queue can bring these events back after the crash. An event
    // running when the host died comes back when its lease runs out on PostgreSQL (a store that
    // replicas share cannot tell a dead host's claim from a live replica's), at once on SQLite
    // (one host): the lease is short here, so both are seen within the test's patience.
    SyncEnv::run_polling_every_on(backend, "[sync]\nretry_base_ms = 200\nlease_secs = 4\n", 0, |mut env| async move {
        // Partner Center is down: the opportunities' events are stored and wait for a retry.
        env.pc.faults().set(cosell_emulators::common::faults::FaultConfig { error_rate: 1.0, ..Default::default() }).expect("valid faults");
        let mut opportunities = Vec::new();
        for i in 0..5 {
            opportunities.push(seller_creates_opportunity(&env, &format!("Crash test {i}"), None).await);
        }
        let stored = wait_until(SETTLE, || async {
            let queue = env.admin_get("/admin/v1/queue").await;
            (queue["pending"].as_u64().unwrap_or(0) + queue["running"].as_u64().unwrap_or(0) >= 5).then_some(())
        })
        .await;
        assert!(stored.is_some(), "the events were stored\n{}", env.host_log());
        // The host dies without a chance to clean up, and Partner Center comes back.
        env.kill_host();
        env.pc.faults().set(Default::default()).expect("valid faults");
        env.start_host().await;
        for oid in &opportunities {
            env.wait_opportunity(oid, "its referral after the restart", |o| referral_id_of(o).is_some()).await;
        }
        let referrals = env.pc.referrals().into_iter().filter(|r| opportunities.iter().any(|o| r["externalReferenceId"] == o.as_str())).count();
        println!("crash: 5 events stored before SIGKILL, 5 referrals after the restart, {referrals} in Partner Center");
        assert_eq!(referrals, 5, "each opportunity has exactly one referral");
    })
    .await;
}

/// Dataverse applies every write but the answer is lost (answered 500, then on a second
/// referral the connection dropped) until the opportunity exists: the host finds out that its
/// creates landed, and a run of the record again finds what an earlier one created. One
/// opportunity, one account and one contact each, even for a contact without an email.
async fn when_dataverse_loses_the_answers_of_applied_writes_a_referral_creates_each_row_once(
    backend: Backend,
) {
    use cosell_emulators::common::faults::FaultConfig;
    SyncEnv::run_on(backend, "[sync]\nretry_base_ms = 200\nmax_attempts = 40\n", |env| async move {
        let lost = FaultConfig::every_answer_lost();
        for (n, fault) in lost.into_iter().enumerate() {
            let name = format!("Lost Answers {n}");
            env.dv.faults().set(fault).expect("valid faults");
            let referral = env.pc.microsoft().create_incoming(json!({
                "name": format!("Lost answers deal {n}"),
                "customerProfile": {"name": name, "address": {"postalCode": format!("9920{n}"), "country": "US"},
                                    "team": [{"firstName": "Noor", "lastName": "Haddad", "phoneNumber": "+1 425 555 0142"}]},
                "details": {"dealValue": 31000, "currency": "USD"}
            }));
            let rid = referral["id"].as_str().unwrap().to_owned();
            wait_until(SETTLE, || opportunity_for_referral(&env, &rid))
                .await
                .unwrap_or_else(|| panic!("no opportunity for {rid}\n{}", env.host_log()));
            let injected = env.dv.faults().injected();
            assert!(injected.applied_then_failed + injected.applied_then_dropped > 0);
            env.dv.faults().set(FaultConfig::default()).expect("valid faults");
            wait_until(SETTLE, || async {
                let queue = env.admin_get("/admin/v1/queue").await;
                (queue["pending"] == 0 && queue["running"] == 0).then_some(())
            })
            .await
            .expect("the host catches up");
            assert_eq!(queue_dead(&env).await, 0);
            assert_eq!(env.opportunities_for_referral(&rid).await.len(), 1, "one opportunity");
            let accounts = env.seller.query("accounts", &format!("$select=accountid&$filter=name eq '{name}'")).await.unwrap();
            assert_eq!(accounts.len(), 1, "one account: {accounts:?}");
            let account = accounts[0]["accountid"].as_str().unwrap();
            let contacts = env.seller.query("contacts", &format!("$select=lastname&$filter=_parentcustomerid_value eq {account}")).await.unwrap();
            assert_eq!(contacts.len(), 1, "one contact: {contacts:?}");
        }
    })
    .await;
}

/// An opportunity already carries a referral's id, but the host has no link for it (the run that
/// made it lost its state, or a backfill made it): the referral's sync links that opportunity
/// instead of creating a second one. With the Referral Identifier an alternate key (as
/// `cosell dataverse provision` makes it), the host asks nothing before its create; Dataverse
/// refuses the create with 412, and the host looks the opportunity up only then.
async fn an_opportunity_carrying_a_referrals_id_without_a_link_is_linked_not_made_again(
    backend: Backend,
) {
    use cosell_emulators::common::faults::FaultConfig;
    // No pollers: the host hears of the referral only through the opportunity's own event.
    SyncEnv::run_polling_every_on(backend, "", 0, |env| async move {
        let drop_webhooks = |rate| FaultConfig {
            webhook_drop_rate: rate,
            ..FaultConfig::default()
        };
        env.pc
            .faults()
            .set(drop_webhooks(1.0))
            .expect("valid faults");
        let referral = env
            .pc
            .microsoft()
            .create_incoming(json!({"name": "Made before the link was lost"}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        env.pc
            .faults()
            .set(drop_webhooks(0.0))
            .expect("valid faults");
        let oid = seller_creates_opportunity_with(
            &env,
            "Made before the link was lost",
            None,
            json!({"cosell_referralidentifier": rid}),
        )
        .await;
        let store = env.state_store().sync;
        let linked = wait_until(SETTLE, || async {
            let link = store.link_by_referral(&rid).ok()??;
            let synced = link.pc_hash.is_some() && link.last_error.is_none();
            (link.opportunity_id.as_deref() == Some(oid.as_str()) && synced).then_some(link)
        })
        .await;
        assert!(
            linked.is_some(),
            "the referral was never synced onto opportunity {oid}\n{}",
            env.host_log()
        );
        let carrying: Vec<Value> = env.opportunities_for_referral(&rid).await;
        assert_eq!(
            carrying.len(),
            1,
            "one opportunity carries the referral: {carrying:?}"
        );
        assert_eq!(queue_dead(&env).await, 0, "nothing was dead-lettered");
    })
    .await;
}

async fn queue_dead(env: &SyncEnv) -> i64 {
    env.admin_get("/admin/v1/queue").await["dead"]
        .as_i64()
        .unwrap_or(-1)
}

async fn when_partner_center_loses_the_answers_of_creates_each_opportunity_gets_one_referral(
    backend: Backend,
) {
    use cosell_emulators::common::faults::FaultConfig;
    SyncEnv::run_on(
        backend,
        "[sync]\nretry_base_ms = 200\nmax_attempts = 40\n",
        |env| async move {
            let lost = FaultConfig::every_answer_lost();
            for (n, fault) in lost.into_iter().enumerate() {
                env.pc.faults().set(fault).expect("valid faults");
                let shared = seller_creates_opportunity(
                    &env,
                    &format!("Lost co-sell {n}"),
                    Some(HELP_WORKLOAD),
                )
                .await;
                let private =
                    seller_creates_opportunity(&env, &format!("Lost private deal {n}"), None).await;
                for oid in [&shared, &private] {
                    env.wait_opportunity(oid, "the referral id written back", |o| {
                        referral_id_of(o).is_some()
                    })
                    .await;
                }
                let injected = env.pc.faults().injected();
                assert!(injected.applied_then_failed + injected.applied_then_dropped > 0);
                env.pc
                    .faults()
                    .set(FaultConfig::default())
                    .expect("valid faults");
                // Pollers and retries have had their chance to create anything twice.
                tokio::time::sleep(Duration::from_secs(3)).await;
                for (oid, halves) in [(&shared, 2), (&private, 1)] {
                    let made: Vec<Value> = env
                        .pc
                        .referrals()
                        .into_iter()
                        .filter(|r| r["externalReferenceId"] == oid.as_str())
                        .collect();
                    assert_eq!(made.len(), halves, "{oid}: {made:#?}\n{}", env.host_log());
                    assert_eq!(made.iter().filter(|r| !targets_microsoft(r)).count(), 1);
                }
            }
            assert_eq!(queue_dead(&env).await, 0);
        },
    )
    .await;
}

async fn the_reconciliation_finds_every_referral_whose_webhook_was_lost_past_the_first_page(
    backend: Backend,
) {
    use cosell_emulators::common::faults::FaultConfig;
    SyncEnv::run_polling_every_on(backend, "", 1, |env| async move {
        // The poller's first run only notes where it starts.
        tokio::time::sleep(Duration::from_secs(2)).await;
        env.pc
            .faults()
            .set(FaultConfig {
                webhook_drop_rate: 1.0,
                ..FaultConfig::default()
            })
            .expect("valid faults");
        // More than one page of the poller's list (100 a page).
        let ids: Vec<String> = (0..130)
            .map(|i| {
                env.pc
                    .microsoft()
                    .create_incoming(json!({"name": format!("Unannounced {i}")}))["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let all_synced = wait_until(Duration::from_secs(90), || async {
            let rows = env
                .seller
                .query(
                    "opportunities",
                    "$select=cosell_referralidentifier&$filter=startswith(name,'Unannounced')",
                )
                .await
                .ok()?;
            let seen: std::collections::HashSet<&str> = rows
                .iter()
                .filter_map(|r| r["cosell_referralidentifier"].as_str())
                .collect();
            ids.iter()
                .all(|id| seen.contains(id.as_str()))
                .then_some(rows.len())
        })
        .await;
        assert_eq!(
            all_synced,
            Some(130),
            "every referral once\n{}",
            env.host_log()
        );
    })
    .await;
}

async fn changes_made_while_the_delta_link_expired_are_synced_after_a_full_read(backend: Backend) {
    SyncEnv::run_polling_every_on(backend, "", 1, |mut env| async move {
        // The poller has saved its delta link.
        tokio::time::sleep(Duration::from_secs(3)).await;
        env.kill_host();
        // While the host is down (its webhook unreachable), sellers change things...
        let mut made = Vec::new();
        for i in 0..3 {
            made.push(seller_creates_opportunity(&env, &format!("While away {i}"), None).await);
        }
        // ...and more than a week passes: the saved delta link has expired.
        env.dv.clock().advance(chrono::TimeDelta::days(8));
        env.start_host().await;
        for oid in &made {
            env.wait_opportunity(oid, "its referral after the recovery", |o| {
                referral_id_of(o).is_some()
            })
            .await;
        }
        let log = env.host_log();
        assert_eq!(
            log.matches("refused the saved delta link").count(),
            1,
            "logged once:\n{log}"
        );
    })
    .await;
}
