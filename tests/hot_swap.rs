//! Hot swap under load: while thousands of records flow through a step, a new version is
//! deployed (and later rolled back). Every record must be processed exactly once, by exactly
//! one version, and the switch must be visible in the outputs.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use support::{Admin, guest, start_stamp_host, with_custom_section};

const RECORDS: usize = 3000;
const WORKERS: usize = 12;

/// Sends `RECORDS` records through the pc-to-crm pipeline from `WORKERS` tasks; calls `swap`
/// once a third of them are done. Returns, for every record, the version that mapped it and
/// whether the record was started after the swap returned.
async fn flow_while(
    admin: &Admin,
    swap: impl std::future::Future<Output = String>,
) -> (Vec<(String, bool)>, String) {
    let next = Arc::new(AtomicUsize::new(0));
    let swapped = Arc::new(AtomicBool::new(false));
    let results = Arc::new(std::sync::Mutex::new(vec![None; RECORDS]));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (admin, next, swapped, results) = (
            admin.clone(),
            next.clone(),
            swapped.clone(),
            results.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::SeqCst);
                if seq >= RECORDS {
                    return;
                }
                let started_after_swap = swapped.load(Ordering::SeqCst);
                let (status, body) = admin
                    .run("partner-center-to-crm", json!({ "seq": seq }))
                    .await;
                assert_eq!(status, 200, "record {seq} failed during the swap: {body}");
                assert_eq!(
                    body["document"]["seq"], seq,
                    "record {seq} came back as another record"
                );
                let version = body["document"]["_mapping"]["version"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert_eq!(body["steps"][0]["version"], version.as_str());
                let previous = results.lock().unwrap()[seq].replace((version, started_after_swap));
                assert!(previous.is_none(), "record {seq} processed twice");
            }
        }));
    }
    while next.load(Ordering::SeqCst) < RECORDS / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let new_version = swap.await;
    swapped.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let results = Arc::try_unwrap(results).unwrap().into_inner().unwrap();
    let results = results
        .into_iter()
        .enumerate()
        .map(|(seq, r)| r.unwrap_or_else(|| panic!("record {seq} was never processed")))
        .collect();
    (results, new_version)
}

fn count_by_version(results: &[(String, bool)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (version, _) in results {
        *counts.entry(version.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_and_rollback_under_load_process_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = start_stamp_host(dir.path()).await;
    let v1 = admin.active_version("pc-to-crm").await;
    let v2_bytes = with_custom_section(&guest("testing/version_stamp.wasm"), "cosell-test", b"v2");

    // Phase 1: deploy v2 in the middle of the flow.
    let deploy = async {
        let (status, report) = admin.deploy("pc-to-crm", v2_bytes).await;
        assert_eq!(status, 200, "deploy refused: {report}");
        assert_eq!(report["status"], "activated");
        assert_eq!(report["previous"], v1.as_str());
        report["version"].as_str().unwrap().to_owned()
    };
    let (results, v2) = flow_while(&admin, deploy).await;
    let counts = count_by_version(&results);
    eprintln!("deploy under load: {RECORDS} records, by version: {counts:?}");
    assert_ne!(v1, v2);
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        {
            let mut both = vec![v1.clone(), v2.clone()];
            both.sort();
            both
        },
        "both versions must have served"
    );
    assert_eq!(counts.values().sum::<usize>(), RECORDS);
    for (seq, (version, after)) in results.iter().enumerate() {
        if *after {
            assert_eq!(
                version, &v2,
                "record {seq} started after the deploy returned but ran on the old version"
            );
        }
    }

    // Phase 2: roll back to v1 in the middle of the flow.
    let rollback = async {
        let (status, report) = admin.rollback("pc-to-crm", None).await;
        assert_eq!(status, 200, "rollback refused: {report}");
        assert_eq!(report["previous"], v2.as_str());
        report["version"].as_str().unwrap().to_owned()
    };
    let (results, back) = flow_while(&admin, rollback).await;
    assert_eq!(back, v1);
    let counts = count_by_version(&results);
    eprintln!("rollback under load: {RECORDS} records, by version: {counts:?}");
    assert_eq!(
        counts.len(),
        2,
        "both versions must have served: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), RECORDS);
    for (seq, (version, after)) in results.iter().enumerate() {
        if *after {
            assert_eq!(
                version, &v1,
                "record {seq} started after the rollback but ran on v2"
            );
        }
    }
    assert_eq!(admin.active_version("pc-to-crm").await, v1);

    let (_, metrics) = (
        0,
        reqwest::get(format!("{}/metrics", admin.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        metrics.contains("cosell_mapping_calls_total{step=\"pc-to-crm\",outcome=\"ok\"}"),
        "{metrics}"
    );
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn redeploying_the_active_version_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = start_stamp_host(dir.path()).await;
    let (status, report) = admin
        .deploy("pc-to-crm", guest("testing/version_stamp.wasm"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["status"], "already-active");
    let (status, body) = admin.rollback("pc-to-crm", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no earlier version")
    );
    let _: Value = body;
    host.shutdown().await.unwrap();
}
