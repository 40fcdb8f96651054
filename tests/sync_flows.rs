//! The sync engine end to end: a real `cosell serve` process syncing the two emulators over
//! real HTTP, one test per flow, each run twice: with the host's state in a SQLite file
//! (`…::sqlite`) and in a PostgreSQL database (`…::postgres`). Each test prints the latency it
//! measured (webhook to write on the other side).

mod support;

use cosell::connections::partner_center::PartnerCenterClient;
use cosell::sinks::dataverse::lookups::literal;
use cosell::sinks::partner_center::targets_microsoft;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::backend::{Backend, on_both_backends};
use support::seller::{self, customer};
use support::sync_env::{SETTLE, SyncEnv, wait_until};

const HELP_WORKLOAD: i64 = 100_000_000;

on_both_backends!(
    flow1_a_crm_opportunity_becomes_a_referral_and_its_id_comes_back,
    flow2_crm_changes_are_patched_onto_the_referral_and_closing_sets_its_status,
    flow3_and_4_a_microsoft_referral_becomes_an_opportunity_and_its_updates_follow,
    flow5_cosell_recognises_its_own_writes_and_never_ping_pongs,
    flow5_the_echo_of_cosells_own_write_is_known_by_its_version_unread,
    flow6_conflicting_changes_follow_the_per_field_owner,
    flow6_cosells_own_write_is_no_conflict_while_a_sellers_edit_waits,
    flow7_a_failed_sync_is_shown_to_the_seller_and_retried_when_fixed,
    dead_letters_are_listed_and_replayed_with_the_cli,
    flow2_accepting_and_declining_in_the_crm_answers_microsoft,
    flow2_a_referral_changed_meanwhile_is_read_again_not_overwritten,
    setup_commands_can_run_next_to_a_running_host,
    flow1_a_co_sell_create_interrupted_between_its_two_steps_is_finished,
    events_stored_before_a_crash_are_synced_after_the_restart,
    when_dataverse_loses_the_answers_of_applied_writes_a_referral_creates_each_row_once,
    when_partner_center_loses_the_answers_of_creates_each_opportunity_gets_one_referral,
    the_reconciliation_finds_every_referral_whose_webhook_was_lost_past_the_first_page,
    a_referral_is_shared_with_microsoft_only_when_a_seller_asks_for_help,
    closings_in_partner_center_close_the_opportunity_through_the_running_host,
    the_update_step_sends_only_changes_to_columns_the_mapping_reads,
    changes_made_while_the_delta_link_expired_are_synced_after_a_full_read,
);

/// A new opportunity marked "Sync with Partner Center"; `help` asks Microsoft for help.
async fn seller_creates_opportunity(env: &SyncEnv, name: &str, help: Option<i64>) -> String {
    seller_creates_opportunity_with(env, name, help, json!({})).await
}

/// [`seller_creates_opportunity`] with `extra` columns set (or cleared with `null`).
async fn seller_creates_opportunity_with(
    env: &SyncEnv,
    name: &str,
    help: Option<i64>,
    extra: Value,
) -> String {
    let mut columns = json!({
        "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({})", env.currency_id("EUR").await),
    });
    if let Some(help) = help {
        columns["cosell_howcanmicrosofthelp"] = json!(help);
    }
    for (column, value) in extra.as_object().unwrap() {
        columns[column] = value.clone();
    }
    let postal = format!("{:05}", name.len() * 97);
    seller::creates_opportunity(env, name, &postal, columns).await
}

