//! Hostile input to the webhook listener of a running `cosell serve` (issue 5): for both
//! endpoints, malformed JSON, wrong content types, bodies over the limit (with a length and
//! chunked), missing or bad signatures and credentials, certificate URLs off the allow-list;
//! each is refused with its status and none enqueues anything. A genuine delivery captured on
//! the wire and replayed is acknowledged like a retry and writes nothing a second time. A
//! flood of hostile requests with held-open connections neither crashes the host nor stops it
//! answering and syncing. Each test prints the figures it proved.
//!
//! With `COSELL_WRITE_FUZZ_SEEDS=1`, the replay test also writes the deliveries it captured
//! into `fuzz/seeds/` (the fuzz targets' starting corpus; see fuzz/README.md).
//!
//! The catalogue of hostile requests is in `hostile_input/catalogue.rs`; the wire-level
//! helpers (raw requests, the bait server, the tap and replays, held connections, `/healthz`
//! probes) are in `hostile_input/wire.rs`.

mod support;

#[path = "hostile_input/catalogue.rs"]
mod catalogue;
#[path = "hostile_input/wire.rs"]
mod wire;

use catalogue::{DV, PC, Setting};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::sync_env::{SETTLE, SyncEnv, wait_until};
use wire::{
    Captured, Holding, counting_server, futures_join, hold, hold_connections, probe_healthz,
    raise_open_file_limit, replay, send, tap,
};

/// Intake results (queued, coalesced, refused, ignored) of both webhooks.
async fn intake(env: &SyncEnv) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for source in ["partner-center-webhook", "dataverse-webhook"] {
        for result in ["queued", "coalesced", "refused", "ignored"] {
            let n = env
                .metric(
                    "cosell_intake_events_total",
                    &[("source", source), ("result", result)],
                )
                .await;
            out.insert(format!("{source}/{result}"), n);
        }
    }
    out
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

