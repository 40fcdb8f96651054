//! Mapping steps written in other languages: the Python example in guest-mappings/python-example
//! (componentize-py) and the JavaScript example in guest-mappings/js-example (componentize-js).
//! The Python one imports WASI 0.2 (its runtime needs it); the JavaScript one is built with every
//! optional feature disabled and imports only the contract. Both must load into the
//! deny-by-default sandbox and run under the same limits and contract as the Rust ones.

mod support;

use cosell::runtime::{
    CallErrorKind, CallReport, GuestStream, Limit, Limits, MappingComponent, MappingRuntime,
};
use serde_json::Value;
use std::sync::Arc;
use support::{guest, start_stamp_host, test_call};

/// The record both examples map: it has a name, so it is accepted.
const NAMED_RECORD: &str = r#"{"name": "Contoso deal", "estimatedvalue": 1000}"#;

/// Calls `component` on [`NAMED_RECORD`] with `owner-team = emea` in the step's config.
fn map_with_owner_team(
    runtime: &MappingRuntime,
    component: &MappingComponent,
    step: &str,
) -> CallReport {
    let mut call = test_call(step, NAMED_RECORD);
    call.config = Arc::new(
        [("owner-team".to_owned(), "emea".to_owned())]
            .into_iter()
            .collect(),
    );
    runtime.call(component, &call)
}

/// The output document of a call that must have succeeded.
fn output_document(report: &CallReport) -> Value {
    serde_json::from_str(report.result.as_ref().expect("the record maps")).unwrap()
}

/// What the guest wrote, by stream.
fn messages(report: &CallReport) -> Vec<(GuestStream, &str)> {
    report
        .logs
        .iter()
        .map(|l| (l.stream, l.message.as_str()))
        .collect()
}

/// A record with no name comes back as the typed `reject` error, not as a trap.
fn assert_rejects_a_record_without_name(
    runtime: &MappingRuntime,
    component: &MappingComponent,
    step: &str,
) {
    let rejected = runtime.call(component, &test_call(step, r#"{"estimatedvalue": 5}"#));
    let err = rejected.result.unwrap_err();
    assert_eq!(
        err.kind,
        CallErrorKind::Rejected("the record has no name".into()),
        "{err}"
    );
}

fn print_stats(language: &str, report: &CallReport) {
    eprintln!(
        "{language} step: {} fuel, {:.1} MiB peak memory, {:?}",
        report.stats.fuel_used,
        report.stats.peak_memory_bytes as f64 / 1048576.0,
        report.stats.duration
    );
}

#[test]
fn a_python_component_maps_logs_and_rejects_like_a_rust_one() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let component = runtime
        .load(&guest("python_example.wasm"))
        .expect("a componentize-py component loads and type-checks");

    let report = map_with_owner_team(&runtime, &component, "python-step");
    let output = output_document(&report);
    assert_eq!(output["name"], "Contoso deal");
    assert_eq!(
        output["owningteam_name"], "emea",
        "the config import reached Python"
    );
    assert_eq!(output["mapped_by"]["version"], &*component.version);
    let messages = messages(&report);
    assert!(
        messages.contains(&(
            GuestStream::Log,
            "python step mapped 'Contoso deal' for team emea"
        )),
        "{messages:?}"
    );
    assert!(
        messages.contains(&(GuestStream::Stdout, "stdout from python")),
        "{messages:?}"
    );
    print_stats("python", &report);

    assert_rejects_a_record_without_name(&runtime, &component, "python-step");
}

#[test]
fn a_javascript_component_maps_logs_and_rejects_like_a_rust_one() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let component = runtime
        .load(&guest("js_example.wasm"))
        .expect("a componentize-js component loads and type-checks");

    let report = map_with_owner_team(&runtime, &component, "js-step");
    let output = output_document(&report);
    assert_eq!(output["name"], "Contoso deal");
    assert_eq!(output["estimatedvalue"], 1000, "the input is kept");
    assert_eq!(
        output["owningteam_name"], "emea",
        "the config import reached JavaScript"
    );
    assert_eq!(output["mapped_by"]["language"], "javascript");
    assert_eq!(
        output["mapped_by"]["version"], &*component.version,
        "the context reached JavaScript"
    );
    let messages = messages(&report);
    assert_eq!(
        messages,
        [(
            GuestStream::Log,
            r#"javascript step mapped "Contoso deal" for team emea"#
        )],
        "one line through the log import, nothing on stdio"
    );
    print_stats("javascript", &report);

    // Without the key, `config.get` answers nothing (`undefined` in JavaScript).
    let unconfigured = runtime.call(&component, &test_call("js-step", NAMED_RECORD));
    assert_eq!(
        output_document(&unconfigured)["owningteam_name"],
        "unassigned"
    );

    assert_rejects_a_record_without_name(&runtime, &component, "js-step");
    let not_json = runtime.call(&component, &test_call("js-step", "[1, 2"));
    assert!(
        matches!(
            &not_json.result.as_ref().unwrap_err().kind,
            CallErrorKind::Rejected(message) if message.starts_with("input is not JSON")
        ),
        "{:?}",
        not_json.result
    );
}