fn referral_id_of(opportunity: &Value) -> Option<String> {
    opportunity["cosell_referralidentifier"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Creates an opportunity and waits until its referral exists; answers (opportunity, referral).
async fn synced_pair(env: &SyncEnv, name: &str, help: Option<i64>) -> (String, String) {
    let oid = seller_creates_opportunity(env, name, help).await;
    let opp = env
        .wait_opportunity(&oid, "the referral id written back", |o| {
            referral_id_of(o).is_some()
        })
        .await;
    (oid, referral_id_of(&opp).unwrap())
}

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

async fn opportunity_for_referral(env: &SyncEnv, rid: &str) -> Option<Value> {
    env.opportunities_for_referral(rid).await.into_iter().next()
}

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

async fn flow5_cosell_recognises_its_own_writes_and_never_ping_pongs(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        let (oid, rid) = synced_pair(&env, "Litware migration", Some(HELP_WORKLOAD)).await;
        env.wait_opportunity(&oid, "the mark", |o| {
            o["name"].as_str().is_some_and(|n| n.ends_with('✔'))
        })
        .await;
        // Let every echo (both webhooks, both pollers) come and go.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let referral_etag = env.pc.referral(&rid).unwrap()["eTag"].clone();
        let opportunity_etag = env.etag(&oid).await;
        // An update that changes nothing still fires Dataverse's webhook.
        let name = env.opportunity(&oid).await["name"].clone();
        env.seller
            .update("opportunities", &oid, &json!({"name": name}), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            env.pc.referral(&rid).unwrap()["eTag"],
            referral_etag,
            "the referral was not written again"
        );
        let now = env.etag(&oid).await;
        // The seller's no-op update is one write; cosell added none.
        assert_ne!(now, opportunity_etag);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(env.etag(&oid).await, now, "no ping-pong");
        let echoes = env.metric("cosell_sync_echoes_suppressed_total", &[]).await;
        println!("flow 5: {echoes} echoes recognised and dropped");
        assert!(echoes >= 2.0, "the echoes were recognised: {echoes}");
    })
    .await;
}

async fn flow5_the_echo_of_cosells_own_write_is_known_by_its_version_unread(backend: Backend) {
    // Webhooks only: a poller's event carries no version and is read.
    SyncEnv::run_polling_every_on(backend, "", 0, |env| async move {
        let referral = env.pc.microsoft().create_incoming(json!({
            "name": "Fabrikam analytics",
            "customerProfile": {"name": "Fabrikam", "address": {"postalCode": "98004", "country": "US"}},
            "details": {"dealValue": 30000, "currency": "USD"}
        }));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid))
            .await
            .unwrap_or_else(|| panic!("no opportunity for {rid}\n{}", env.host_log()));
        let oid = opp["opportunityid"].as_str().unwrap().to_owned();
        env.pc
            .microsoft()
            .update(&rid, json!({"details": {"dealValue": 31000}}))
            .unwrap();
        env.wait_opportunity(&oid, "the new value", |o| {
            o["estimatedvalue"].as_f64() == Some(31000.0)
        })
        .await;
        // The deliveries of cosell's create and update name the versions it recorded as
        // synced: each run ends without reading the opportunity.
        let unread = "the delivery names the version cosell last synced";
        let log = wait_until(SETTLE, || async {
            let log = env.host_log();
            (log.matches(unread).count() >= 2).then_some(log)
        })
        .await
        .unwrap_or_else(|| panic!("no echo known by its version\n{}", env.host_log()));
        assert!(log.contains(&oid), "{log}");
        // What cosell recorded after its update (from the write's answer, not a read) is the
        // opportunity as a read gives it: a seller's update that changes nothing is read (a
        // version of its own) and found as last synced.
        let name = env.opportunity(&oid).await["name"].clone();
        env.seller
            .update("opportunities", &oid, &json!({"name": name}), None)
            .await
            .unwrap();
        wait_until(SETTLE, || async {
            env.host_log()
                .contains("the opportunity is as last synced")
                .then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("the no-op update was not an echo\n{}", env.host_log()));
        // And a seller's own change (another version) is read and synced as ever.
        let etag = env.pc.referral(&rid).unwrap()["eTag"].clone();
        env.seller
            .update("opportunities", &oid, &json!({"description": "Seller's note"}), None)
            .await
            .unwrap();
        wait_until(SETTLE, || async {
            (env.pc.referral(&rid).unwrap()["eTag"] != etag).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("the seller's change was not synced\n{}", env.host_log()));
    })
    .await;
}

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

