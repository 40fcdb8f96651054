//! Pipelines as configured: steps run in order (each step's output is the next one's input),
//! each step sees its own operator config, and uploads in component form work like core
//! modules.

mod support;

use cosell::runtime::component::component_bytes;
use cosell::runtime::{CallErrorKind, Limit, Limits, MappingRuntime};
use serde_json::{Value, json};
use support::{Admin, fixture, guest, guest_path, start, test_call};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_output_is_the_next_steps_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cosell.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[admin]
listen = "127.0.0.1:0"
[state]
path = "state.db"

[[pipelines.partner-center-to-crm]]
step = "referral-to-opportunity"
component = "{r2o}"
config = {{ column-prefix = "new_" }}

[[pipelines.partner-center-to-crm]]
step = "stamp"
component = "{stamp}"
config = {{ region = "emea" }}
"#,
            r2o = guest_path("referral_to_opportunity.wasm").display(),
            stamp = guest_path("testing/version_stamp.wasm").display(),
        ),
    )
    .unwrap();
    let host = start(cosell::config::HostConfig::load(&path).unwrap()).await;
    let admin = Admin::new(&host);
    let referral: Value =
        serde_json::from_str(&fixture("partner-center-to-crm/referral-sample/input.json")).unwrap();
    let (status, body) = admin.run("partner-center-to-crm", referral).await;
    assert_eq!(status, 200, "{body}");
    let document = &body["document"];
    // Step 1 mapped the referral to an opportunity with the configured column prefix...
    assert_eq!(document["new_syncwithpartnercenter"], true, "{document}");
    assert!(document.get("cosell_syncwithpartnercenter").is_none());
    // ...and step 2 received that opportunity, with its own config and name.
    assert_eq!(document["_mapping"]["name"], "stamp");
    assert_eq!(document["_config"], json!({ "region": "emea" }));
    let steps: Vec<&str> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["referral-to-opportunity", "stamp"]);

    // A record the first step rejects stops there, and the answer names the step.
    let (status, body) = admin
        .run("partner-center-to-crm", json!("not an object"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["step"], "referral-to-opportunity");
    assert_eq!(body["kind"], "rejected");

    let health: Value = reqwest::get(format!("{}/healthz", admin.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["steps"].as_array().unwrap().len(), 2);
    // The admin routes need the token; health does not.
    let status = reqwest::get(format!("{}/admin/v1/steps", admin.base))
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
    host.shutdown().await.unwrap();
}

#[test]
fn a_component_and_the_core_module_it_came_from_behave_the_same() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let module = guest("referral_to_opportunity.wasm");
    let component = component_bytes(&module).unwrap().into_owned();
    assert!(wasmparser_is_component(&component));
    let input = fixture("partner-center-to-crm/referral-sample/input.json");
    let outputs: Vec<String> = [module, component]
        .iter()
        .map(|bytes| {
            let loaded = runtime.load(bytes).unwrap();
            let report = runtime.call(&loaded, &test_call("step", &input));
            report.result.unwrap()
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
}

fn wasmparser_is_component(bytes: &[u8]) -> bool {
    // Layer 0x0d, version 1: the component binary header.
    bytes.starts_with(b"\0asm") && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

#[test]
fn a_guest_that_logs_past_its_budget_is_stopped() {
    let limits = Limits {
        max_log_bytes: 8,
        ..Limits::default()
    };
    let runtime = MappingRuntime::new(limits).unwrap();
    let stamp = runtime.load(&guest("testing/version_stamp.wasm")).unwrap();
    let err = runtime
        .call(&stamp, &test_call("step", "{}"))
        .result
        .unwrap_err();
    assert!(
        matches!(
            err.kind,
            CallErrorKind::LimitExceeded {
                limit: Limit::LogSize,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("limits.max_log_bytes"), "{err}");
    // Under the default budget the same call logs and succeeds.
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let stamp = runtime.load(&guest("testing/version_stamp.wasm")).unwrap();
    let report = runtime.call(&stamp, &test_call("step", "{}"));
    assert!(report.result.is_ok());
    assert_eq!(report.logs.len(), 1, "{:?}", report.logs);
}
