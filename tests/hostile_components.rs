//! Hostile and broken components: each is refused at deploy or stopped at run time with an
//! error that names the mapping, its version and what went wrong, while the host keeps
//! serving the active version.

mod support;

use cosell::runtime::{CallErrorKind, Limit, Limits, LoadError, MappingRuntime};
use serde_json::{Value, json};
use support::{guest, start_stamp_host, test_call};

fn call_once(runtime: &MappingRuntime, wasm: &[u8], input: &str) -> cosell::runtime::CallReport {
    let component = runtime.load(wasm).expect("the component loads");
    runtime.call(&component, &test_call("hostile", input))
}

fn expect_limit(report: &cosell::runtime::CallReport, limit: Limit) -> String {
    let err = report
        .result
        .as_ref()
        .expect_err("the call must not succeed");
    match &err.kind {
        CallErrorKind::LimitExceeded { limit: hit, .. } => assert_eq!(*hit, limit, "{err}"),
        other => panic!("expected the {limit}, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("mapping `hostile`"), "{message}");
    assert!(message.contains("sha256:"), "{message}");
    assert!(message.contains(limit.config_key()), "{message}");
    message
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let report = call_once(&runtime, &guest("testing/infinite_loop.wasm"), "{}");
    eprintln!("{}", expect_limit(&report, Limit::Fuel));
    assert_eq!(report.stats.fuel_used, Limits::default().fuel);
}

#[test]
fn an_infinite_loop_with_unlimited_fuel_hits_the_time_limit() {
    let limits = Limits {
        fuel: u64::MAX / 2,
        timeout_ms: 200,
        ..Limits::default()
    };
    let runtime = MappingRuntime::new(limits).unwrap();
    let report = call_once(&runtime, &guest("testing/infinite_loop.wasm"), "{}");
    eprintln!("{}", expect_limit(&report, Limit::Timeout));
    assert!(
        report.stats.duration.as_millis() >= 200,
        "{:?}",
        report.stats.duration
    );
    assert!(
        report.stats.duration.as_secs() < 5,
        "{:?}",
        report.stats.duration
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let report = call_once(&runtime, &guest("testing/memory_bomb.wasm"), "{}");
    eprintln!("{}", expect_limit(&report, Limit::Memory));
    assert!(report.stats.peak_memory_bytes as u64 <= Limits::default().memory_bytes);
}

#[test]
fn deep_recursion_overflows_the_stack_cleanly() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let report = call_once(&runtime, &guest("testing/deep_recursion.wasm"), "{}");
    eprintln!("{}", expect_limit(&report, Limit::Stack));
}

#[test]
fn a_panic_is_a_trap_that_carries_the_panic_message() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let report = call_once(&runtime, &guest("testing/panics.wasm"), "{}");
    let err = report.result.unwrap_err();
    assert!(matches!(err.kind, CallErrorKind::Trapped(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("deliberate panic in map"), "{message}");
    assert!(
        message.contains("mapping `hostile` version sha256:"),
        "{message}"
    );
}

#[test]
fn an_oversized_output_is_refused() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let report = call_once(&runtime, &guest("testing/oversized_output.wasm"), "{}");
    eprintln!("{}", expect_limit(&report, Limit::OutputSize));
}

#[test]
fn an_oversized_input_is_refused_before_the_guest_runs() {
    let limits = Limits {
        max_input_bytes: 1000,
        ..Limits::default()
    };
    let runtime = MappingRuntime::new(limits).unwrap();
    let big = json!({ "pad": "x".repeat(2000) }).to_string();
    let report = call_once(&runtime, &guest("testing/version_stamp.wasm"), &big);
    expect_limit(&report, Limit::InputSize);
    assert_eq!(report.stats.fuel_used, 0);
}

#[test]
fn a_component_for_another_world_is_refused_on_type_check() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let err = runtime
        .load(&guest("testing/other_world.wasm"))
        .unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld(_)), "{err}");
    assert!(
        err.to_string().contains("cosell:mapping/mapping-step"),
        "{err}"
    );
}

#[test]
fn random_bytes_and_truncated_files_are_refused() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let mut noise = vec![0u8; 4096];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for byte in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    assert!(matches!(
        runtime.load(&noise).unwrap_err(),
        LoadError::NotWasm
    ));
    let real = guest("testing/version_stamp.wasm");
    let truncated = &real[..real.len() / 2];
    let err = runtime.load(truncated).unwrap_err();
    assert!(
        matches!(err, LoadError::Encode(_) | LoadError::Compile(_)),
        "{err}"
    );
    let too_big = Limits {
        max_component_bytes: 1000,
        ..Limits::default()
    };
    let small_runtime = MappingRuntime::new(too_big).unwrap();
    let err = small_runtime.load(&real).unwrap_err();
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("limits.max_component_bytes"),
        "{err}"
    );
}

