//! `/readyz` and the request metrics of a running `cosell serve` with both emulators: the host
//! is not ready (503, with the reason) while its store refuses writes, while it cannot get a
//! Dataverse token, and while Partner Center is paused, and ready again once each is over;
//! Partner Center's 429s are counted by operation. A host that does not sync is ready once
//! its store took the readiness check's write.

mod support;

use cosell_emulators::common::faults::FaultConfig;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::sync_env::{Options, SyncEnv, wait_until};

/// How long a readiness change may take to show: the store check runs every 5 s and is stale
/// after 15 s; the pollers run every second.
const NOTICE: Duration = Duration::from_secs(40);

/// `/readyz`: its status and body.
async fn readyz(env: &SyncEnv) -> (u16, Value) {
    let response = reqwest::get(format!("{}/readyz", env.admin_url))
        .await
        .expect("/readyz answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("/readyz is JSON"))
}

/// Waits until `/readyz` answers `status` with a reason containing `reason` (any reasons when
/// `status` is 200 and `reason` empty); answers the body, or fails with the last one.
async fn wait_readyz(env: &SyncEnv, status: u16, reason: &str) -> Value {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < NOTICE {
        let (got, body) = readyz(env).await;
        let reasons = body["reasons"].as_array().cloned().unwrap_or_default();
        let matches = got == status
            && body["ready"] == (status == 200)
            && match status {
                200 => reasons.is_empty(),
                _ => reasons
                    .iter()
                    .any(|r| r.as_str().is_some_and(|r| r.contains(reason))),
            };
        if matches {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "/readyz never answered {status} with {reason:?}; last: {last}\n{}",
        env.host_log()
    )
}

fn options(extra: &str, poll_secs: u64) -> Options {
    Options {
        extra: extra.to_owned(),
        poll_secs,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_store_refuses_writes() {
    SyncEnv::run_with(options("", 0), |env| async move {
        wait_readyz(&env, 200, "").await;
        let live = reqwest::get(format!("{}/livez", env.admin_url)).await.unwrap();
        assert_eq!(live.status().as_u16(), 200);
        // The state database refuses the readiness check's write, as a full disk would.
        let db = rusqlite::Connection::open(env.dir.path().join("cosell.db")).unwrap();
        db.execute_batch(
            "CREATE TRIGGER full_insert BEFORE INSERT ON sync_cursors WHEN NEW.name LIKE 'readiness-check/%'
               BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;
             CREATE TRIGGER full_update BEFORE UPDATE ON sync_cursors WHEN NEW.name LIKE 'readiness-check/%'
               BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;",
        )
        .unwrap();
        let body = wait_readyz(&env, 503, "store: not writable").await;
        let text = body.to_string();
        assert!(text.contains("disk full (test)"), "the store's error is given: {text}");
        // Liveness does not depend on the store.
        let live = reqwest::get(format!("{}/livez", env.admin_url)).await.unwrap();
        assert_eq!(live.status().as_u16(), 200);
        db.execute_batch("DROP TRIGGER full_insert; DROP TRIGGER full_update;")
            .unwrap();
        wait_readyz(&env, 200, "").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_no_dataverse_token_can_be_had() {
    SyncEnv::run_with(options("", 1), |env| async move {
        wait_readyz(&env, 200, "").await;
        let failures = || {
            env.metric(
                "cosell_token_refresh_failures_total",
                &[("service", "dataverse")],
            )
        };
        assert_eq!(failures().await, 0.0);
        // The change-tracking poller has read Dataverse (so the host holds a token).
        let polled = wait_until(NOTICE, || async {
            let ok = env
                .metric(
                    "cosell_service_requests_total",
                    &[
                        ("service", "dataverse"),
                        ("operation", "track_changes"),
                        ("status", "200"),
                    ],
                )
                .await;
            (ok >= 1.0).then_some(())
        })
        .await;
        assert!(
            polled.is_some(),
            "the poller read Dataverse:\n{}",
            env.metrics_text().await
        );
        // The application's secret is rotated in Entra ID, and the host's token expires.
        let config = env.dv.config().clone();
        env.dv
            .tokens()
            .register_client(&config.client_id, "a-rotated-secret");
        env.dv.clock().advance(chrono::TimeDelta::hours(2));
        wait_readyz(&env, 503, "dataverse: cannot get an access token").await;
        assert!(failures().await >= 1.0, "the failure is counted");
        let token = [("service", "dataverse"), ("operation", "token")];
        let all = env.metric("cosell_service_requests_total", &token).await;
        let ok = env
            .metric(
                "cosell_service_requests_total",
                &[token[0], token[1], ("status", "200")],
            )
            .await;
        let refused = all - ok;
        assert!(
            refused >= 1.0,
            "the refused token request is counted with its status: {refused}\n{}",
            env.metrics_text().await
        );
        // The secret is put back: the next poll gets a token.
        env.dv
            .tokens()
            .register_client(&config.client_id, &config.client_secret);
        wait_readyz(&env, 200, "").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_partner_center_is_paused_and_429s_are_counted_by_operation() {
    let extra = "[sync]\noutage_failures = 1\noutage_pause_ms = 2000\noutage_pause_max_ms = 4000\n";
    SyncEnv::run_with(options(extra, 1), |env| async move {
        wait_readyz(&env, 200, "").await;
        let throttled = || {
            env.metric(
                "cosell_service_requests_total",
                &[
                    ("service", "partner-center"),
                    ("operation", "list_referrals"),
                    ("status", "429"),
                ],
            )
        };
        assert_eq!(throttled().await, 0.0);
        // The reconciliation poller has listed referrals (so the host holds a token).
        let listed = wait_until(NOTICE, || async {
            let ok = env
                .metric(
                    "cosell_service_requests_total",
                    &[
                        ("service", "partner-center"),
                        ("operation", "list_referrals"),
                        ("status", "200"),
                    ],
                )
                .await;
            (ok >= 1.0).then_some(())
        })
        .await;
        assert!(
            listed.is_some(),
            "the poller listed referrals:\n{}",
            env.metrics_text().await
        );
        // Every Partner Center request is throttled: the reconciliation poller's lists meet 429s.
        env.pc
            .faults()
            .set(FaultConfig {
                throttle_rate: 1.0,
                retry_after_secs: 1,
                ..FaultConfig::default()
            })
            .unwrap();
        let counted = wait_until(NOTICE, || async {
            (throttled().await >= 1.0).then_some(())
        })
        .await;
        assert!(
            counted.is_some(),
            "429s of list_referrals counted:\n{}",
            env.metrics_text().await
        );
        // Partner Center goes down; a referral event fails on it and pauses the side.
        env.pc
            .faults()
            .set(FaultConfig {
                error_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        let delivered = env.signed_delivery("paused-probe").send().await.unwrap();
        assert_eq!(delivered.status().as_u16(), 200);
        wait_readyz(&env, 503, "partner-center: paused").await;
        assert_eq!(
            env.metric("cosell_service_paused", &[("service", "partner-center")])
                .await,
            1.0
        );
        env.pc.faults().set(FaultConfig::default()).unwrap();
        wait_readyz(&env, 200, "").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_does_not_sync_is_ready_once_its_store_takes_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = support::start_stamp_host(dir.path()).await;
    let started = Instant::now();
    let body = loop {
        let (status, body) = admin.get("/readyz").await;
        if status == 200 {
            break body;
        }
        assert!(started.elapsed() < NOTICE, "never ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body, serde_json::json!({"ready": true, "reasons": []}));
    let (status, _) = admin.get("/livez").await;
    assert_eq!(status, 200);
    // The write the readiness check made.
    let store = cosell::store::sqlite::SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let replica = cosell::config::HostConfig::load(&dir.path().join("cosell.toml"))
        .unwrap()
        .host
        .replica_id();
    let written = cosell::store::CursorStore::cursor(
        &store,
        &cosell::health::store_check::cursor_name(&replica),
    )
    .unwrap();
    assert!(written.is_some(), "the check wrote its row");
    host.shutdown().await.unwrap();
}
