//! The webhook listener of a running `cosell serve`: what it refuses (bad or missing
//! signatures, certificates off the allow-list, wrong Dataverse credentials, malformed or
//! oversized bodies) is answered 4xx and stores nothing; what it accepts is stored before the
//! 200 and synced.

mod support;

use serde_json::json;
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
        let emulator_cert = format!("{}/_emulator/certificate.cer", env.pc_url);
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