#[test]
fn a_wasi_guest_loads_but_sees_no_files_environment_or_network() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    // Variables the host itself has must not leak into the guest.
    assert!(std::env::var("PATH").is_ok());
    let report = call_once(&runtime, &guest("testing/wasi_prober.wasm"), "{}");
    let output = report.result.expect("the prober maps");
    let seen: Value = serde_json::from_str(&output).unwrap();
    eprintln!("wasi prober saw: {seen}");
    assert_eq!(seen["env"], json!([]), "environment leaked: {seen}");
    assert_eq!(seen["args"], json!([]), "arguments leaked: {seen}");
    assert_eq!(
        seen["preopens"],
        json!([]),
        "a directory was preopened: {seen}"
    );
    assert!(
        seen["tcp"].as_str().unwrap().starts_with("error"),
        "TCP allowed: {seen}"
    );
    assert!(
        seen["dns"].as_str().unwrap().starts_with("error"),
        "name lookup allowed: {seen}"
    );
    // Its default list of paths (the process's environment and command line, /etc/passwd,
    // the root, the secrets beside a config) opens nothing; no variable is found by name.
    let files = seen["files"].as_object().unwrap();
    assert!(files.len() >= 5, "{seen}");
    for (path, result) in files {
        assert_eq!(
            result, "error: no preopened directory to open it from",
            "{path}: {seen}"
        );
    }
    for (name, value) in seen["env_lookup"].as_object().unwrap() {
        assert!(value.is_null(), "${name} leaked: {seen}");
    }
    // The config import gives the step its own table only (none here), nothing of the host's.
    assert_eq!(seen["config_keys"], json!([]), "{seen}");
    for (key, value) in seen["config_lookup"].as_object().unwrap() {
        assert!(value.is_null(), "config `{key}` leaked: {seen}");
    }
    // The wall clock reads the context timestamp, 2026-11-24T12:00:00Z.
    assert_eq!(seen["wall_clock_seconds"], 1_795_521_600u64, "{seen}");
    // stdout and stderr reach the host log, tagged by stream.
    let lines: Vec<_> = report
        .logs
        .iter()
        .map(|l| (format!("{:?}", l.stream), l.message.clone()))
        .collect();
    assert!(
        lines.contains(&("Stdout".into(), "hello from stdout".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("Stderr".into(), "hello from stderr".into())),
        "{lines:?}"
    );
    // Randomness is repeatable for the same version and input.
    let again = call_once(&runtime, &guest("testing/wasi_prober.wasm"), "{}");
    let again: Value = serde_json::from_str(&again.result.unwrap()).unwrap();
    assert_eq!(seen["random"], again["random"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_refuses_every_hostile_upload_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = start_stamp_host(dir.path()).await;
    let active = admin.active_version("pc-to-crm").await;
    let hostile = [
        ("infinite_loop", "fuel budget"),
        ("memory_bomb", "memory cap"),
        ("deep_recursion", "stack limit"),
        ("panics", "deliberate panic in map"),
        ("oversized_output", "output size cap"),
        (
            "other_world",
            "does not implement the cosell:mapping/mapping-step world",
        ),
    ];
    for (name, expected) in hostile {
        let (status, body) = admin
            .deploy("pc-to-crm", guest(&format!("testing/{name}.wasm")))
            .await;
        assert_eq!(status, 422, "{name} was not refused: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{name}: `{message}` does not mention `{expected}`"
        );
        assert_eq!(
            admin.active_version("pc-to-crm").await,
            active,
            "{name} changed the active version"
        );
        let (status, out) = admin
            .run("partner-center-to-crm", json!({ "after": name }))
            .await;
        assert_eq!(status, 200, "the host stopped serving after {name}: {out}");
        assert_eq!(out["document"]["_mapping"]["version"], active.as_str());
    }
    let (status, body) = admin
        .deploy("pc-to-crm", b"\0asm\x01\0\0\0garbage".to_vec())
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = admin.deploy("pc-to-crm", vec![7u8; 1000]).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly file")
    );
    let (status, _) = admin
        .deploy("no-such-step", guest("testing/version_stamp.wasm"))
        .await;
    assert_eq!(status, 404);
    // Without the token nothing is deployed.
    let response = admin
        .http
        .post(format!("{}/admin/v1/steps/pc-to-crm/versions", admin.base))
        .body(guest("testing/panics.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (_, versions) = admin.get("/admin/v1/steps/pc-to-crm/versions").await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "a refused upload was stored: {versions}"
    );
    host.shutdown().await.unwrap();
}

#[test]
fn typed_guest_errors_keep_their_meaning() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let wasm = guest("testing/version_stamp.wasm");
    for (input, check) in [
        (
            r#"{"reject":"no customer"}"#,
            "rejected the record: no customer",
        ),
        (
            r#"{"skip":"sync is off"}"#,
            "skipped the record: sync is off",
        ),
        (r#"{"fail":"try later"}"#, "failed (retryable): try later"),
    ] {
        let err = call_once(&runtime, &wasm, input).result.unwrap_err();
        assert!(err.to_string().ends_with(check), "{err}");
        assert_eq!(err.kind.is_retryable(), input.contains("fail"));
    }
}
