//! What cosell promises about losing nothing, proven against the emulators (docs/reliability.md):
//! a stream of changes from both sides survives SIGKILLs of the host at random moments and
//! injected faults (5xx, dropped connections, 429 storms, slow answers, webhooks dropped,
//! duplicated and reordered, tight service protection limits) and writes whose answer is lost
//! after they were applied (no referral, opportunity, account or contact made twice); a webhook
//! delivered ten times, or before its referral is readable, is handled once. Each test prints the figures it proved.
//!
//! An outage of each service (every call answered 503, or every connection dropped) ends in no
//! dead letter and everything synced after recovery.
//!
//! The four drills take a minute or more each and are `#[ignore]`d, so `cargo nextest run` stays
//! quick; `make test` (and so CI) runs them with `--run-ignored all`. They, and the tests of
//! duplicate and early events, run on both state backends (`name::sqlite`, `name::postgres`).

mod support;

use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::dataverse::{DataverseConfig, ServiceProtectionLimits};
use cosell_emulators::partner_center::webhooks::WebhookEvent;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::backend::{Backend, on_both_backends};
use support::drill::Drill;
use support::sync_env::{Options, SETTLE, SyncEnv, wait_until};

/// Retries come quickly so the drills converge within their bounds.
const FAST_RETRIES: &str = "[sync]\nretry_base_ms = 200\nmax_attempts = 12\n";

/// The seed of every drill: a failure can be replayed exactly.
const SEED: u64 = 0xc05e11;

async fn a_stream_of_changes_survives_repeated_sigkills(backend: Backend) {
    let options = Options {
        extra: FAST_RETRIES.into(),
        poll_secs: 1,
        bound: Duration::from_secs(300),
        backend,
        ..Options::default()
    };
    SyncEnv::run_with(options, |mut env| async move {
        let mut drill = Drill::new(&env, SEED).await;
        let mut rng = StdRng::seed_from_u64(SEED);
        let kills = 6;
        for _ in 0..kills {
            // Changes flow while the host runs, for a random while...
            let run_for = Duration::from_millis(rng.random_range(400..2_500));
            let started = Instant::now();
            while started.elapsed() < run_for {
                drill.step(&env).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
            }
            // ...then it dies mid-stream, and changes go on while it is down (their webhooks
            // fail: only the queue and the pollers can bring them back).
            env.kill_host();
            for _ in 0..rng.random_range(0..15) {
                drill.step(&env).await;
            }
            env.start_host().await;
        }
        for _ in 0..40 {
            drill.step(&env).await;
        }
        let settled = drill.settle(&env, Duration::from_secs(120)).await;
        println!("crash drill: {}; {kills} SIGKILLs; {settled}", drill.sent);
        assert!(
            drill.records() >= 100,
            "hundreds of changes: {}",
            drill.sent
        );
        let log = env.keep_host_log(&format!("crash-drill-{backend:?}"));
        assert!(
            settled.clean(),
            "{:#?}\n{}\nhost log: {}",
            settled.verdict,
            settled.queue,
            log.display()
        );
    })
    .await;
}

/// Faults on both emulators: 10% 503s and 10% dropped connections (20% of calls fail), 20 ms
/// of latency on every call, webhooks dropped, duplicated and reordered.
fn steady_faults() -> FaultConfig {
    FaultConfig {
        error_rate: 0.1,
        drop_rate: 0.1,
        latency_ms: 20,
        webhook_drop_rate: 0.2,
        webhook_duplicate_rate: 0.2,
        webhook_reorder: true,
        ..FaultConfig::default()
    }
}

