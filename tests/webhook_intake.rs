//! The webhook listener of a running `cosell serve`: what it refuses (bad or missing
//! signatures, certificates off the allow-list, wrong Dataverse credentials, malformed or
//! oversized bodies) is answered 4xx and stores nothing; what it accepts is stored before the
//! 200 and synced; deliveries arriving together are stored together (group commit), and a
//! store failure is answered 503 for every delivery it affects. The refusals and the stored
//! deliveries are tested with the state in SQLite and in PostgreSQL; the store failure and the
//! held write lock are staged on the SQLite file.

mod support;

use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use support::backend::{Backend, on_both_backends};
use support::sync_env::SyncEnv;

on_both_backends!(
    refused_partner_center_deliveries_store_nothing,
    dataverse_deliveries_need_the_configured_key_and_a_context,
);

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

async fn refused_partner_center_deliveries_store_nothing(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
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

async fn dataverse_deliveries_need_the_configured_key_and_a_context(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
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
                let request = env.signed_delivery(referral);
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
        assert_eq!(env.signed_delivery("poison").send().await.unwrap().status(), 200);
    })
    .await;
}

/// Latencies of `GET {url}` every 10 ms until `until` turns true (bounded by `bound`), and how
/// many got no 200.
async fn probe_until(
    url: String,
    until: std::sync::Arc<std::sync::atomic::AtomicBool>,
    bound: Duration,
) -> (Vec<Duration>, usize) {
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let (mut latencies, mut failures) = (Vec::new(), 0);
    while !until.load(std::sync::atomic::Ordering::SeqCst) && started.elapsed() < bound {
        let sent = std::time::Instant::now();
        match tokio::time::timeout(support::NEVER, client.get(&url).send()).await {
            Ok(Ok(r)) if r.status().is_success() => latencies.push(sent.elapsed()),
            _ => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (latencies, failures)
}

/// (median, p99, max) of `samples`.
fn spread(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_while_the_intake_holds_the_store() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        let client = reqwest::Client::new();
        // Another process holds the database's write lock: the intake's group commit waits
        // for it (up to the store's 5 s busy timeout) holding the store's connection, with
        // deliveries arriving all the while.
        let db = rusqlite::Connection::open(env.dir.path().join("cosell.db")).unwrap();
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        // The first delivery waits for the lock (up to the store's 5 s busy timeout), holding
        // the store's connection; the others arrive behind it. The probes must be answered
        // before any delivery is: if they waited for the store, a delivery's answer (stored,
        // or refused once the busy timeout ends) would come first.
        let first_delivery_answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let deliveries: Vec<_> = (0..20)
            .map(|n| {
                let request = env.signed_delivery(&format!("held-{n:02}"));
                let answered = first_delivery_answered.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100 * n)).await;
                    let status = request.send().await.map(|r| r.status().as_u16());
                    answered.store(true, std::sync::atomic::Ordering::SeqCst);
                    status
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut answered = Vec::new();
        for path in ["/healthz", "/metrics", "/healthz", "/metrics"] {
            let sent = std::time::Instant::now();
            let response = tokio::time::timeout(
                support::NEVER,
                client.get(format!("{}{path}", env.admin_url)).send(),
            )
            .await
            .expect("answered at all")
            .unwrap();
            assert!(response.status().is_success(), "{path}: {}", response.status());
            let text = response.text().await.unwrap();
            if path == "/healthz" {
                let health: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(health["sync"]["queue"].is_object(), "the queue is counted: {health}");
            } else {
                assert!(text.contains("cosell_queue_events"), "{text}");
            }
            answered.push((path, sent.elapsed()));
        }
        let before_any_delivery = !first_delivery_answered.load(std::sync::atomic::Ordering::SeqCst);
        db.execute_batch("COMMIT").unwrap();
        println!("with the store's write lock held elsewhere: {answered:?}");
        assert!(
            before_any_delivery,
            "/healthz and /metrics were answered only after a delivery held up by the store: {answered:?}"
        );
        for delivery in deliveries {
            let status = delivery.await.unwrap().unwrap();
            assert!(status == 200 || status == 503, "stored, or refused for a retry: {status}");
        }

        // The figure (docs/reliability.md): /healthz and /metrics while 2,000 deliveries arrive,
        // 64 at a time.
        let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probes = ["/healthz", "/metrics"].map(|path| {
            tokio::spawn(probe_until(format!("{}{path}", env.admin_url), flooding.clone(), Duration::from_secs(300)))
        });
        let started = std::time::Instant::now();
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
        let mut flood = tokio::task::JoinSet::new();
        for n in 0..2_000 {
            let permit = gate.clone().acquire_owned().await.unwrap();
            let request = env.signed_delivery(&format!("flood-{:03}", n % 500));
            flood.spawn(async move {
                let status = request.send().await.map(|r| r.status().as_u16());
                drop(permit);
                status
            });
        }
        let mut acknowledged = 0;
        while let Some(status) = flood.join_next().await {
            acknowledged += usize::from(status.unwrap().is_ok_and(|s| s == 200));
        }
        let flood_time = started.elapsed();
        flooding.store(true, std::sync::atomic::Ordering::SeqCst);
        for (path, probe) in ["/healthz", "/metrics"].into_iter().zip(probes) {
            let (mut latencies, failures) = probe.await.unwrap();
            assert_eq!(failures, 0, "{path} answered throughout the flood");
            assert!(!latencies.is_empty(), "{path} was probed during the flood");
            let (median, p99, max) = spread(&mut latencies);
            println!(
                "{path} during an intake flood (2,000 signed deliveries, 64 at a time, {acknowledged} acknowledged in {flood_time:?}): \
                 {} probes, median {median:?}, p99 {p99:?}, max {max:?}",
                latencies.len()
            );
        }
    })
    .await;
}