async fn flow7_a_failed_sync_is_shown_to_the_seller_and_retried_when_fixed(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        // Help from Microsoft without a solution id: the mapping refuses it.
        let oid = seller_creates_opportunity_with(
            &env,
            "Wingtip helpdesk",
            Some(HELP_WORKLOAD),
            json!({"cosell_products": null}),
        )
        .await;
        let opp = env
            .wait_opportunity(&oid, "the failure mark", |o| {
                o["name"].as_str().is_some_and(|n| n.ends_with('✖'))
            })
            .await;
        let audit = opp["cosell_audit"].as_str().unwrap_or_default();
        assert!(
            audit.contains("could not sync"),
            "the reason is in the Audit column: {audit}"
        );
        assert!(referral_id_of(&opp).is_none());
        // Nothing loops while the record stays broken.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let etag = env.etag(&oid).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(env.etag(&oid).await, etag);
        // The seller fixes it: the record syncs.
        env.seller
            .update(
                "opportunities",
                &oid,
                &json!({"cosell_products": "SOL-1234"}),
                None,
            )
            .await
            .unwrap();
        let opp = env
            .wait_opportunity(&oid, "the referral after the fix", |o| {
                referral_id_of(o).is_some() && o["name"].as_str().is_some_and(|n| n.ends_with('✔'))
            })
            .await;
        assert!(env.pc.referral(&referral_id_of(&opp).unwrap()).is_some());
    })
    .await;
}