async fn the_same_end_state_is_reached_through_faults(backend: Backend) {
    let options = Options {
        extra: FAST_RETRIES.into(),
        poll_secs: 1,
        bound: Duration::from_secs(300),
        // Tight service protection limits so that they bite during the drill: 3 concurrent
        // requests, and 120 requests per 10 s. The drill sends 150 to 200 per 10 s, fewer on a
        // loaded machine (200 let a slow run through without one 429).
        dataverse: DataverseConfig {
            limits: ServiceProtectionLimits {
                requests: 120,
                concurrent: 3,
                window: chrono::Duration::seconds(10),
                ..ServiceProtectionLimits::default()
            },
            ..DataverseConfig::default()
        },
        backend,
        ..Options::default()
    };
    SyncEnv::run_with(options, |env| async move {
        let mut drill = Drill::new(&env, SEED).await;
        for emulator in [env.pc.faults(), env.dv.faults()] {
            emulator.set(steady_faults()).expect("valid faults");
        }
        let mut storms = 0;
        let started = Instant::now();
        while drill.sent.total() < 160 {
            // Every 40 changes, a 429 storm of a second on both sides.
            if drill.sent.total() % 40 == 39 {
                storms += 1;
                let storm = FaultConfig { throttle_rate: 0.8, retry_after_secs: 1, ..steady_faults() };
                env.pc.faults().set(storm.clone()).unwrap();
                env.dv.faults().set(storm).unwrap();
                drill.step(&env).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                env.pc.faults().set(steady_faults()).unwrap();
                env.dv.faults().set(steady_faults()).unwrap();
            }
            drill.step(&env).await;
        }
        let streamed = started.elapsed();
        let settled = drill.settle(&env, Duration::from_secs(150)).await;
        let protection = env.dv.service_protection();
        let (pc, dv) = (env.pc.faults().injected(), env.dv.faults().injected());
        println!(
            "fault drill: {} in {streamed:?} with 10% 503s, 10% dropped connections, 20 ms latency, \
             20% of webhooks dropped and 20% duplicated, reordered, {storms} 429 storms; {settled}; \
             faults injected: Partner Center {} 503s, {} dropped connections, {} 429s, {} webhooks dropped, \
             {} duplicated; Dataverse {} 503s, {} dropped connections, {} 429s, {} webhooks dropped, {} duplicated; \
             Dataverse service protection: {} admitted, {} refused in {} episodes, {} early requests \
             (at most {} in one episode)",
            drill.sent,
            pc.server_errors,
            pc.dropped_connections,
            pc.throttled,
            pc.webhooks_dropped,
            pc.webhooks_duplicated,
            dv.server_errors,
            dv.dropped_connections,
            dv.throttled,
            dv.webhooks_dropped,
            dv.webhooks_duplicated,
            protection.admitted,
            protection.refused,
            protection.episodes,
            protection.early_requests,
            protection.max_early_requests_in_episode
        );
        let log = env.keep_host_log(&format!("fault-drill-{backend:?}"));
        assert!(settled.clean(), "{:#?}\n{}\nhost log: {}", settled.verdict, settled.queue, log.display());
        assert!(protection.episodes > 0, "the service protection limits were reached: {protection:?}");
        assert!(pc.api() > 0 && dv.api() > 0 && pc.webhooks_dropped + dv.webhooks_dropped > 0, "faults were injected");
        // Once told to wait, the host sends nothing more until Retry-After has passed, except
        // the requests already on their way (at most its concurrency, 16).
        assert!(
            protection.max_early_requests_in_episode <= 16,
            "the host kept calling after a 429: {protection:?}"
        );
    })
    .await;
}

/// Faults on both emulators where the answer of a write is lost after the write was applied:
/// 10% of writes answered 500 and 10% dropped without an answer, plus 5% of ordinary 503s
/// (nothing applied) and 10 ms of latency on every call.
fn lost_answer_faults() -> FaultConfig {
    FaultConfig {
        applied_error_rate: 0.1,
        applied_drop_rate: 0.1,
        error_rate: 0.05,
        latency_ms: 10,
        ..FaultConfig::default()
    }
}

async fn no_record_is_duplicated_when_the_answers_of_applied_writes_are_lost(backend: Backend) {
    let options = Options {
        extra: FAST_RETRIES.into(),
        poll_secs: 1,
        bound: Duration::from_secs(300),
        backend,
        ..Options::default()
    };
    SyncEnv::run_with(options, |env| async move {
        let mut drill = Drill::new(&env, SEED).await;
        for emulator in [env.pc.faults(), env.dv.faults()] {
            emulator.set(lost_answer_faults()).expect("valid faults");
        }
        let started = Instant::now();
        while drill.sent.total() < 300 {
            drill.step(&env).await;
        }
        let streamed = started.elapsed();
        let settled = drill.settle(&env, Duration::from_secs(150)).await;
        let (pc, dv) = (env.pc.faults().injected(), env.dv.faults().injected());
        let duplicated = settled.verdict.duplicated;
        println!(
            "lost-answer drill: {} in {streamed:?} with 10% of writes applied then answered 500, 10% applied \
             then dropped, 5% 503s, 10 ms latency, on both sides; {settled}; faults injected: Partner Center \
             {} applied then 500, {} applied then dropped, {} 503s; Dataverse {} applied then 500, {} applied \
             then dropped, {} 503s",
            drill.sent,
            pc.applied_then_failed,
            pc.applied_then_dropped,
            pc.server_errors,
            dv.applied_then_failed,
            dv.applied_then_dropped,
            dv.server_errors,
        );
        let log = env.keep_host_log(&format!("lost-answer-drill-{backend:?}"));
        assert!(settled.clean(), "{:#?}\n{}\nhost log: {}", settled.verdict, settled.queue, log.display());
        assert_eq!(duplicated.total(), 0, "{duplicated}");
        assert!(
            dv.applied_then_failed > 0 && dv.applied_then_dropped > 0,
            "Dataverse lost answers: {dv:?}"
        );
        assert!(
            pc.applied_then_failed + pc.applied_then_dropped > 0,
            "Partner Center lost answers: {pc:?}"
        );
    })
    .await;
}

