//! [`Deployer::follow_store`]: what a replica does when another one activated a version.

use super::*;
use crate::config::HostConfig;
use crate::runtime::{Limits, MappingRuntime};
use crate::store::sqlite::SqliteStore;
use std::sync::atomic::{AtomicUsize, Ordering};

fn stamp() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guest-mappings/dist/testing/version_stamp.wasm"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (build the guests: make guests)"))
}

/// `wasm` with one more custom section: the same behaviour, another version.
fn another_version(wasm: &[u8], tag: u8) -> Vec<u8> {
    let mut out = wasm.to_vec();
    // Custom section (id 0): size 3, name length 1, name "v", payload `tag`.
    out.extend_from_slice(&[0, 3, 1, b'v', tag]);
    out
}

#[tokio::test]
async fn following_the_store_loads_without_storing_again_or_requeueing() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("stamp.wasm");
    std::fs::write(&component, stamp()).unwrap();
    let config_path = dir.path().join("cosell.toml");
    std::fs::write(
        &config_path,
        format!(
            "[state]\npath = \"state.db\"\n[[pipelines.partner-center-to-crm]]\nstep = \"s\"\ncomponent = \"{}\"\n",
            component.display()
        ),
    )
    .unwrap();
    let config = HostConfig::load(&config_path).unwrap();
    let store: Arc<dyn DeploymentStore> =
        Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let metrics = Arc::new(Metrics::new());
    let runtime = Arc::new(MappingRuntime::new(Limits::default()).unwrap());
    let boot = bootstrap(&config.pipelines, runtime, store.as_ref(), metrics.clone()).unwrap();
    let deployer = Deployer::new(boot.pipelines, store.clone(), boot.samples, metrics);
    let hooked = Arc::new(AtomicUsize::new(0));
    deployer.on_activation(Box::new({
        let hooked = hooked.clone();
        move |_, _| {
            hooked.fetch_add(1, Ordering::SeqCst);
        }
    }));
    assert_eq!(
        deployer.follow_store("s").await.unwrap(),
        None,
        "nothing new"
    );

    // Another replica deploys: the version and its activation are in the shared store.
    let second = another_version(&stamp(), 2);
    let version = crate::runtime::component::content_hash(&second);
    store
        .save_and_activate(
            "s",
            &version,
            &second,
            "admin-api",
            ActivationReason::Deploy,
        )
        .unwrap();
    let history = store.activation_history("s").unwrap();

    assert_eq!(
        deployer.follow_store("s").await.unwrap().as_deref(),
        Some(version.as_str())
    );
    let step = deployer.pipelines().step("s").unwrap();
    assert_eq!(&*step.active().version, version.as_str());
    assert_eq!(
        store.activation_history("s").unwrap(),
        history,
        "following stored an activation"
    );
    assert_eq!(
        hooked.load(Ordering::SeqCst),
        0,
        "the hook is the activating replica's"
    );
    assert_eq!(deployer.follow_store("s").await.unwrap(), None);
    assert!(matches!(
        deployer.follow_store("nope").await,
        Err(DeployError::UnknownStep(_))
    ));

    // A deploy here fires it, once.
    deployer
        .deploy("s", another_version(&stamp(), 3), DeploySource::AdminApi)
        .await
        .unwrap();
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
}
