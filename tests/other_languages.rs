//! A mapping step written in another language: the Python example in
//! guest-mappings/python-example, built with componentize-py. Such components import WASI 0.2
//! (the Python runtime needs it); they must load into the deny-by-default sandbox and run
//! under the same limits and contract as the Rust ones.

mod support;

use cosell::runtime::{CallErrorKind, GuestStream, Limits, MappingRuntime};
use serde_json::Value;
use std::sync::Arc;
use support::{guest, test_call};

#[test]
fn a_python_component_maps_logs_and_rejects_like_a_rust_one() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let component = runtime
        .load(&guest("python_example.wasm"))
        .expect("a componentize-py component loads and type-checks");

    let mut call = test_call(
        "python-step",
        r#"{"name": "Contoso deal", "estimatedvalue": 1000}"#,
    );
    call.config = Arc::new(
        [("owner-team".to_owned(), "emea".to_owned())]
            .into_iter()
            .collect(),
    );
    let report = runtime.call(&component, &call);
    let output: Value =
        serde_json::from_str(report.result.as_ref().expect("the record maps")).unwrap();
    assert_eq!(output["name"], "Contoso deal");
    assert_eq!(
        output["owningteam_name"], "emea",
        "the config import reached Python"
    );
    assert_eq!(output["mapped_by"]["version"], &*component.version);
    let messages: Vec<_> = report
        .logs
        .iter()
        .map(|l| (l.stream, l.message.as_str()))
        .collect();
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
    eprintln!(
        "python step: {} fuel, {:.1} MiB peak memory, {:?}",
        report.stats.fuel_used,
        report.stats.peak_memory_bytes as f64 / 1048576.0,
        report.stats.duration
    );

    let rejected = runtime.call(
        &component,
        &test_call("python-step", r#"{"estimatedvalue": 5}"#),
    );
    let err = rejected.result.unwrap_err();
    assert_eq!(
        err.kind,
        CallErrorKind::Rejected("the record has no name".into()),
        "{err}"
    );
}