/// A retry budget that, spent on an outage, runs out well within the drill's shortest outage:
/// 3 attempts, the first retry after 200 ms, each attempt with its clients' own 6 retries
/// (about 10 s of backoff), so about 30 s in all. Without the pause, an outage longer than that
/// dead-letters.
const OUTAGE_RETRIES: &str = "[sync]\nretry_base_ms = 200\nmax_attempts = 3\n";

/// How long each outage of the outage drill lasts: `COSELL_OUTAGE_DRILL_SECS`, 75 s by default
/// (docs/reliability.md has the figures of a run with 600).
fn outage_length() -> Duration {
    let secs = std::env::var("COSELL_OUTAGE_DRILL_SECS")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .expect("COSELL_OUTAGE_DRILL_SECS is a number of seconds")
        })
        .unwrap_or(75);
    Duration::from_secs(secs)
}

async fn an_outage_of_either_service_ends_in_no_dead_letter_and_everything_synced(
    backend: Backend,
) {
    let outage = outage_length();
    let options = Options {
        extra: OUTAGE_RETRIES.into(),
        poll_secs: 1,
        bound: outage * 2 + Duration::from_secs(420),
        backend,
        ..Options::default()
    };
    SyncEnv::run_with(options, |env| async move {
        let mut drill = Drill::new(&env, SEED).await;
        for _ in 0..30 {
            drill.step(&env).await;
        }
        // Partner Center answers every call 503; then Dataverse drops every connection. Both
        // sides keep changing meanwhile: Microsoft's sellers work in Partner Center (its
        // webhooks still arrive), and the partner's sellers in Dataverse while it is up.
        let mut figures = Vec::new();
        for (service, label) in [("partner-center", "every call answered 503"), ("dataverse", "every connection dropped")] {
            let (emulator, fault) = match service {
                "partner-center" => (env.pc.faults(), FaultConfig { error_rate: 1.0, ..FaultConfig::default() }),
                _ => (env.dv.faults(), FaultConfig { drop_rate: 1.0, ..FaultConfig::default() }),
            };
            let pauses_before = env.metric("cosell_service_pauses_total", &[("service", service)]).await;
            let sent_before = drill.sent.total();
            emulator.set(fault).expect("valid faults");
            let started = Instant::now();
            let mut paused_seen = false;
            while started.elapsed() < outage {
                if service == "partner-center" {
                    drill.step(&env).await;
                } else {
                    drill.microsoft_step(&env);
                }
                paused_seen |= env.metric("cosell_service_paused", &[("service", service)]).await == 1.0;
                tokio::time::sleep(outage / 40).await;
            }
            emulator.set(FaultConfig::default()).expect("no faults");
            let injected = emulator.injected();
            let pauses = env.metric("cosell_service_pauses_total", &[("service", service)]).await - pauses_before;
            let dead = env.admin_get("/admin/v1/queue").await["dead"].clone();
            figures.push(format!(
                "{service} down {:.0} s ({label}; {} changes meanwhile, {} calls refused): paused {pauses} time(s), dead letters {dead}",
                outage.as_secs_f64(),
                drill.sent.total() - sent_before,
                injected.server_errors + injected.dropped_connections,
            ));
            // Nothing gave up while the service was down (without the pause, the retry budget
            // runs out within seconds)...
            assert_eq!(dead, 0, "no dead letter during the outage: {}\n{}", figures.last().unwrap(), env.host_log());
            // ...because the host paused for it, and said so.
            assert!(paused_seen && pauses >= 1.0, "the host paused for {service}: {}", figures.last().unwrap());
            for _ in 0..10 {
                drill.step(&env).await;
            }
        }
        let settled = drill.settle(&env, Duration::from_secs(240)).await;
        println!("outage drill: {}; {}; {settled}", drill.sent, figures.join("; "));
        let log = env.keep_host_log(&format!("outage-drill-{backend:?}"));
        assert!(settled.clean(), "{:#?}\n{}\nhost log: {}", settled.verdict, settled.queue, log.display());
        for service in ["partner-center", "dataverse"] {
            assert_eq!(env.metric("cosell_service_paused", &[("service", service)]).await, 0.0, "{service} resumed");
        }
    })
    .await;
}

