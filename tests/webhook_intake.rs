//! The webhook listener of a running `cosell serve`: what it refuses (bad or missing
//! signatures, certificates off the allow-list, wrong Dataverse credentials, malformed or
//! oversized bodies) is answered 4xx and stores nothing; what it accepts is stored before the
//! 200 and synced; deliveries arriving together are stored together (group commit), and a
//! store failure is answered 503 for every delivery it affects.

mod support;

use cosell_emulators::partner_center::signing::SigningMaterial;
use cosell_emulators::partner_center::webhooks::WebhookEvent;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use support::sync_env::SyncEnv;

/// The `cosell_intake_events_total` counter of `source` and `result`.
async fn intake(env: &SyncEnv, source: &str, result: &str) -> f64 {
    env.metric(
        "cosell_intake_events_total",
        &[("source", source), ("result", result)],
    )
    .await
}

async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_partner_center_deliveries_store_nothing() {
    SyncEnv::run("", |env| async move {
        let url = format!("{}/webhooks/partner-center", env.webhooks_url);
        let event = json!({"EventName": "referral-created", "ResourceUri": "http://x/v1.0/engagements/referrals/abc",
                           "ResourceName": "Referral", "AuditUri": null, "ResourceChangeUtcDate": "2026-12-02T00:00:00Z"})
        .to_string();
        let emulator_cert = format!("{}{}", env.pc_url, cosell_emulators::partner_center::signing::CERTIFICATE_PATH);
        // No signature at all.
        let status = post(&url, &[("content-type", "application/json"), ("x-ms-certificate-url", &emulator_cert), ("x-ms-signature-algorithm", "rsa-sha256")], event.clone()).await;
        assert_eq!(status, 401);
        // A signature that does not match the body.
        let status = post(&url, &[("content-type", "application/json"), ("authorization", "Signature AAAA"), ("x-ms-certificate-url", &emulator_cert), ("x-ms-signature-algorithm", "rsa-sha256")], event.clone()).await;
        assert_eq!(status, 401);
        // Missing certificate URL or algorithm: 400.
        let status = post(&url, &[("content-type", "application/json"), ("authorization", "Signature AAAA"), ("x-ms-signature-algorithm", "rsa-sha256")], event.clone()).await;
        assert_eq!(status, 400);
        // A certificate host outside the allow-list.
        let status = post(&url, &[("content-type", "application/json"), ("authorization", "Signature AAAA"), ("x-ms-certificate-url", "https://attacker.example/cert.cer"), ("x-ms-signature-algorithm", "rsa-sha256")], event.clone()).await;
        assert_eq!(status, 401);
        // Larger than webhooks.max_body_bytes: 413 before anything else.
        let status = post(&url, &[("content-type", "application/json")], vec![b'x'; 300 * 1024]).await;
        assert_eq!(status, 413);
        assert_eq!(intake(&env, "partner-center-webhook", "queued").await, 0.0, "nothing was stored");
        assert!(intake(&env, "partner-center-webhook", "refused").await >= 4.0);
        assert_eq!(env.admin_get("/admin/v1/queue").await["pending"], 0);

        // A genuine delivery from the emulator is stored and synced.
        let referral = env.pc.microsoft().create_incoming(json!({"name": "Genuine"}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let stored = support::sync_env::wait_until(Duration::from_secs(20), || async {
            (intake(&env, "partner-center-webhook", "queued").await >= 1.0).then_some(())
        })
        .await;
        assert!(stored.is_some(), "the signed delivery was stored\n{}", env.host_log());
        let synced = support::sync_env::wait_until(Duration::from_secs(20), || async {
            let audit = env.admin_get(&format!("/admin/v1/audit?record=referral:{rid}")).await;
            audit.to_string().contains("created").then_some(())
        })
        .await;
        assert!(synced.is_some(), "the referral was synced\n{}", env.host_log());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataverse_deliveries_need_the_configured_key_and_a_context() {
    SyncEnv::run("", |env| async move {
        let url = format!("{}/webhooks/dataverse", env.webhooks_url);
        let key = std::fs::read_to_string(env.dir.path().join("secrets/dataverse-webhook-key")).unwrap();
        let context = json!({"PrimaryEntityName": "opportunity", "PrimaryEntityId": "7f3c2a52-0000-4000-8000-000000000001", "MessageName": "Update"}).to_string();
        assert_eq!(post(&url, &[("content-type", "application/json")], context.clone()).await, 401, "no key");
        assert_eq!(post(&url, &[("x-cosell-key", "wrong")], context.clone()).await, 401, "a wrong key");
        assert_eq!(post(&url, &[("x-cosell-key", &key)], "{not json").await, 400, "malformed JSON");
        let bad_id = json!({"PrimaryEntityName": "opportunity", "PrimaryEntityId": "../../etc"}).to_string();
        assert_eq!(post(&url, &[("x-cosell-key", &key)], bad_id).await, 400, "not an id");
        assert_eq!(intake(&env, "dataverse-webhook", "queued").await, 0.0);
        let account = json!({"PrimaryEntityName": "account", "PrimaryEntityId": "7f3c2a52-0000-4000-8000-000000000002"}).to_string();
        assert_eq!(post(&url, &[("x-cosell-key", &key)], account).await, 200, "other tables are acknowledged");
        assert_eq!(intake(&env, "dataverse-webhook", "queued").await, 0.0);
        assert_eq!(post(&url, &[("x-cosell-key", &key)], context).await, 200);
        assert_eq!(intake(&env, "dataverse-webhook", "queued").await, 1.0, "the right key and an opportunity: stored");
    })
    .await;
}

/// A genuine delivery about `referral`, signed as the Partner Center emulator signs.
fn signed_delivery(env: &SyncEnv, referral: &str) -> reqwest::RequestBuilder {
    let uri = format!("{}/v1.0/engagements/referrals/{referral}", env.pc_url);
    let event = WebhookEvent::new("referral-updated", "referral", uri, chrono::Utc::now());
    let body = serde_json::to_vec(&event).unwrap();
    let signature = format!("Signature {}", SigningMaterial::get().sign_base64(&body));
    reqwest::Client::new()
        .post(format!("{}/webhooks/partner-center", env.webhooks_url))
        .header("content-type", "application/json")
        .header("authorization", signature)
        .header(
            "x-ms-certificate-url",
            format!(
                "{}{}",
                env.pc_url,
                cosell_emulators::partner_center::signing::CERTIFICATE_PATH
            ),
        )
        .header("x-ms-signature-algorithm", "rsa-sha256")
        .body(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_are_acknowledged_only_once_stored_and_a_store_failure_is_a_503() {
    // No pollers: only the deliveries store events.
    SyncEnv::run_polling_every("", 0, |env| async move {
        // The state database refuses the event of one referral, as a full disk or a broken
        // file would: the whole transaction holding it fails.
        let db = rusqlite::Connection::open(env.dir.path().join("cosell.db")).unwrap();
        db.busy_timeout(Duration::from_secs(20)).unwrap();
        db.execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON sync_events WHEN NEW.record_id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
        // 120 deliveries at once: 30 referrals, 4 each, and the one the store refuses.
        let mut referrals: Vec<String> = (0..120).map(|n| format!("storm-{:02}", n % 30)).collect();
        referrals.insert(60, "poison".into());
        let sent: Vec<_> = referrals
            .iter()
            .map(|referral| {
                let request = signed_delivery(&env, referral);
                let referral = referral.clone();
                tokio::spawn(async move { (referral, request.send().await.unwrap().status().as_u16()) })
            })
            .collect();
        let mut statuses: HashMap<String, Vec<u16>> = HashMap::new();
        for delivery in sent {
            let (referral, status) = delivery.await.unwrap();
            statuses.entry(referral).or_default().push(status);
        }
        assert_eq!(statuses["poison"], [503], "not stored, so not acknowledged");
        let acknowledged: usize = statuses.values().flatten().filter(|s| **s == 200).count();
        assert!(
            statuses.values().flatten().all(|s| *s == 200 || *s == 503),
            "{statuses:?}"
        );
        println!(
            "{acknowledged} of {} concurrent deliveries acknowledged; the failed transaction answered {} with 503",
            referrals.len(),
            referrals.len() - acknowledged
        );
        // Every acknowledged delivery's referral is in the queue (whatever the workers made of
        // it since), and a referral none of whose deliveries was acknowledged is not.
        let mut stmt = db.prepare("SELECT DISTINCT record_id FROM sync_events").unwrap();
        let stored: BTreeSet<String> = stmt
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (referral, got) in &statuses {
            assert_eq!(
                stored.contains(referral),
                got.contains(&200),
                "{referral}: answered {got:?}\n{}",
                env.host_log()
            );
        }
        let counted = intake(&env, "partner-center-webhook", "queued").await
            + intake(&env, "partner-center-webhook", "coalesced").await;
        assert_eq!(counted as usize, acknowledged, "each acknowledged delivery counted once as stored");
        // The host goes on storing once the store works again.
        db.execute_batch("DROP TRIGGER poison").unwrap();
        assert_eq!(signed_delivery(&env, "poison").send().await.unwrap().status(), 200);
    })
    .await;
}