/// Waits until the queue has nothing pending or running, twice 500 ms apart (a delivery may
/// still be on its way when the queue first looks empty).
async fn quiet(env: &SyncEnv) {
    let idle = || async {
        let q = env.admin_get("/admin/v1/queue").await;
        q["pending"] == 0 && q["running"] == 0
    };
    let settled = wait_until(SETTLE, || async {
        if !idle().await {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle().await.then_some(())
    })
    .await;
    assert!(settled.is_some(), "the queue settles\n{}", env.host_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_to_both_webhooks_are_refused_and_enqueue_nothing() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        let (bait_port, bait_hits) = counting_server().await;
        let setting = Setting::new(&env, format!("http://localhost:{bait_port}/cert.cer"));
        let catalogue = setting.catalogue();
        let before = intake(&env).await;
        let client = reqwest::Client::new();
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        let mut wrong = Vec::new();
        for request in &catalogue {
            let got = send(&client, &env.webhooks_url, request).await;
            match got {
                Ok(status) => *by_status.entry(status).or_default() += 1,
                Err(_) => *by_status.entry(0).or_default() += 1,
            }
            if got != Ok(request.expect) {
                wrong.push(format!("{}: expected {}, got {got:?}", request.what, request.expect));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}\n{}", env.host_log());
        let after = intake(&env).await;
        let queue = env.admin_get("/admin/v1/queue").await;
        let enqueued: f64 = ["queued", "coalesced"]
            .iter()
            .flat_map(|r| ["partner-center-webhook", "dataverse-webhook"].map(|s| delta(&before, &after, &format!("{s}/{r}"))))
            .sum();
        let refused = delta(&before, &after, "partner-center-webhook/refused") + delta(&before, &after, "dataverse-webhook/refused");
        println!(
            "hostile input: {} requests sent ({} partner-center, {} dataverse), refused by status {by_status:?}, \
             counted refused by the handlers {refused}, \
             enqueued = {enqueued}, queue {queue}, certificate downloads from off-list hosts = {}",
            catalogue.len(),
            catalogue.iter().filter(|r| r.path == PC).count(),
            catalogue.iter().filter(|r| r.path == DV).count(),
            bait_hits.load(Ordering::SeqCst)
        );
        assert_eq!(enqueued, 0.0, "nothing was enqueued");
        // The body limit is the handlers' too (bodies are read after the credentials).
        assert_eq!(refused as usize, catalogue.len(), "every request reached a handler and was refused there");
        assert_eq!((queue["pending"].as_u64(), queue["running"].as_u64(), queue["dead"].as_u64()), (Some(0), Some(0), Some(0)));
        assert_eq!(bait_hits.load(Ordering::SeqCst), 0, "a host off the allow-list is never contacted");
        let healthz = reqwest::get(format!("{}/healthz", env.webhooks_url)).await.unwrap();
        assert!(healthz.status().is_success(), "the host is still up");
        assert!(!env.host_log().contains("panicked"), "no panic in the host\n{}", env.host_log());
    })
    .await;
}

/// Sync runs that wrote something (created or updated a record), on either side.
async fn writes(env: &SyncEnv) -> f64 {
    let mut n = 0.0;
    for outcome in ["created", "updated"] {
        n += env
            .metric("cosell_sync_events_total", &[("outcome", outcome)])
            .await;
    }
    n
}

/// Writes the captured deliveries as the fuzz targets' seeds (only with COSELL_WRITE_FUZZ_SEEDS).
async fn write_seeds(pc: &[Captured], dv: &[Captured]) {
    if std::env::var_os("COSELL_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let seeds = support::repo_root().join("fuzz/seeds");
    for (dir, deliveries) in [("partner_center_event", pc), ("dataverse_context", dv)] {
        std::fs::create_dir_all(seeds.join(dir)).unwrap();
        for (i, d) in deliveries.iter().enumerate() {
            let event: Value = serde_json::from_slice(&d.body).unwrap();
            let name = event["EventName"]
                .as_str()
                .or(event["MessageName"].as_str())
                .unwrap_or("event")
                .to_ascii_lowercase();
            std::fs::write(seeds.join(dir).join(format!("{i}-{name}.json")), &d.body).unwrap();
        }
    }
    std::fs::create_dir_all(seeds.join("signature")).unwrap();
    for (i, d) in pc.iter().enumerate() {
        let url = &d
            .headers
            .iter()
            .find(|(n, _)| n == "x-ms-certificate-url")
            .unwrap()
            .1;
        let cert = reqwest::get(url.as_str())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let headers: Vec<(&str, &[u8])> = d
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let input = webhook_formats::fuzzing::SignatureInput::encode(&headers, &cert, &d.body);
        std::fs::write(
            seeds.join("signature").join(format!("{i}-delivery.bin")),
            input,
        )
        .unwrap();
    }
    println!(
        "wrote {} + {} + {} fuzz seeds under {}",
        pc.len(),
        dv.len(),
        pc.len(),
        seeds.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_genuine_delivery_is_acknowledged_and_writes_nothing_twice() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        // Route both services' deliveries through a tap, to capture them exactly as sent.
        let (tap_url, captured) = tap(env.webhooks_url.clone()).await;
        let pc_hook = format!("{tap_url}{PC}");
        env.cosell(&["partner-center", "register-webhooks", "--url", &pc_hook, "--overwrite"]);
        let dv_hook = format!("{tap_url}{DV}");
        env.cosell(&["dataverse", "register-webhook", "--url", &dv_hook]);

        // A Microsoft referral becomes an opportunity; then Microsoft raises the deal value.
        let referral = env.pc.microsoft().create_incoming(json!({"name": "Replay target", "details": {"dealValue": 1000, "currency": "USD"}}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = wait_until(SETTLE, || async { env.opportunities_for_referral(&rid).await.into_iter().next() })
            .await
            .unwrap_or_else(|| panic!("an opportunity for {rid}\n{}", env.host_log()));
        let oid = opp["opportunityid"].as_str().unwrap().to_owned();
        quiet(&env).await;
        env.pc.microsoft().update(&rid, json!({"details": {"dealValue": 2000}})).unwrap();
        env.wait_opportunity(&oid, "the raised deal value", |o| o["estimatedvalue"].as_f64() == Some(2000.0)).await;
        quiet(&env).await;

        let deliveries = captured.lock().unwrap().clone();
        let pc: Vec<Captured> = deliveries.iter().filter(|d| d.path == PC && d.status == 200).cloned().collect();
        let dv: Vec<Captured> = deliveries.iter().filter(|d| d.path == DV && d.status == 200).cloned().collect();
        let created = pc
            .iter()
            .find(|d| String::from_utf8_lossy(&d.body).contains("referral-created"))
            .unwrap_or_else(|| panic!("the referral-created delivery was captured: {deliveries:#?}"))
            .clone();
        let opportunity_create = dv
            .iter()
            .find(|d| String::from_utf8_lossy(&d.body).contains("\"Create\""))
            .unwrap_or_else(|| panic!("the opportunity's Create delivery was captured: {deliveries:#?}"))
            .clone();
        write_seeds(&pc, &dv).await;

        // What must not change: the records, their versions, the counts and the writes.
        let referral_etag = env.pc.referral(&rid).unwrap()["eTag"].clone();
        let opportunity_etag = env.etag(&oid).await;
        let referrals = env.pc.referrals().len();
        let writes_before = writes(&env).await;
        let runs_before = env.metric( "cosell_sync_events_total", &[]).await;
        let intake_before = intake(&env).await;

        // The stale referral-created (older than the update) and the opportunity's Create, each
        // sent again 20 times: 10 at once, then 10 one after the other; and once more without
        // a content type (a proxy may drop it; the body and signature are what count).
        const TIMES: usize = 20;
        let client = reqwest::Client::new();
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        for delivery in [&created, &opportunity_create] {
            let burst: Vec<_> = (0..TIMES / 2).map(|_| replay(&client, &env, delivery, &[])).collect();
            for status in futures_join(burst).await {
                *statuses.entry(status).or_default() += 1;
            }
            for _ in 0..TIMES / 2 {
                *statuses.entry(replay(&client, &env, delivery, &[]).await).or_default() += 1;
            }
            *statuses.entry(replay(&client, &env, delivery, &["content-type"]).await).or_default() += 1;
        }
        let sent = 2 * (TIMES + 1);
        quiet(&env).await;

        let intake_after = intake(&env).await;
        let stored: f64 = ["partner-center-webhook", "dataverse-webhook"].iter().map(|s| delta(&intake_before, &intake_after, &format!("{s}/queued"))).sum();
        let coalesced: f64 = ["partner-center-webhook", "dataverse-webhook"].iter().map(|s| delta(&intake_before, &intake_after, &format!("{s}/coalesced"))).sum();
        let runs = env.metric( "cosell_sync_events_total", &[]).await - runs_before;
        let extra_writes = writes(&env).await - writes_before;
        let opportunities = env.opportunities_for_referral(&rid).await;
        println!(
            "replays: {sent} genuine deliveries re-sent ({} partner-center referral-created, {} dataverse Create), answered {statuses:?}; \
             stored {stored} + coalesced {coalesced}; sync runs {runs}; writes = {extra_writes}; referrals {} -> {}; \
             opportunities for the referral = {}; referral eTag unchanged = {}; opportunity etag unchanged = {}",
            TIMES + 1,
            TIMES + 1,
            referrals,
            env.pc.referrals().len(),
            opportunities.len(),
            env.pc.referral(&rid).unwrap()["eTag"] == referral_etag,
            env.etag(&oid).await == opportunity_etag,
        );
        assert_eq!(statuses.get(&200), Some(&sent), "a replay is acknowledged as a retry would be");
        assert_eq!(extra_writes, 0.0, "no sync run wrote anything\n{}", env.host_log());
        assert_eq!(env.pc.referrals().len(), referrals, "no second referral");
        assert_eq!(opportunities.len(), 1, "no second opportunity");
        assert_eq!(env.pc.referral(&rid).unwrap()["eTag"], referral_etag, "the referral was not written");
        assert_eq!(env.etag(&oid).await, opportunity_etag, "the opportunity was not written");
        assert_eq!(env.opportunity(&oid).await["estimatedvalue"].as_f64(), Some(2000.0), "a stale replay rolls nothing back");
    })
    .await;
}

/// (median, max) of `samples`.
fn median_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    (sorted[sorted.len() / 2], *sorted.last().unwrap())
}

/// A Microsoft referral created now: how long until its opportunity exists.
async fn genuine_sync(env: &SyncEnv, name: &str) -> Duration {
    let started = Instant::now();
    let referral = env.pc.microsoft().create_incoming(json!({"name": name}));
    let rid = referral["id"].as_str().unwrap().to_owned();
    let synced = wait_until(SETTLE, || async {
        env.opportunities_for_referral(&rid)
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        synced.is_some(),
        "{name}: the genuine referral was synced within {SETTLE:?}\n{}",
        env.host_log()
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_hostile_requests_neither_crashes_nor_slows_the_host() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        // At least MIN_FLOOD requests, and on until the genuine referral is synced (MAX_FLOOD
        // at most), so the whole genuine sync happens under the flood.
        const MIN_FLOOD: usize = 1_500;
        const MAX_FLOOD: usize = 5_000;
        const AT_ONCE: usize = 32;
        const HELD: usize = 50;
        let (bait_port, bait_hits) = counting_server().await;
        let catalogue = Arc::new(Setting::new(&env, format!("http://localhost:{bait_port}/cert.cer")).catalogue());

        // Before: /healthz and one genuine referral synced, on a quiet host.
        let (base_median, base_max) = median_max(&probe_healthz(&env.webhooks_url, 40).await);
        let base_sync = genuine_sync(&env, "Before the flood").await;
        quiet(&env).await;

        let held = hold_connections(&env.webhooks_url, HELD).await;
        let intake_before = intake(&env).await;
        let delivered = |env: &SyncEnv| env.pc.webhooks().deliveries().iter().filter(|d| d.outcome == "delivered").count();
        let delivered_before = delivered(&env);
        let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let genuine_done = Arc::new(std::sync::atomic::AtomicBool::new(false));

        // The flood: the catalogue over and over, AT_ONCE requests in flight.
        let flood = {
            let (catalogue, base, flooding, genuine_done) = (catalogue.clone(), env.webhooks_url.clone(), flooding.clone(), genuine_done.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let client = reqwest::Client::new();
                let gate = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
                let mut tasks = tokio::task::JoinSet::new();
                let mut sent = 0;
                while sent < MAX_FLOOD && (sent < MIN_FLOOD || !genuine_done.load(Ordering::SeqCst)) {
                    let i = sent;
                    sent += 1;
                    let permit = gate.clone().acquire_owned().await.unwrap();
                    let (client, base, request) = (client.clone(), base.clone(), catalogue[i % catalogue.len()].clone());
                    tasks.spawn(async move {
                        let got = send(&client, &base, &request).await;
                        drop(permit);
                        (request.expect, request.path, got)
                    });
                }
                let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
                let mut unexpected = Vec::new();
                let mut over_limit = 0;
                while let Some(done) = tasks.join_next().await {
                    let (expect, path, got) = done.unwrap();
                    over_limit += usize::from(expect == 413);
                    let key = got.as_ref().map(u16::to_string).unwrap_or_else(|_| "no answer".into());
                    *by_status.entry(key).or_default() += 1;
                    if got != Ok(expect) {
                        unexpected.push(format!("{path}: expected {expect}, got {got:?}"));
                    }
                }
                flooding.store(false, Ordering::SeqCst);
                (sent, by_status, unexpected, over_limit, started.elapsed())
            })
        };
        // Meanwhile: /healthz every 10 ms, and a genuine referral synced.
        let prober = {
            let (base, flooding) = (env.webhooks_url.clone(), flooding.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = Vec::new();
                let mut failures = 0;
                while flooding.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let answer = tokio::time::timeout(support::NEVER, client.get(format!("{base}/healthz")).send()).await;
                    match answer {
                        Ok(Ok(r)) if r.status().is_success() => latencies.push(started.elapsed()),
                        _ => failures += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (latencies, failures)
            })
        };
        let flood_sync = genuine_sync(&env, "During the flood").await;
        genuine_done.store(true, Ordering::SeqCst);
        let (sent, by_status, unexpected, over_limit, flood_time) = flood.await.unwrap();
        let (latencies, probe_failures) = prober.await.unwrap();
        quiet(&env).await;

        let intake_after = intake(&env).await;
        let refused = delta(&intake_before, &intake_after, "partner-center-webhook/refused") + delta(&intake_before, &intake_after, "dataverse-webhook/refused");
        let pc_stored = delta(&intake_before, &intake_after, "partner-center-webhook/queued") + delta(&intake_before, &intake_after, "partner-center-webhook/coalesced");
        let genuine_pc = delivered(&env) - delivered_before;
        let (median, max) = if latencies.is_empty() { (Duration::ZERO, Duration::ZERO) } else { median_max(&latencies) };
        let still_held = held.len();
        drop(held);
        let (after_median, after_max) = median_max(&probe_healthz(&env.webhooks_url, 20).await);
        println!(
            "hostile flood: {sent} requests ({AT_ONCE} at a time, {} kinds) in {flood_time:?} with {still_held} half-sent connections held open; \
             answers {by_status:?}; refused by the handlers {refused} ({over_limit} at the body limit); hostile enqueued = {}; \
             /healthz during the flood: {} probes, median {median:?}, max {max:?}, failed {probe_failures} (before: median {base_median:?}, max {base_max:?}; after: median {after_median:?}, max {after_max:?}); \
             a genuine referral synced in {flood_sync:?} during the flood ({base_sync:?} before); certificate downloads from off-list hosts = {}",
            catalogue.len(),
            pc_stored - genuine_pc as f64,
            latencies.len(),
            bait_hits.load(Ordering::SeqCst),
        );
        assert!(unexpected.is_empty(), "every hostile request got its refusal: {unexpected:#?}");
        assert_eq!(refused as usize, sent, "every hostile request was refused by a handler");
        assert!(pc_stored <= genuine_pc as f64, "only genuine deliveries were stored ({pc_stored} stored, {genuine_pc} genuine)");
        assert_eq!(probe_failures, 0, "/healthz answered throughout the flood");
        assert_eq!(bait_hits.load(Ordering::SeqCst), 0);
        assert!(!env.host_log().contains("panicked"), "no panic in the host\n{}", env.host_log());
    })
    .await;
}

/// Credentials first: a delivery without them is answered without its body being read, so a
/// client can neither make the listener buffer a body nor hold it waiting for one. Each request
/// here sends its head promising 100,000 bytes and then nothing: the answer must come anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_without_credentials_are_refused_before_their_body_is_read() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        let addr = env.webhooks_url.trim_start_matches("http://").to_owned();
        let cert = format!(
            "{}{}",
            env.pc_url,
            cosell_emulators::partner_center::signing::CERTIFICATE_PATH
        );
        let cases = [
            ("partner-center, no signature headers", PC, String::new(), 401),
            ("partner-center, a signature that is not base64", PC,
             format!("authorization: Signature !!!\r\nx-ms-signature-algorithm: rsa-sha256\r\nx-ms-certificate-url: {cert}\r\n"), 401),
            ("partner-center, another algorithm", PC,
             format!("authorization: Signature AAAA\r\nx-ms-signature-algorithm: rsa-sha1\r\nx-ms-certificate-url: {cert}\r\n"), 400),
            ("dataverse, no key", DV, String::new(), 401),
            ("dataverse, a wrong key", DV, "x-cosell-key: wrong\r\n".to_owned(), 401),
        ];
        let mut answered = Vec::new();
        for (what, path, headers, expect) in cases {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n{headers}\r\n"
            );
            tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut buf = vec![0u8; 1024];
            // An answer that waited for the body would be the body timeout's 408, not `expect`.
            let n = tokio::time::timeout(support::NEVER, tokio::io::AsyncReadExt::read(&mut stream, &mut buf))
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer without the body"))
                .unwrap();
            let status_line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned();
            assert!(status_line.starts_with(&format!("HTTP/1.1 {expect}")), "{what}: {status_line}");
            answered.push((what, expect, started.elapsed()));
        }
        println!("refused before the body: {answered:?}");
    })
    .await;
}