/// The audit trail of one record.
async fn audit(env: &SyncEnv, record: &str) -> Vec<Value> {
    env.admin_get(&format!("/admin/v1/audit?record={record}&limit=1000"))
        .await["audit"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn count(trail: &[Value], outcome: &str) -> usize {
    trail.iter().filter(|e| e["outcome"] == outcome).count()
}

/// Partner Center webhooks accepted and stored: as a queue entry of their own, or coalesced
/// into the waiting entry of the same record (`cosell_intake_events_total`).
async fn partner_center_events_stored(env: &SyncEnv) -> f64 {
    let source = ("source", "partner-center-webhook");
    let series = "cosell_intake_events_total";
    env.metric(series, &[source, ("result", "queued")]).await
        + env.metric(series, &[source, ("result", "coalesced")]).await
}

/// Delivers the same `event` for `referral` ten times, signed by the emulator.
async fn deliver_ten_times(env: &SyncEnv, event: &str, referral: &str) {
    let before = partner_center_events_stored(env).await;
    let uri = format!("{}/v1.0/engagements/referrals/{referral}", env.pc_url);
    let event = WebhookEvent::new(event, "referral", uri, chrono::Utc::now());
    for _ in 0..10 {
        env.pc.webhooks().enqueue(event.clone());
    }
    let stored = wait_until(SETTLE, || async {
        (partner_center_events_stored(env).await >= before + 10.0).then_some(())
    })
    .await;
    assert!(
        stored.is_some(),
        "the ten deliveries were accepted\n{}",
        env.host_log()
    );
}

async fn queue_idle(env: &SyncEnv) {
    let idle = wait_until(SETTLE, || async {
        let queue = env.admin_get("/admin/v1/queue").await;
        (queue["pending"] == 0 && queue["running"] == 0).then_some(())
    })
    .await;
    assert!(idle.is_some(), "the queue drained\n{}", env.host_log());
}

async fn a_partner_center_event_delivered_ten_times_is_handled_once(backend: Backend) {
    // No pollers: only the deliveries move the record.
    SyncEnv::run_polling_every_on(backend, FAST_RETRIES, 0, |env| async move {
        // The referral's own event is not delivered; the storm is the only news of it.
        env.pc.faults().set(FaultConfig { webhook_drop_rate: 1.0, ..FaultConfig::default() }).unwrap();
        let referral = env.pc.microsoft().create_incoming(json!({"name": "Storm referral", "details": {"dealValue": 70000}}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        env.pc.faults().set(FaultConfig::default()).unwrap();
        deliver_ten_times(&env, "referral-created", &rid).await;
        queue_idle(&env).await;
        let opportunities = env.opportunities_for_referral(&rid).await;
        assert_eq!(opportunities.len(), 1, "one opportunity");
        let trail = audit(&env, &format!("referral:{rid}")).await;
        assert_eq!(count(&trail, "created"), 1, "{trail:#?}");
        assert_eq!(count(&trail, "updated"), 0, "{trail:#?}");

        // The same again for an update.
        env.pc.faults().set(FaultConfig { webhook_drop_rate: 1.0, ..FaultConfig::default() }).unwrap();
        env.pc.microsoft().update(&rid, json!({"details": {"dealValue": 75000}})).unwrap();
        env.pc.faults().set(FaultConfig::default()).unwrap();
        deliver_ten_times(&env, "referral-updated", &rid).await;
        queue_idle(&env).await;
        let oid = opportunities[0]["opportunityid"].as_str().unwrap();
        assert_eq!(env.opportunity(oid).await["estimatedvalue"].as_f64(), Some(75000.0));
        let trail = audit(&env, &format!("referral:{rid}")).await;
        assert_eq!(count(&trail, "created"), 1, "{trail:#?}");
        assert_eq!(count(&trail, "updated"), 1, "{trail:#?}");
        println!(
            "webhook storm: 2 events delivered 10 times each (20 deliveries stored); 1 opportunity created, 1 update written; \
             duplicates = 0"
        );
    })
    .await;
}

async fn an_event_that_arrives_before_its_referral_is_readable_is_handled_once(backend: Backend) {
    SyncEnv::run_polling_every_on(backend, FAST_RETRIES, 0, |env| async move {
        // Partner Center's reads lag its writes by 2 s: the referral-created webhook arrives
        // while a read of the referral still answers 404.
        env.pc.faults().set(FaultConfig { read_lag_ms: 2_000, ..FaultConfig::default() }).unwrap();
        let started = Instant::now();
        let referral = env.pc.microsoft().create_incoming(json!({"name": "Lagging referral"}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opportunity = wait_until(SETTLE, || async { env.opportunities_for_referral(&rid).await.into_iter().next() })
        .await
        .unwrap_or_else(|| panic!("the referral was synced once readable\n{}", env.host_log()));
        let took = started.elapsed();
        queue_idle(&env).await;
        let trail = audit(&env, &format!("referral:{rid}")).await;
        let retries = count(&trail, "retry");
        println!(
            "early event: referral-created arrived {} ms before the referral was readable; {retries} retries, \
             opportunity created after {took:?}; created = {}, duplicates = 0",
            2_000,
            count(&trail, "created")
        );
        assert!(retries >= 1, "the first read found nothing: {trail:#?}");
        assert_eq!(count(&trail, "created"), 1, "{trail:#?}");
        assert_eq!(count(&trail, "dead-letter"), 0, "{trail:#?}");
        assert!(opportunity["name"].as_str().unwrap().starts_with("Lagging referral"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_event_whose_worker_died_is_taken_back_when_its_lease_runs_out() {
    // No pollers, and the referral's own webhook is dropped: the queue entry below is the
    // only news of it.
    // The host's own claims hold a 30 s lease (its runs are cut off at 27 s, far from a flake);
    // the dead worker's claim below holds 2 s.
    SyncEnv::run_polling_every("[sync]\nlease_secs = 30\n", 0, |env| async move {
        env.pc.faults().set(FaultConfig { webhook_drop_rate: 1.0, ..FaultConfig::default() }).unwrap();
        let referral = env.pc.microsoft().create_incoming(json!({"name": "Orphaned referral"}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        // A worker (of this host or another process on the same state) claimed its event under
        // a 2 s lease and died without settling it: the row a claim leaves behind.
        let state = env.config_path.parent().unwrap().join("cosell.db");
        assert!(state.exists(), "the host's state is {}", state.display());
        let now_ms = chrono::Utc::now().timestamp_millis();
        rusqlite::Connection::open(&state)
            .unwrap()
            .execute(
                "INSERT INTO sync_events (side, record_id, lock_key, origin, payload, state,
                     attempts, available_at, received_at, lease_until)
                 VALUES ('partner-center', ?1, ?2, 'partner-center-webhook', '{}', 'running',
                     1, ?3, ?4, ?5)",
                rusqlite::params![
                    rid,
                    format!("referral:{rid}"),
                    now_ms,
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    now_ms + 2_000
                ],
            )
            .unwrap();
        let started = Instant::now();
        // Without leases the event stays running until the host restarts; with them another
        // worker takes it once the lease has run out, and syncs the referral.
        let opportunity = wait_until(SETTLE, || async { env.opportunities_for_referral(&rid).await.into_iter().next() })
            .await
            .unwrap_or_else(|| panic!("the orphaned event was taken back and synced\n{}", env.host_log()));
        let took = started.elapsed();
        queue_idle(&env).await;
        let trail = audit(&env, &format!("referral:{rid}")).await;
        println!("lease: an event claimed by a worker that died, under a 2 s lease, synced {took:.1?} later; created = {}", count(&trail, "created"));
        assert_eq!(count(&trail, "created"), 1, "{trail:#?}");
        assert!(opportunity["name"].as_str().unwrap().starts_with("Orphaned referral"));
    })
    .await;
}

on_both_backends!(
    drills a_stream_of_changes_survives_repeated_sigkills,
    the_same_end_state_is_reached_through_faults,
    no_record_is_duplicated_when_the_answers_of_applied_writes_are_lost,
    an_outage_of_either_service_ends_in_no_dead_letter_and_everything_synced,
);
on_both_backends!(
    a_partner_center_event_delivered_ten_times_is_handled_once,
    an_event_that_arrives_before_its_referral_is_readable_is_handled_once,
);
