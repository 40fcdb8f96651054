//! The API faults every emulator can inject, seen from a client over real HTTP: dropped
//! connections, 429 storms with `Retry-After`, added latency, 5xx answers, and the control
//! endpoint refusing nonsense.

use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_reach_the_client_as_a_real_outage_would() {
    let dataverse = Dataverse::new(DataverseConfig::default());
    let running = dataverse.serve().await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let api = format!("{}/api/data/v9.2/opportunities", running.url());
    // Without faults and without a token: the service's own 401.
    assert_eq!(http.get(&api).send().await.unwrap().status().as_u16(), 401);

    let set = |config: FaultConfig| dataverse.faults().set(config).unwrap();
    set(FaultConfig {
        drop_rate: 1.0,
        ..FaultConfig::default()
    });
    let dropped = http.get(&api).send().await;
    assert!(
        dropped.is_err(),
        "a dropped connection must not answer: {dropped:?}"
    );

    set(FaultConfig {
        throttle_rate: 1.0,
        retry_after_secs: 7,
        ..FaultConfig::default()
    });
    let throttled = http.get(&api).send().await.unwrap();
    assert_eq!(throttled.status().as_u16(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");

    set(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    assert_eq!(http.get(&api).send().await.unwrap().status().as_u16(), 503);

    set(FaultConfig {
        latency_ms: 300,
        ..FaultConfig::default()
    });
    let started = Instant::now();
    assert_eq!(http.get(&api).send().await.unwrap().status().as_u16(), 401);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // The control endpoint stays up under faults, refuses a bad rate and can end the drill.
    set(FaultConfig {
        drop_rate: 1.0,
        ..FaultConfig::default()
    });
    let control = format!("{}/_emulator/faults", running.url());
    let bad = http
        .put(&control)
        .json(&json!({ "error_rate": 2.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let cleared = http.put(&control).json(&json!({})).send().await.unwrap();
    assert_eq!(cleared.status().as_u16(), 200);
    assert_eq!(http.get(&api).send().await.unwrap().status().as_u16(), 401);
    running.stop().await;
}
