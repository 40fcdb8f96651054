//! Step config changed without a restart: validated, stored as revisions, swapped in,
//! followed by another host on the same store, and chosen at start-up against the file.

use super::step_config::ConfigChange;
use super::*;
use crate::config::HostConfig;
use crate::pipeline::PipelineInput;
use crate::runtime::{Direction, Limits, MappingRuntime};
use crate::store::sqlite::SqliteStore;
use serde_json::Value;

fn guest(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../guest-mappings/dist/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (build the guests: make guests)"))
}

/// Step `default` (the default PC → CRM mapping) and step `stamp` (CRM → PC, the
/// version-stamp guest, which echoes its config as `_config`) with `stamp_config`.
fn write_config(dir: &std::path::Path, stamp_config: &str) -> HostConfig {
    std::fs::write(
        dir.join("default.wasm"),
        guest("referral_to_opportunity.wasm"),
    )
    .unwrap();
    std::fs::write(dir.join("stamp.wasm"), guest("testing/version_stamp.wasm")).unwrap();
    let path = dir.join("cosell.toml");
    std::fs::write(
        &path,
        format!(
            "[state]\npath = \"state.db\"\n\
             [[pipelines.partner-center-to-crm]]\nstep = \"default\"\ncomponent = \"default.wasm\"\n\
             [[pipelines.crm-to-partner-center]]\nstep = \"stamp\"\ncomponent = \"stamp.wasm\"\nconfig = {stamp_config}\n"
        ),
    )
    .unwrap();
    HostConfig::load(&path).unwrap()
}

fn start(config: &HostConfig, store: Arc<dyn DeploymentStore>) -> Deployer {
    let metrics = Arc::new(Metrics::new());
    let runtime = Arc::new(MappingRuntime::new(Limits::default()).unwrap());
    let boot = bootstrap(&config.pipelines, runtime, store.as_ref(), metrics.clone()).unwrap();
    Deployer::new(boot.pipelines, store, boot.samples, metrics)
}

/// The config the `stamp` step's guest saw on a live call.
async fn seen_config(deployer: &Deployer) -> Value {
    let input = PipelineInput {
        event: "test".into(),
        tenant: "test".into(),
        timestamp: chrono::Utc::now(),
        document: "{}".into(),
        current: None,
    };
    let out = deployer
        .pipelines()
        .run(Direction::CrmToPartnerCenter, input)
        .await
        .unwrap();
    serde_json::from_str::<Value>(&out.document).unwrap()["_config"].clone()
}

fn set(key: &str, value: &str) -> ConfigChange {
    ConfigChange {
        set: [(key.to_owned(), value.to_owned())].into(),
        ..ConfigChange::default()
    }
}

#[tokio::test]
async fn a_config_change_is_validated_stored_as_a_revision_swapped_in_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "{ team = \"red\" }");
    let store: Arc<dyn DeploymentStore> =
        Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let host = start(&config, store.clone());
    let replica = start(&config, store.clone());
    assert_eq!(host.config("stamp").unwrap().revision, Some(1));
    assert_eq!(seen_config(&host).await, serde_json::json!({"team": "red"}));

    let changed = host
        .change_config("stamp", set("team", "blue"), "admin-api (ana)")
        .await
        .unwrap();
    assert_eq!(changed.revision, Some(2));
    assert_eq!(
        seen_config(&host).await,
        serde_json::json!({"team": "blue"})
    );
    // Another host on the same store follows it.
    assert_eq!(
        seen_config(&replica).await,
        serde_json::json!({"team": "red"})
    );
    replica.follow_store("stamp").await.unwrap();
    assert_eq!(
        seen_config(&replica).await,
        serde_json::json!({"team": "blue"})
    );

    let unset = ConfigChange {
        unset: vec!["team".into()],
        ..ConfigChange::default()
    };
    host.change_config("stamp", unset, "admin-api")
        .await
        .unwrap();
    assert_eq!(seen_config(&host).await, serde_json::json!({}));
    let reverted = ConfigChange {
        revert_to: Some(2),
        ..ConfigChange::default()
    };
    let state = host
        .change_config("stamp", reverted, "admin-api")
        .await
        .unwrap();
    assert_eq!(state.revision, Some(4));
    assert_eq!(
        seen_config(&host).await,
        serde_json::json!({"team": "blue"})
    );
    let history = host.config_history("stamp").unwrap();
    let summary: Vec<(i64, &str, &str)> = history
        .iter()
        .map(|r| (r.revision, r.source.as_str(), r.changed_by.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (4, "revert-to 2", "admin-api"),
            (3, "admin-api", "admin-api"),
            (2, "admin-api", "admin-api (ana)"),
            (1, "config-file", "config file"),
        ]
    );

    // A config the active version fails on is refused, and nothing changes.
    let refused = host
        .change_config(
            "default",
            set("column-prefix", "not a prefix!"),
            "admin-api",
        )
        .await;
    assert!(
        matches!(&refused, Err(DeployError::BadConfig { reason, .. }) if reason.contains("column-prefix")),
        "{refused:?}"
    );
    assert_eq!(host.config_history("default").unwrap().len(), 1);
    let missing = ConfigChange {
        unset: vec!["nope".into()],
        ..ConfigChange::default()
    };
    assert!(matches!(
        host.change_config("stamp", missing, "admin-api").await,
        Err(DeployError::BadConfig { .. })
    ));
}

#[tokio::test]
async fn at_start_up_the_stored_revision_wins_unless_the_files_config_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn DeploymentStore> =
        Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let config = write_config(dir.path(), "{ team = \"red\" }");
    let host = start(&config, store.clone());
    host.change_config("stamp", set("team", "blue"), "admin-api")
        .await
        .unwrap();
    // Restarted with the same file: the change made through the admin API is kept.
    let host = start(&config, store.clone());
    assert_eq!(host.config("stamp").unwrap().revision, Some(2));
    assert_eq!(
        seen_config(&host).await,
        serde_json::json!({"team": "blue"})
    );
    // The operator edited the file: it becomes a new revision and wins.
    let edited = write_config(dir.path(), "{ team = \"green\" }");
    let host = start(&edited, store.clone());
    assert_eq!(host.config("stamp").unwrap().revision, Some(3));
    assert_eq!(
        seen_config(&host).await,
        serde_json::json!({"team": "green"})
    );
    assert_eq!(
        host.config_history("stamp").unwrap()[0].source,
        "config-file"
    );
}
