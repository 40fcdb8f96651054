//! The default mapping components, built from source, map the recorded sample referrals and
//! opportunities (guest-mappings/fixtures/cases.json) to the expected output, and the native
//! library they wrap gives byte-for-byte the same result.

mod support;

use cosell::runtime::{
    AllocatorKind, CallErrorKind, Direction, Limits, MappingCall, MappingRuntime, StepConfig,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use support::{fixture, guest};

#[derive(Deserialize)]
struct Cases {
    context: CaseContext,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct CaseContext {
    tenant: String,
    timestamp: String,
    mapping_version: String,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    direction: Direction,
    mapping_name: String,
    event: String,
    input: String,
    current: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    expected: String,
}

struct NativeConfig<'a>(&'a BTreeMap<String, String>);

impl mapping_rules::Config for NativeConfig<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// Runs the native library on a case, with the same context the component gets.
fn native(
    case: &Case,
    ctx: &CaseContext,
    version: &str,
    input: &str,
    current: Option<&str>,
) -> Result<String, mapping_rules::MappingError> {
    let context = mapping_rules::Context {
        direction: match case.direction {
            Direction::PartnerCenterToCrm => mapping_rules::Direction::PartnerCenterToCrm,
            Direction::CrmToPartnerCenter => mapping_rules::Direction::CrmToPartnerCenter,
        },
        event: case.event.clone(),
        tenant: ctx.tenant.clone(),
        mapping_name: case.mapping_name.clone(),
        mapping_version: version.to_owned(),
        timestamp: ctx.timestamp.clone(),
    };
    let config = NativeConfig(&case.config);
    match case.direction {
        Direction::PartnerCenterToCrm => {
            mapping_rules::referral_to_opportunity(&context, input, current, &config)
        }
        Direction::CrmToPartnerCenter => {
            mapping_rules::opportunity_to_referral(&context, input, current, &config)
        }
    }
}

#[test]
fn default_components_map_every_fixture_like_the_native_library() {
    let cases: Cases = serde_json::from_str(&fixture("cases.json")).unwrap();
    assert!(cases.cases.len() >= 8, "too few fixture cases");
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let referral_to_opportunity = runtime
        .load(&guest("referral_to_opportunity.wasm"))
        .unwrap();
    let opportunity_to_referral = runtime
        .load(&guest("opportunity_to_referral.wasm"))
        .unwrap();
    // Timestamps in the manifest use the second precision the host passes; parse once.
    let timestamp: chrono::DateTime<chrono::Utc> = cases.context.timestamp.parse().unwrap();
    let mut checked = 0;
    for case in &cases.cases {
        let input = fixture(&case.input);
        let current = case.current.as_deref().map(fixture);
        let component = match case.direction {
            Direction::PartnerCenterToCrm => &referral_to_opportunity,
            Direction::CrmToPartnerCenter => &opportunity_to_referral,
        };
        let report = runtime.call(
            component,
            &MappingCall {
                mapping_name: Arc::from(case.mapping_name.as_str()),
                direction: case.direction,
                event: &case.event,
                tenant: &cases.context.tenant,
                timestamp,
                input: &input,
                current: current.as_deref(),
                config: Arc::new(case.config.clone().into_iter().collect::<StepConfig>()),
            },
        );
        // The host passes milliseconds; the native run gets the exact string the guest saw.
        let host_timestamp = timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let native_ctx = CaseContext {
            tenant: cases.context.tenant.clone(),
            timestamp: host_timestamp,
            mapping_version: component.version.to_string(),
        };
        let native_result = native(
            case,
            &native_ctx,
            &native_ctx.mapping_version,
            &input,
            current.as_deref(),
        );
        let expected = fixture(&case.expected);
        let expected: Value = serde_json::from_str(&expected).unwrap();
        match (&report.result, &native_result) {
            (Ok(wasm_out), Ok(native_out)) => {
                assert_eq!(
                    wasm_out, native_out,
                    "case {}: WASM and native outputs differ",
                    case.name
                );
                let got: Value = serde_json::from_str(wasm_out).unwrap();
                assert_eq!(
                    got,
                    expected,
                    "case {}: output differs from {}\n got: {}",
                    case.name,
                    case.expected,
                    serde_json::to_string_pretty(&got).unwrap()
                );
            }
            (Err(err), Err(native_err)) => {
                // Expected files of error cases hold {"error": {"kind": ..., "message": ...}}.
                let (kind, message) = match (&err.kind, native_err) {
                    (CallErrorKind::Rejected(m), mapping_rules::MappingError::Reject(n)) => {
                        ("reject", {
                            assert_eq!(m, n);
                            m
                        })
                    }
                    (CallErrorKind::Skipped(m), mapping_rules::MappingError::Skip(n)) => {
                        ("skip", {
                            assert_eq!(m, n);
                            m
                        })
                    }
                    (CallErrorKind::Failed(m), mapping_rules::MappingError::Fail(n)) => ("fail", {
                        assert_eq!(m, n);
                        m
                    }),
                    other => panic!("case {}: WASM and native disagree: {other:?}", case.name),
                };
                assert_eq!(expected["error"]["kind"], kind, "case {}", case.name);
                assert_eq!(
                    expected["error"]["message"],
                    message.as_str(),
                    "case {}",
                    case.name
                );
            }
            other => panic!("case {}: WASM and native disagree: {other:?}", case.name),
        }
        assert!(report.stats.fuel_used > 0);
        checked += 1;
    }
    eprintln!(
        "{checked} fixture cases matched in WASM and natively; manifest context version {}",
        cases.context.mapping_version
    );
}

/// The referral-sample case as the host would call it.
fn sample_call<'a>(input: &'a str) -> MappingCall<'a> {
    MappingCall {
        mapping_name: Arc::from("referral-to-opportunity"),
        direction: Direction::PartnerCenterToCrm,
        event: "sample",
        tenant: "contoso-partner",
        timestamp: "2026-11-24T12:00:00Z".parse().unwrap(),
        input,
        current: None,
        config: Arc::new(StepConfig::new()),
    }
}

