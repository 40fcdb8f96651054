//! Flow 5, echoes: cosell recognises its own writes when they come back (both webhooks, both
//! pollers) and never ping-pongs; the echo of its own write is known by the version the
//! delivery names, without a read, while a seller's no-op update is read and found as last
//! synced; an echo delivered before the writing run has recorded its version waits for that
//! run at the listener and is answered there, not queued; the Update step Dataverse calls is
//! filtered to the columns the mapping reads, so other changes send nothing.

use super::*;
use crate::support::backend::{Backend, on_both_backends};
use crate::support::sync_env::{SETTLE, wait_until};
use std::time::Duration;

on_both_backends!(
    flow5_cosell_recognises_its_own_writes_and_never_ping_pongs,
    flow5_the_echo_of_cosells_own_write_is_known_by_its_version_unread,
    flow5_echoes_delivered_before_their_runs_settle_are_answered_not_queued,
    the_update_step_sends_only_changes_to_columns_the_mapping_reads,
);

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

async fn flow5_echoes_delivered_before_their_runs_settle_are_answered_not_queued(backend: Backend) {
    // Webhooks only. The emulator delivers a write's webhook as soon as it commits, before the
    // run that wrote has recorded the new version: each such echo waits for that settle at the
    // intake instead of taking a place in the queue.
    SyncEnv::run_polling_every_on(backend, "", 0, |env| async move {
        const REFERRALS: usize = 6;
        let mut opportunities = Vec::new();
        for i in 0..REFERRALS {
            let referral = env.pc.microsoft().create_incoming(json!({
                "name": format!("Echo drill {i}"),
                "details": {"dealValue": 1000 + i, "currency": "USD"}
            }));
            let rid = referral["id"].as_str().unwrap().to_owned();
            let opportunity = wait_until(SETTLE, || opportunity_for_referral(&env, &rid))
                .await
                .unwrap_or_else(|| panic!("no opportunity for {rid}\n{}", env.host_log()));
            opportunities.push(opportunity["opportunityid"].as_str().unwrap().to_owned());
        }
        let echoes = wait_until(SETTLE, || async {
            let echoes = dataverse_deliveries_with(&env, "echo").await;
            (echoes >= REFERRALS as f64).then_some(echoes)
        })
        .await;
        let Some(echoes) = echoes else {
            panic!("the creates' echoes\n{}", env.metrics_text().await)
        };
        let all = settled_deliveries(&env).await;
        assert_eq!(
            all,
            echoes,
            "every Dataverse delivery was an echo answered at the intake, none queued:\n{}",
            env.metrics_text().await
        );
        assert_eq!(opportunities.len(), REFERRALS);
    })
    .await;
}

/// Every `cosell_intake_events_total` of Dataverse's webhook, whatever its result.
async fn dataverse_deliveries(env: &SyncEnv) -> f64 {
    dataverse_deliveries_with(env, "").await
}

/// The `cosell_intake_events_total` of Dataverse's webhook whose result is `result` (any
/// result when empty).
async fn dataverse_deliveries_with(env: &SyncEnv, result: &str) -> f64 {
    let result = format!("result=\"{result}");
    env.metrics_text()
        .await
        .lines()
        .filter(|l| {
            l.starts_with("cosell_intake_events_total{")
                && l.contains("source=\"dataverse-webhook\"")
                && l.contains(&result)
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
