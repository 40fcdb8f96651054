//! The precompiled artifact cache as the host uses it: a version loaded again comes from the
//! cache and maps exactly as when it was compiled; a rollback and a re-deploy reuse it; an
//! entry damaged on disk is detected, recompiled and rewritten, and the deploy succeeds.

mod support;

use cosell::runtime::{ArtifactCache, ArtifactKey, CacheOutcome, Limits, MappingRuntime};
use std::path::Path;
use std::time::Instant;
use support::{Admin, fixture, guest, start_stamp_host, test_call, with_custom_section};

fn runtime_with_cache(dir: &Path) -> MappingRuntime {
    let cache = ArtifactCache::open(dir, 64 * 1024 * 1024, ArtifactKey::new(&[7; 32])).unwrap();
    MappingRuntime::new(Limits::default())
        .unwrap()
        .with_artifact_cache(cache)
}

#[test]
fn a_version_loaded_again_comes_from_the_cache_and_maps_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest("referral_to_opportunity.wasm");
    let input = fixture("partner-center-to-crm/referral-sample/input.json");
    let map = |runtime: &MappingRuntime, outcome: CacheOutcome| {
        let started = Instant::now();
        let component = runtime.load(&wasm).unwrap();
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(component.artifact, outcome);
        eprintln!("load ({}): {load_ms:.1} ms", outcome.label());
        let output = runtime.call(&component, &test_call("step", &input)).result;
        (component.version.to_string(), output.unwrap())
    };

    let host = runtime_with_cache(dir.path());
    let compiled = map(&host, CacheOutcome::Miss);
    let cached = map(&host, CacheOutcome::Hit);
    // A restarted host: a new engine with the same settings, the same directory.
    let restarted = map(&runtime_with_cache(dir.path()), CacheOutcome::Hit);
    assert_eq!(cached, compiled, "the cached artifact maps differently");
    assert_eq!(restarted, compiled, "the cached artifact maps differently");
    let uncached = MappingRuntime::new(Limits::default()).unwrap();
    assert_eq!(map(&uncached, CacheOutcome::Disabled), compiled);
}

async fn metrics(admin: &Admin) -> String {
    admin
        .http
        .get(format!("{}/metrics", admin.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn cache_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_redeploy_load_from_the_cache_and_a_damaged_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = start_stamp_host(dir.path()).await;
    // The default place: `compiled/` beside the state database, its owner's only.
    let cache_dir = dir.path().join("compiled");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let v1 = admin.active_version("pc-to-crm").await;
    let v2 = with_custom_section(&guest("testing/version_stamp.wasm"), "v", b"2");

    let (status, report) = admin.deploy("pc-to-crm", v2.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["artifact_cache"], "miss", "{report}");
    let v2_version = report["version"].as_str().unwrap().to_owned();
    let (status, report) = admin.rollback("pc-to-crm", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["version"], v1.as_str());
    assert_eq!(report["artifact_cache"], "hit", "a rollback compiled again");

    // Damage every entry on disk: cut each in half.
    let entries = cache_entries(&cache_dir);
    assert_eq!(entries.len(), 2, "{entries:?}");
    for entry in &entries {
        let bytes = std::fs::read(entry).unwrap();
        std::fs::write(entry, &bytes[..bytes.len() / 2]).unwrap();
    }
    let (status, report) = admin.deploy("pc-to-crm", v2.clone()).await;
    assert_eq!(
        status, 200,
        "a damaged cache entry failed the deploy: {report}"
    );
    assert_eq!(report["artifact_cache"], "error", "{report}");
    assert_eq!(admin.active_version("pc-to-crm").await, v2_version);
    let (status, output) = admin
        .run("partner-center-to-crm", serde_json::json!({"name": "x"}))
        .await;
    assert_eq!(
        status, 200,
        "the recompiled version does not serve: {output}"
    );
    assert_eq!(output["steps"][0]["version"], v2_version.as_str());

    // The entry was rewritten: the next load of v2 is a hit again.
    let (_, report) = admin.rollback("pc-to-crm", None).await;
    assert_eq!(report["artifact_cache"], "error", "{report}");
    let (status, report) = admin.deploy("pc-to-crm", v2).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["artifact_cache"], "hit",
        "the damaged entry was not rewritten"
    );

    // Start-up: `pc-to-crm` compiled (miss), `crm-to-pc` runs the same bytes (hit).
    let text = metrics(&admin).await;
    for (result, count) in [("hit", 3), ("miss", 2), ("error", 2)] {
        let line = format!("cosell_component_cache_total{{result=\"{result}\"}} {count}");
        assert!(text.contains(&line), "no `{line}` in\n{text}");
    }
    host.shutdown().await.unwrap();
}