async fn dead_letters_are_listed_and_replayed_with_the_cli(backend: Backend) {
    SyncEnv::run_on(
        backend,
        "[sync]\nmax_attempts = 2\nretry_base_ms = 200\n",
        |env| async move {
            // Partner Center throttles every call: it answers, so this is no outage (that
            // would pause the engine and spend no attempts, see `reliability.rs`), and every
            // create fails.
            env.throttle_partner_center_every_call();
            let oid = seller_creates_opportunity(&env, "Relecloud backup", None).await;
            // Each attempt is the client's own retries (a second's `Retry-After` each) plus the
            // queue's.
            let listed = wait_until(Duration::from_secs(60), || async {
                let out = env.cosell_admin(&["dead-letters", "list"]);
                out.contains(&oid).then_some(out)
            })
            .await
            .unwrap_or_else(|| panic!("no dead letter\n{}", env.host_log()));
            assert!(listed.contains("gave up after 2 attempts"), "{listed}");
            let opp = env.opportunity(&oid).await;
            assert!(opp["name"].as_str().unwrap().ends_with('✖'));
            env.pc
                .faults()
                .set(Default::default())
                .expect("valid faults");
            let metrics = reqwest::get(format!("{}/metrics", env.admin_url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                metrics
                    .lines()
                    .any(|l| l.starts_with("cosell_queue_events{state=\"dead\"}")
                        && !l.ends_with(" 0")),
                "{metrics}"
            );
            let health: serde_json::Value = reqwest::get(format!("{}/healthz", env.admin_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                health["sync"]["queue"]["dead"].as_u64().unwrap_or(0) >= 1,
                "{health}"
            );
            env.cosell_admin(&["dead-letters", "replay", "--all"]);
            env.wait_opportunity(&oid, "the referral after the replay", |o| {
                referral_id_of(o).is_some()
            })
            .await;
        },
    )
    .await;
}

on_both_backends!(the_queue_is_listed_with_the_cli_and_the_admin_api);

/// The events of `record` that `GET /admin/v1/queue/events?state=<state>` lists.
async fn queued(env: &SyncEnv, state: &str, record: &str) -> Vec<Value> {
    let answer = env
        .admin_get(&format!("/admin/v1/queue/events?state={state}&limit=100"))
        .await;
    answer["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["record_id"] == record)
        .cloned()
        .collect()
}

/// `cosell queue` and `GET /admin/v1/queue/events`: an opportunity whose referral Partner
/// Center keeps throttling is listed as running (on PostgreSQL: by this replica), then as
/// pending with its attempt, when it runs again and why it failed; a state that is not one of
/// the queue's is refused, saying which are.
async fn the_queue_is_listed_with_the_cli_and_the_admin_api(backend: Backend) {
    SyncEnv::run_on(
        backend,
        // The first retry waits 5 minutes: the event stays pending while the test looks.
        "[sync]\nmax_attempts = 5\nretry_base_ms = 300000\n",
        |env| async move {
            // Every call throttled (an answer, not an outage): each attempt is the client's
            // own retries, a second each, and then fails.
            env.throttle_partner_center_every_call();
            let oid = seller_creates_opportunity(&env, "Queue listing", None).await;
            let running = wait_until(Duration::from_secs(30), || async {
                queued(&env, "running", &oid).await.pop()
            })
            .await
            .unwrap_or_else(|| panic!("never listed as running\n{}", env.host_log()));
            assert_eq!(running["side"], "dataverse", "{running}");
            assert_eq!(running["attempts"], 1, "{running}");
            assert!(running["lease_until"].is_string(), "{running}");
            let health = env.admin_get("/healthz").await;
            match backend {
                Backend::Sqlite => assert!(running["claimed_by"].is_null(), "{running}"),
                _ => assert_eq!(running["claimed_by"], health["replica_id"], "{running}"),
            }

            // Settled: the record's one event (a change noticed by the poller while the first
            // attempt ran has been folded into it) waits for its retry.
            let pending = wait_until(Duration::from_secs(60), || async {
                let mut all = queued(&env, "all", &oid).await;
                let settled = all.len() == 1
                    && all[0]["state"] == "pending"
                    && all[0]["last_error"].is_string();
                settled.then(|| all.remove(0))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "never settled pending after its attempt\n{}",
                    env.host_log()
                )
            });
            assert_eq!(pending["attempts"], 1, "{pending}");
            assert!(pending["claimed_by"].is_null(), "{pending}");
            let error = pending["last_error"].as_str().expect("the attempt's error");
            let next =
                chrono::DateTime::parse_from_rfc3339(pending["available_at"].as_str().unwrap())
                    .unwrap();
            assert!(
                next > chrono::Utc::now() + chrono::Duration::minutes(3),
                "{pending}"
            );
            let all = env.admin_get("/admin/v1/queue/events").await;
            assert!(all["counts"]["pending"].as_u64() >= Some(1), "{all}");
            assert!(
                all["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["record_id"] == oid.as_str()),
                "{all}"
            );

            // The table: the record, its state, attempts and the start of its error.
            let table = env.cosell_admin(&["queue", "--state", "pending"]);
            println!("cosell queue --state pending:\n{table}");
            let row = table
                .lines()
                .find(|l| l.contains(&oid))
                .unwrap_or_else(|| panic!("{oid} not in\n{table}"));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(
                cells[1..4],
                ["pending", "dataverse", oid.as_str()],
                "{table}"
            );
            assert_eq!(cells[4], "1", "{table}");
            let error_start: String = error
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(30)
                .collect();
            assert!(
                row.contains(&error_start),
                "{error_start:?} not in\n{table}"
            );
            assert!(table.lines().any(|l| l.starts_with("pending ")), "{table}");
            let json: Value =
                serde_json::from_str(&env.cosell_admin(&["queue", "--json"])).unwrap();
            assert!(
                json["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["record_id"] == oid.as_str()),
                "{json}"
            );

            // A state the queue does not list is refused, naming those it does.
            let refused = reqwest::Client::new()
                .get(format!(
                    "{}/admin/v1/queue/events?state=dead",
                    env.admin_url
                ))
                .bearer_auth(support::TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), 400);
            let message: Value = refused.json().await.unwrap();
            assert!(
                message["error"]
                    .as_str()
                    .unwrap()
                    .contains("pending, running or all"),
                "{message}"
            );
            let cli = std::process::Command::new(env!("CARGO_BIN_EXE_cosell"))
                .args(["queue", "--state", "dead", "--admin-url", &env.admin_url])
                .env("COSELL_ADMIN_TOKEN", support::TOKEN)
                .output()
                .unwrap();
            assert!(!cli.status.success());
            let stderr = String::from_utf8_lossy(&cli.stderr);
            assert!(
                stderr.contains("possible values: pending, running, all"),
                "{stderr}"
            );
        },
    )
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

async fn setup_commands_can_run_next_to_a_running_host(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        // Partner Center sends a test event to the running host, which answers it.
        let hook = format!("{}/webhooks/partner-center", env.webhooks_url);
        env.cosell(&[
            "partner-center",
            "register-webhooks",
            "--url",
            &hook,
            "--overwrite",
            "--validate",
        ]);
        // Provisioning again changes nothing.
        let out = env.cosell(&["dataverse", "provision", "--solution", "cosell"]);
        assert!(out.contains("nothing to do"), "{out}");
        // The command redeemed the refresh token the host holds (they are single use). Once the
        // host's access token expires, it takes the newer one the command kept in the state.
        env.pc.clock().advance(chrono::TimeDelta::hours(2));
        let referral = env
            .pc
            .microsoft()
            .create_incoming(json!({"name": "After the setup"}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid)).await;
        assert!(
            opp.is_some(),
            "the host kept working with Partner Center\n{}",
            env.host_log()
        );
    })
    .await;
}

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

/// Every `cosell_intake_events_total` of Dataverse's webhook, whatever its result.
async fn dataverse_deliveries(env: &SyncEnv) -> f64 {
    env.metrics_text()
        .await
        .lines()
        .filter(|l| {
            l.starts_with("cosell_intake_events_total{")
                && l.contains("source=\"dataverse-webhook\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The Dataverse delivery count once it stopped moving (bounded).
async fn settled_deliveries(env: &SyncEnv) -> f64 {
    let mut last = dataverse_deliveries(env).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = dataverse_deliveries(env).await;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

async fn the_update_step_sends_only_changes_to_columns_the_mapping_reads(backend: Backend) {
    SyncEnv::run_polling_every_on(backend, "", 0, |env| async move {
        let step = env
            .seller
            .query(
                "sdkmessageprocessingsteps",
                "$filter=name eq 'cosell: opportunity Update'",
            )
            .await
            .unwrap();
        let filter = step[0]["filteringattributes"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let columns: Vec<&str> = filter.split(',').collect();
        for read in [
            "cosell_howcanmicrosofthelp",
            "cosell_syncwithpartnercenter",
            "estimatedvalue",
            "description",
        ] {
            assert!(columns.contains(&read), "{read} in {filter}");
        }
        assert!(
            !filter.contains("cosell_audit"),
            "cosell's own write-backs are not sent back: {filter}"
        );
        assert_eq!(step[0]["asyncautodelete"], true);
        let endpoint = env
            .seller
            .query("serviceendpoints", "$filter=name eq 'cosell'")
            .await
            .unwrap();
        assert_eq!(endpoint[0]["messageformat"], 2, "JSON");

        let oid = seller_creates_opportunity_with(
            &env,
            "Filtered deal",
            None,
            json!({"cosell_syncwithpartnercenter": false}),
        )
        .await;
        let created = wait_until(SETTLE, || async {
            (dataverse_deliveries(&env).await >= 1.0).then_some(())
        })
        .await;
        assert!(
            created.is_some(),
            "the create was delivered:\n{}",
            env.metrics_text().await
        );
        let before = settled_deliveries(&env).await;
        env.seller
            .update(
                "opportunities",
                &oid,
                &json!({"closeprobability": 40}),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            settled_deliveries(&env).await,
            before,
            "a column no mapping reads sends nothing"
        );
        env.seller
            .update(
                "opportunities",
                &oid,
                &json!({"description": "Now it matters"}),
                None,
            )
            .await
            .unwrap();
        let after = wait_until(SETTLE, || async {
            let now = dataverse_deliveries(&env).await;
            (now > before).then_some(now)
        })
        .await;
        assert_eq!(
            after,
            Some(before + 1.0),
            "one delivery for a column the mapping reads"
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
