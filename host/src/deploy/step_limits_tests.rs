//! Per-step limits: a step's own `limits` apply to its every call (live runs and deploy
//! validation), and only to it.

use super::*;
use crate::config::HostConfig;
use crate::pipeline::PipelineInput;
use crate::runtime::{CallErrorKind, Direction, Limit, Limits, MappingRuntime};
use crate::store::sqlite::SqliteStore;

fn stamp() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guest-mappings/dist/testing/version_stamp.wasm"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (build the guests: make guests)"))
}

/// A host configuration in `dir` with step `roomy` (PC → CRM, `[limits]`) and step `tight`
/// (CRM → PC, `tight_limits`), both the version-stamp component.
fn config(dir: &std::path::Path, tight_limits: &str) -> anyhow::Result<HostConfig> {
    let component = dir.join("stamp.wasm");
    std::fs::write(&component, stamp()).unwrap();
    let path = dir.join("cosell.toml");
    std::fs::write(
        &path,
        format!(
            "[state]\npath = \"state.db\"\n\
             [[pipelines.partner-center-to-crm]]\nstep = \"roomy\"\ncomponent = \"{c}\"\n\
             [[pipelines.crm-to-partner-center]]\nstep = \"tight\"\ncomponent = \"{c}\"\nlimits = {tight_limits}\n",
            c = component.display()
        ),
    )
    .unwrap();
    HostConfig::load(&path)
}

fn input() -> PipelineInput {
    PipelineInput {
        event: "test".into(),
        tenant: "test".into(),
        timestamp: chrono::Utc::now(),
        document: r#"{"name": "a record"}"#.into(),
        current: None,
    }
}

#[tokio::test]
async fn a_step_with_a_small_fuel_budget_fails_where_a_step_with_the_default_passes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "{ fuel = 1000 }").unwrap();
    let store: Arc<dyn DeploymentStore> =
        Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    // Already deployed (so start-up loads it without running the sample, which the tight
    // budget would refuse).
    let version = crate::runtime::component::content_hash(&stamp());
    store
        .save_and_activate(
            "tight",
            &version,
            &stamp(),
            "config",
            ActivationReason::Bootstrap,
        )
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let runtime = Arc::new(
        MappingRuntime::with_pool_memory(config.limits.clone(), config.largest_step_memory())
            .unwrap(),
    );
    let boot = bootstrap(&config.pipelines, runtime, store.as_ref(), metrics.clone()).unwrap();
    let pipelines = boot.pipelines.clone();
    assert_eq!(pipelines.step("tight").unwrap().limits.fuel, 1000);
    assert_eq!(
        pipelines.step("roomy").unwrap().limits.fuel,
        Limits::default().fuel
    );

    let roomy = pipelines.run(Direction::PartnerCenterToCrm, input()).await;
    assert!(roomy.is_ok(), "{roomy:?}");
    let tight = pipelines
        .run(Direction::CrmToPartnerCenter, input())
        .await
        .unwrap_err();
    assert!(
        matches!(
            tight.error.kind,
            CallErrorKind::LimitExceeded {
                limit: Limit::Fuel,
                ..
            }
        ),
        "{tight}"
    );
    assert!(
        tight.to_string().contains("all 1000 units of fuel"),
        "{tight}"
    );

    // Deploy validation runs under the step's limits too.
    let deployer = Deployer::new(pipelines, store, boot.samples, metrics);
    let mut other = stamp();
    other.extend_from_slice(&[0, 3, 1, b'v', 2]);
    assert!(matches!(
        deployer
            .deploy("tight", other.clone(), DeploySource::AdminApi)
            .await,
        Err(DeployError::Invalid { .. })
    ));
    deployer
        .deploy("roomy", other, DeploySource::AdminApi)
        .await
        .unwrap();
}

#[test]
fn a_steps_limits_refuse_unknown_keys_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let err = format!("{:#}", config(dir.path(), "{ fule = 5 }").unwrap_err());
    assert!(err.contains("unknown field `fule`"), "{err}");
    let err = format!("{:#}", config(dir.path(), "{ fuel = 0 }").unwrap_err());
    assert!(
        err.contains("step `tight`") && err.contains("limits.fuel must be greater than 0"),
        "{err}"
    );
    let config = config(dir.path(), "{ memory_bytes = 100000000 }").unwrap();
    assert_eq!(config.largest_step_memory(), 100_000_000);
    assert_eq!(config.step_limits("tight").memory_bytes, 100_000_000);
    assert_eq!(config.step_limits("roomy"), Limits::default());
    assert_eq!(config.step_limits("no-such-step"), Limits::default());
}
