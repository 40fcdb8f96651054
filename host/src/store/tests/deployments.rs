//! [`DeploymentStore`](crate::store::DeploymentStore) on every backend.

use crate::store::ActivationReason;
use crate::store::testing::store_tests;

store_tests! {
fn activation_survives_reopening_and_rollback_history_is_kept(store) {
    store
        .save_and_activate("s", "sha256:a", b"A", "config", ActivationReason::Bootstrap)
        .unwrap();
    store
        .save_and_activate("s", "sha256:b", b"B", "admin-api", ActivationReason::Deploy)
        .unwrap();
    let store = store.reopen();
    let active = store.active_version("s").unwrap().unwrap();
    assert_eq!(
        (active.version.as_str(), active.wasm.as_slice()),
        ("sha256:b", &b"B"[..])
    );
    store
        .activate("s", "sha256:a", ActivationReason::Rollback)
        .unwrap();
    assert_eq!(
        store.active_version("s").unwrap().unwrap().version,
        "sha256:a"
    );
    assert_eq!(
        store.activation_history("s").unwrap(),
        vec!["sha256:a", "sha256:b", "sha256:a"]
    );
    let listed = store.list_versions("s").unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|v| v.version == "sha256:a" && v.active));
    assert!(store.active_version("other").unwrap().is_none());
}

fn pruning_keeps_the_most_recent_the_active_and_the_pinned_versions(store) {
    for v in ["a", "b", "c", "d", "e"] {
        store
            .save_and_activate("s", v, v.as_bytes(), "admin-api", ActivationReason::Deploy)
            .unwrap();
    }
    store
        .save_and_activate("t", "only", b"T", "config", ActivationReason::Bootstrap)
        .unwrap();
    // `b` is rolled back to (active, most recent), `a` pinned.
    store
        .activate("s", "b", ActivationReason::Rollback)
        .unwrap();
    assert!(store.pin("s", "a").unwrap());
    assert!(
        !store.pin("s", "nope").unwrap(),
        "an unknown version is not pinned"
    );
    let mut pruned = store.prune_versions(2).unwrap();
    pruned.sort();
    assert_eq!(
        pruned,
        vec![
            ("s".to_owned(), "c".to_owned()),
            ("s".to_owned(), "d".to_owned())
        ],
        "kept: b (active, the most recently activated), e (the second), a (pinned)"
    );
    let kept: Vec<_> = store
        .list_versions("s")
        .unwrap()
        .into_iter()
        .map(|v| (v.version, v.pinned))
        .collect();
    assert_eq!(
        kept,
        [("e", false), ("b", false), ("a", true)].map(|(v, p)| (v.to_owned(), p))
    );
    assert_eq!(store.activation_history("s").unwrap(), ["b", "e", "b", "a"]);
    assert_eq!(store.active_version("s").unwrap().unwrap().version, "b");
    assert_eq!(store.active_version("t").unwrap().unwrap().version, "only");
    // Unpinned, `a` goes with the next prune.
    assert!(store.unpin("s", "a").unwrap());
    assert!(!store.unpin("s", "a").unwrap());
    assert_eq!(
        store.prune_versions(2).unwrap(),
        vec![("s".to_owned(), "a".to_owned())]
    );
    assert!(store.prune_versions(2).unwrap().is_empty());
}

fn activating_an_unknown_version_is_refused(store) {
    assert!(
        store
            .activate("s", "sha256:nope", ActivationReason::Rollback)
            .is_err()
    );
}

/// Processes (replicas) opening a new database at once agree on one secret, kept for good.
fn a_host_secret_is_made_once_and_the_same_for_every_store(store) {
    let others: Vec<_> = (0..3).map(|_| store.reopen()).collect();
    let secrets: Vec<[u8; 32]> = std::thread::scope(|scope| {
        let asks: Vec<_> = others
            .iter()
            .map(|other| scope.spawn(move || other.host_secret("k").unwrap()))
            .collect();
        asks.into_iter().map(|a| a.join().unwrap()).collect()
    });
    let mine = store.host_secret("k").unwrap();
    assert!(secrets.iter().all(|s| *s == mine), "{secrets:?}");
    assert_ne!(store.host_secret("other").unwrap(), mine);
    assert_eq!(store.reopen().host_secret("k").unwrap(), mine);
}
}

store_tests! {
fn a_shadow_is_stored_survives_reopening_is_never_pruned_and_ends(store) {
    store
        .save_and_activate("s", "a", b"A", "config", ActivationReason::Bootstrap)
        .unwrap();
    assert!(store.shadow("s").unwrap().is_none());
    store.save_shadow("s", "cand", b"C", "admin-api").unwrap();
    // Stored as a version, not activated.
    assert_eq!(store.active_version("s").unwrap().unwrap().version, "a");
    assert_eq!(store.version("s", "cand").unwrap().unwrap().wasm, b"C");
    let store = store.reopen();
    assert_eq!(store.shadow("s").unwrap().unwrap().version, "cand");
    // Another shadow replaces it.
    store.save_shadow("s", "cand2", b"D", "admin-api").unwrap();
    assert_eq!(store.shadow("s").unwrap().unwrap().version, "cand2");
    for v in ["b", "c"] {
        store
            .save_and_activate("s", v, v.as_bytes(), "admin-api", ActivationReason::Deploy)
            .unwrap();
    }
    let pruned = store.prune_versions(1).unwrap();
    assert!(
        !pruned.iter().any(|(_, v)| v == "cand2"),
        "the shadow version was pruned: {pruned:?}"
    );
    assert!(store.version("s", "cand2").unwrap().is_some());
    assert!(store.end_shadow("s").unwrap());
    assert!(!store.end_shadow("s").unwrap());
    assert!(store.shadow("s").unwrap().is_none());
}
}

store_tests! {
fn config_revisions_are_numbered_per_step_and_listed_newest_first(store) {
    assert!(store.config_revisions("s").unwrap().is_empty());
    assert_eq!(store.save_config_revision("s", r#"{"a":"1"}"#, "config-file", "config file").unwrap(), 1);
    assert_eq!(store.save_config_revision("s", r#"{"a":"2"}"#, "admin-api", "admin-api (ana)").unwrap(), 2);
    assert_eq!(store.save_config_revision("t", "{}", "config-file", "config file").unwrap(), 1);
    let store = store.reopen();
    let listed = store.config_revisions("s").unwrap();
    let summary: Vec<(i64, &str, &str)> = listed
        .iter()
        .map(|r| (r.revision, r.config.as_str(), r.changed_by.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![(2, r#"{"a":"2"}"#, "admin-api (ana)"), (1, r#"{"a":"1"}"#, "config file")]
    );
}
}