/// componentize-js is run with every optional feature disabled (stdio, random, clocks, http,
/// fetch-event), so the component needs nothing from the host but the contract: no WASI at all.
/// Enabling one of them in the example's build script makes this fail.
#[test]
fn the_javascript_component_imports_only_the_contract() {
    let bytes = guest("js_example.wasm");
    let mut imports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ComponentImportSection(section) = payload.unwrap() {
            // Interfaces are named `package/interface`; the other imports are the types the
            // world `use`s (`context`, `mapping-error`).
            for import in section {
                let name = import.unwrap().name.name;
                if name.contains(':') {
                    imports.push(name.to_owned());
                }
            }
        }
    }
    imports.sort();
    assert_eq!(
        imports,
        [
            "cosell:mapping/config@0.1.0",
            "cosell:mapping/log@0.1.0",
            "cosell:mapping/types@0.1.0",
        ],
        "the JavaScript example must import no interface but the contract's"
    );
}

/// The JavaScript engine runs inside the component, so its fuel counts every instruction of the
/// interpreter: the production limits stop it like any other guest, deterministically.
#[test]
fn a_javascript_component_is_stopped_by_the_fuel_limit() {
    let runtime = MappingRuntime::new(Limits {
        fuel: 200_000,
        ..Limits::default()
    })
    .unwrap();
    let component = runtime.load(&guest("js_example.wasm")).unwrap();
    let report = runtime.call(&component, &test_call("js-step", NAMED_RECORD));
    let err = report.result.unwrap_err();
    assert!(
        matches!(
            err.kind,
            CallErrorKind::LimitExceeded {
                limit: Limit::Fuel,
                ..
            }
        ),
        "{err}"
    );
}

/// What a JavaScript author does with the built step: deploy it into a running host (checked
/// on the sample record under the production limits), and the pipeline serves it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_step_deploys_into_a_running_host_and_serves_its_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = start_stamp_host(dir.path()).await;

    let (status, report) = admin.deploy("pc-to-crm", guest("js_example.wasm")).await;
    assert_eq!(status, 200, "the JavaScript step was refused: {report}");
    let version = report["version"].as_str().unwrap().to_owned();
    assert_eq!(admin.active_version("pc-to-crm").await, version);

    let (status, body) = admin
        .run(
            "partner-center-to-crm",
            serde_json::from_str(NAMED_RECORD).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let document = &body["document"];
    assert_eq!(document["name"], "Contoso deal", "{body}");
    assert_eq!(document["owningteam_name"], "unassigned", "{body}");
    assert_eq!(document["mapped_by"]["version"], version.as_str(), "{body}");
    assert_eq!(body["steps"][0]["version"], version.as_str(), "{body}");
}
