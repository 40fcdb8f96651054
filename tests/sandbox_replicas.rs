//! `cosell sandbox --replicas 3 --state-url postgres://…` as a user runs it: three `cosell
//! serve` processes on one PostgreSQL state behind HAProxy, each listed in sandbox.json with
//! its own id and ports, exactly one of them the leader; the emulators' webhooks reach them
//! through the balancer, which spreads admin requests over them; a replica killed is reported
//! and the balancer passes requests to the others; Ctrl-C stops every process and frees every
//! port.
//!
//! The state is a schema of its own on the tests' PostgreSQL server (`COSELL_TEST_POSTGRES_URL`,
//! or a throwaway cluster, see `host/src/store/testing/postgres.rs`). Every wait is bounded.

mod support;

use cosell::store::test_postgres::TestSchema;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};
use support::sandbox::Sandbox;

/// `GET <base>/healthz`, asserting 200.
async fn healthz(http: &reqwest::Client, base: &str) -> Value {
    let response = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{base}/healthz");
    response.json().await.unwrap()
}

/// The `host:port` of a `http://host:port` URL.
fn authority(url: &Value) -> String {
    url.as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_haproxy_sync_share_one_leader_and_stop_on_ctrl_c() {
    let schema = TestSchema::new();
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::start(
        dir.path(),
        &["--replicas", "3", "--state-url", &schema.url],
        Duration::from_secs(240),
    )
    .await;
    let manifest = sandbox.manifest.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Three replicas, each its own process, id and ports, all up.
    let replicas = manifest["replicas"]
        .as_array()
        .expect("no replicas in sandbox.json");
    assert_eq!(replicas.len(), 3, "{manifest}");
    let mut ids = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for replica in replicas {
        let health = healthz(&http, replica["admin_url"].as_str().unwrap()).await;
        assert_eq!(health["replica_id"], replica["id"], "{health}");
        assert_eq!(health["steps"].as_array().unwrap().len(), 2, "{health}");
        ids.insert(replica["id"].as_str().unwrap().to_owned());
        addresses.insert(authority(&replica["admin_url"]));
        addresses.insert(authority(&replica["webhook_url"]));
        assert!(replica["pid"].as_u64().unwrap() != u64::from(sandbox.child.id()));
    }
    assert_eq!(ids.len(), 3, "replica ids: {ids:?}");
    assert_eq!(addresses.len(), 6, "replica addresses: {addresses:?}");
    let balancer = &manifest["load_balancer"];
    assert_eq!(balancer["admin_url"], manifest["host"]["admin_url"]);
    assert_eq!(balancer["webhook_url"], manifest["host"]["webhook_url"]);
    let state_url = manifest["state_url"].as_str().unwrap();
    assert!(state_url.starts_with("postgres"), "{state_url}");

    // Exactly one leader (the first replica takes the lock at once; the others never do while
    // it lives), asked a few times over.
    let mut leaders = 0;
    for _ in 0..50 {
        leaders = 0;
        for replica in replicas {
            let health = healthz(&http, replica["admin_url"].as_str().unwrap()).await;
            if health["leader"].as_bool().expect("no `leader` in /healthz") {
                leaders += 1;
            }
        }
        assert!(leaders <= 1, "{leaders} leaders at once");
        if leaders == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(leaders, 1, "no replica became the leader");

    // Both services deliver their webhooks to the balancer, which passes them on: an
    // opportunity with Sync = Yes becomes a referral, and its id comes back.
    let synced = sandbox
        .sync_an_opportunity(
            &http,
            "Co-sell through the balancer",
            Duration::from_secs(30),
        )
        .await;
    assert!(
        !synced["cosell_referralidentifier"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    // Through the balancer: HAProxy logged the Dataverse webhook it passed on.
    let balancer_log = balancer["log"].as_str().unwrap();
    let started = Instant::now();
    while !std::fs::read_to_string(balancer_log)
        .unwrap()
        .contains("POST /webhooks/dataverse")
    {
        assert!(
            started.elapsed() < support::NEVER,
            "HAProxy logged no Dataverse webhook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The balancer's admin frontend spreads requests over the replicas.
    let mut answered = BTreeSet::new();
    for _ in 0..12 {
        // A connection per request, so nothing but the balancer picks the replica.
        let fresh = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let health = healthz(&fresh, manifest["host"]["admin_url"].as_str().unwrap()).await;
        answered.insert(health["replica_id"].as_str().unwrap().to_owned());
    }
    assert!(
        answered.len() > 1,
        "every request through the balancer reached {answered:?}"
    );
    assert!(answered.is_subset(&ids), "{answered:?} vs {ids:?}");

    // A replica that dies is reported in the sandbox's log, and the balancer passes requests
    // to the others (a refused connection is dispatched again).
    let victim = replicas.iter().find(|r| r["id"] != "sandbox-1").unwrap();
    let victim_pid = victim["pid"].as_u64().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &victim_pid])
            .status()
            .unwrap()
            .success()
    );
    let reported = format!(
        "replica {} (pid {victim_pid}) exited on its own",
        victim["id"].as_str().unwrap()
    );
    sandbox
        .until_logged(&reported, Duration::from_secs(10))
        .await;
    for _ in 0..6 {
        let health = healthz(&http, manifest["host"]["admin_url"].as_str().unwrap()).await;
        assert_ne!(health["replica_id"], victim["id"], "{health}");
    }

    // Ctrl-C stops the balancer and every replica, and frees every port.
    let exit = sandbox.ctrl_c(Duration::from_secs(60)).await;
    assert!(exit.success(), "{exit:?}");
    assert!(
        !sandbox.manifest_path.exists(),
        "sandbox.json was left behind"
    );
    let mut pids: Vec<u64> = replicas
        .iter()
        .map(|r| r["pid"].as_u64().unwrap())
        .collect();
    pids.push(balancer["pid"].as_u64().unwrap());
    addresses.insert(authority(&balancer["admin_url"]));
    addresses.insert(authority(&balancer["webhook_url"]));
    let stopped = Instant::now();
    // Reaped by the sandbox before it exits; bounded all the same.
    while let Some(pid) = pids
        .iter()
        .find(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            stopped.elapsed() < support::NEVER,
            "process {pid} outlived the sandbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for address in &addresses {
        TcpListener::bind(address.as_str())
            .unwrap_or_else(|err| panic!("{address} is still taken after Ctrl-C: {err}"));
    }
}

#[test]
fn more_than_one_replica_without_a_state_url_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cosell"))
        .arg("sandbox")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--replicas", "2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--state-url"), "{stderr}");
    assert!(!dir.path().join("sandbox.json").exists());
}
