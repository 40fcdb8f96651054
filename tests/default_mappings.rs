//! The default mapping components, built from source, map the recorded sample referrals and
//! opportunities (guest-mappings/fixtures/<direction>/<case>/) to the expected output, and the
//! native library they wrap gives byte-for-byte the same result.

mod support;

use cosell::pipeline::fixtures::{Expected, FixtureCase, load_suite};
use cosell::runtime::{AllocatorKind, Direction, Limits, MappingCall, MappingRuntime, StepConfig};
use serde_json::Value;
use std::sync::Arc;
use support::{fixture, guest, repo_root};

struct NativeConfig<'a>(&'a StepConfig);

impl mapping_rules::Config for NativeConfig<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// Runs the native library on a case, with the context the component got: the host's
/// millisecond timestamp and the component's version.
fn native(
    case: &FixtureCase,
    direction: Direction,
    mapping_name: &str,
    version: &str,
) -> Result<String, mapping_rules::MappingError> {
    let context = mapping_rules::Context {
        direction: match direction {
            Direction::PartnerCenterToCrm => mapping_rules::Direction::PartnerCenterToCrm,
            Direction::CrmToPartnerCenter => mapping_rules::Direction::CrmToPartnerCenter,
        },
        event: case.context.event.clone(),
        tenant: case.context.tenant.clone(),
        mapping_name: mapping_name.to_owned(),
        mapping_version: version.to_owned(),
        timestamp: case
            .context
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let (input, current) = (&case.input, case.current.as_deref());
    let config = NativeConfig(&case.config);
    match direction {
        Direction::PartnerCenterToCrm => {
            mapping_rules::referral_to_opportunity(&context, input, current, &config)
        }
        Direction::CrmToPartnerCenter => {
            mapping_rules::opportunity_to_referral(&context, input, current, &config)
        }
    }
}

/// The native library's outcome as a fixture records it.
fn native_outcome(result: Result<String, mapping_rules::MappingError>) -> Expected {
    use cosell::pipeline::fixtures::{ErrorKind, ExpectedError};
    let (kind, message) = match result {
        Ok(text) => return Expected::Output(serde_json::from_str(&text).unwrap()),
        Err(mapping_rules::MappingError::Reject(m)) => (ErrorKind::Reject, m),
        Err(mapping_rules::MappingError::Skip(m)) => (ErrorKind::Skip, m),
        Err(mapping_rules::MappingError::Fail(m)) => (ErrorKind::Fail, m),
    };
    Expected::Error(ExpectedError { kind, message })
}

#[test]
fn default_components_map_every_fixture_like_the_native_library() {
    let runtime = MappingRuntime::new(Limits::default()).unwrap();
    let mut checked = 0;
    for (direction, wasm, mapping_name) in [
        (
            Direction::PartnerCenterToCrm,
            "referral_to_opportunity.wasm",
            "referral-to-opportunity",
        ),
        (
            Direction::CrmToPartnerCenter,
            "opportunity_to_referral.wasm",
            "opportunity-to-referral",
        ),
    ] {
        let component = runtime.load(&guest(wasm)).unwrap();
        let dir = repo_root()
            .join("guest-mappings/fixtures")
            .join(direction.to_string());
        for case in load_suite(&dir).unwrap() {
            assert_eq!(
                case.context.direction,
                Some(direction),
                "case {}",
                case.name
            );
            let report = runtime.call(
                &component,
                &MappingCall {
                    mapping_name: Arc::from(mapping_name),
                    direction,
                    event: &case.context.event,
                    tenant: &case.context.tenant,
                    timestamp: case.context.timestamp,
                    input: &case.input,
                    current: case.current.as_deref(),
                    config: Arc::new(case.config.clone()),
                },
            );
            let native_result = native(&case, direction, mapping_name, &component.version);
            if let (Ok(wasm_out), Ok(native_out)) = (&report.result, &native_result) {
                assert_eq!(
                    wasm_out, native_out,
                    "case {}: WASM and native outputs differ byte for byte",
                    case.name
                );
            }
            let wasm_outcome = Expected::from_call(&report.result)
                .unwrap_or_else(|err| panic!("case {}: the component {err}", case.name));
            assert_eq!(
                wasm_outcome,
                native_outcome(native_result),
                "case {}: WASM and native disagree",
                case.name
            );
            let expected = case
                .expected
                .as_ref()
                .expect("every case has an expected file");
            assert_eq!(
                &wasm_outcome, expected,
                "case {}: the outcome differs from its expected file",
                case.name
            );
            assert!(report.stats.fuel_used > 0);
            checked += 1;
        }
    }
    assert!(checked >= 12, "the fixtures lost cases: {checked}");
    eprintln!("{checked} fixture cases matched in WASM and natively");
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
    let mut referral: Value =
        serde_json::from_str(&fixture("partner-center-to-crm/referral-sample/input.json")).unwrap();
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
    let native_out =
        mapping_rules::referral_to_opportunity(&context, &input, None, &StepConfig::new()).unwrap();
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