/// 2,000 connections held open by a slowloris-style client (idle ones, heads sent a byte at a
/// time, bodies sent a byte at a time behind well-formed signature headers) do not stop a
/// genuine delivery from being stored and answered while they are held, and the host closes every
/// one of them by itself (header-read and body timeouts, 10 s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connections_neither_hold_up_a_genuine_delivery_nor_stay_open() {
    const IDLE: usize = 1_000;
    const SLOW_HEADS: usize = 800;
    const SLOW_BODIES: usize = 200;
    const HELD: usize = IDLE + SLOW_HEADS + SLOW_BODIES;
    // The test's connections and the host's (a child process, which inherits the limit).
    raise_open_file_limit(2 * HELD as u64 + 1_024);
    SyncEnv::run_polling_every("", 0, |env| async move {
        let cert = format!(
            "{}{}",
            env.pc_url,
            cosell_emulators::partner_center::signing::CERTIFICATE_PATH
        );
        // Warm: the certificate is fetched and cached by a first genuine delivery.
        assert_eq!(env.signed_delivery("warm-up").send().await.unwrap().status(), 200);
        let stored_before = env.metric("cosell_intake_events_total", &[("source", "partner-center-webhook"), ("result", "queued")]).await;

        // Generous: the defaults close everything within 10 s of it opening.
        let bound = Duration::from_secs(60);
        let opened = Instant::now();
        let mut held = Vec::with_capacity(HELD);
        for (how, n) in [(Holding::Idle, IDLE), (Holding::SlowHead, SLOW_HEADS), (Holding::SlowBody, SLOW_BODIES)] {
            for _ in 0..n {
                held.push((how, hold(&env.webhooks_url, how, &cert, bound).await));
            }
        }
        let open_time = opened.elapsed();

        // A genuine delivery, with all of them open.
        let sent = Instant::now();
        let status = env.signed_delivery("genuine-amid-held").send().await.unwrap().status();
        let answered_in = sent.elapsed();
        let answered_at = Instant::now();
        let stored = env.metric("cosell_intake_events_total", &[("source", "partner-center-webhook"), ("result", "queued")]).await;

        let mut closed: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        let mut left_open: BTreeMap<String, usize> = BTreeMap::new();
        let mut answers: BTreeMap<(String, Option<u16>), usize> = BTreeMap::new();
        let mut closed_before_the_answer = 0;
        for (how, task) in held {
            let held = task.await.unwrap();
            closed_before_the_answer += usize::from(held.closed_at.is_some_and(|at| at < answered_at));
            *answers.entry((format!("{how:?}"), held.status)).or_default() += 1;
            match held.closed_after {
                Some(after) => closed.entry(format!("{how:?}")).or_default().push(after),
                None => *left_open.entry(format!("{how:?}")).or_default() += 1,
            }
        }
        let summary: BTreeMap<_, _> = closed.iter().map(|(how, times)| (how.clone(), (times.len(), times.iter().max().copied()))).collect();
        println!(
            "{HELD} held connections ({IDLE} idle, {SLOW_HEADS} slow heads, {SLOW_BODIES} slow bodies) opened in {open_time:?}; \
             a genuine delivery answered {status} in {answered_in:?}; closed by the host (count, latest after opening): {summary:?}; left open: {left_open:?}; answers before closing: {answers:?}"
        );
        assert_eq!(status, 200, "the genuine delivery was stored\n{}", env.host_log());
        assert_eq!(stored, stored_before + 1.0, "and counted as stored");
        // Answered while every held connection was still held: it did not wait for them to go.
        assert_eq!(closed_before_the_answer, 0, "the genuine delivery was answered only after {closed_before_the_answer} held connections had been closed");
        assert!(left_open.is_empty(), "the host closed every held connection by itself: {left_open:?} left open after {bound:?}");
        assert_eq!(answers.get(&("SlowBody".to_owned(), Some(408))), Some(&SLOW_BODIES), "each slow body was answered 408: {answers:?}");
        let healthz = reqwest::get(format!("{}/healthz", env.webhooks_url)).await.unwrap();
        assert!(healthz.status().is_success(), "the listener still answers");
    })
    .await;
}