/// A referral far bigger than the guests' 1 MiB allocator arena (a 300 KB note, copied into the
/// output, and parsed, copied and serialised several times over) maps exactly as natively: the
/// guest's allocator grows linear memory past its arena correctly.
#[test]
fn a_record_larger_than_the_guest_allocator_arena_maps_like_the_native_library() {
    let mut referral: Value = serde_json::from_str(&fixture("partner-center-to-crm/referral-sample/input.json")).unwrap();
    let note: String = "Customer asked for a migration plan. ".repeat(8_000);
    referral["details"]["notes"] = Value::String(note.clone());
    let input = serde_json::to_string(&referral).unwrap();
    assert!(input.len() > 290_000);

    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let component = runtime
        .load(&guest("referral_to_opportunity.wasm"))
        .unwrap();
    let call = sample_call(&input);
    let report = runtime.call(&component, &call);
    let wasm_out = report.result.expect("the big referral maps");
    assert!(
        report.stats.peak_memory_bytes > 2 * 1024 * 1024,
        "the guest should have grown past its initial memory, peaked at {} bytes",
        report.stats.peak_memory_bytes
    );

    let context = mapping_rules::Context {
        direction: mapping_rules::Direction::PartnerCenterToCrm,
        event: call.event.to_owned(),
        tenant: call.tenant.to_owned(),
        mapping_name: call.mapping_name.to_string(),
        mapping_version: component.version.to_string(),
        timestamp: "2026-11-24T12:00:00.000Z".to_owned(),
    };
    let native_out = mapping_rules::referral_to_opportunity(
        &context,
        &input,
        None,
        &BTreeMap::<String, String>::new(),
    )
    .unwrap();
    assert_eq!(wasm_out, native_out);
    let out: Value = serde_json::from_str(&wasm_out).unwrap();
    let description = out["description"].as_str().unwrap_or_default();
    // (Not assert_eq: a mismatch would print 300 KB twice.)
    assert!(
        description == note.trim_end(),
        "the description is not the note (trimmed): {} bytes instead of {}",
        description.len(),
        note.trim_end().len()
    );
}

/// `MappingRuntime::with_allocator` and `MappingRuntime::instantiate`, which the benchmarks use
/// to measure instantiation and per-instance memory, run the very mapping `call` runs: same
/// output with either allocator, and from an instance held outside a call.
#[test]
fn either_allocator_and_a_held_instance_map_like_the_production_call() {
    let input = fixture("partner-center-to-crm/referral-sample/input.json");
    let call = sample_call(&input);
    let production = MappingRuntime::new(Limits::default()).unwrap();
    let component = production
        .load(&guest("referral_to_opportunity.wasm"))
        .unwrap();
    let expected = production.call(&component, &call).result.unwrap();

    for allocator in [AllocatorKind::Pooling, AllocatorKind::OnDemand] {
        let runtime = MappingRuntime::with_allocator(Limits::default(), allocator).unwrap();
        assert_eq!(runtime.allocator(), allocator);
        let component = runtime
            .load(&guest("referral_to_opportunity.wasm"))
            .unwrap();
        assert_eq!(
            runtime.call(&component, &call).result.unwrap(),
            expected,
            "{allocator:?}"
        );
        let mut held = runtime.instantiate(&component, &call).unwrap();
        assert!(held.peak_memory_bytes() > 0, "{allocator:?}");
        assert_eq!(
            held.call(&component, &call).unwrap(),
            expected,
            "{allocator:?}"
        );
    }
}
