//! Hot swap by file drop: a `.wasm` put in the watched directory goes live once it is
//! complete; a bad one is moved to `rejected/` with the reason, and the active version stays.

mod support;

use cosell::deploy::watch_dir::{DropDirectory, DropOutcome};
use cosell::server::RunningHost;
use std::path::PathBuf;
use support::{Admin, guest, stamp_host_config_with, start, start_stamp_host, with_custom_section};

/// A host serving the version-stamp guest, its first version, and a drop directory (`drop/`
/// in the test's own directory) watched for it by hand, scan by scan.
struct Watched {
    _dir: tempfile::TempDir,
    drop_dir: PathBuf,
    host: RunningHost,
    admin: Admin,
    v1: String,
    watcher: DropDirectory,
}

async fn watched_host() -> Watched {
    let dir = tempfile::tempdir().unwrap();
    let drop_dir = dir.path().join("drop");
    let (host, admin) = start_stamp_host(dir.path()).await;
    let v1 = admin.active_version("pc-to-crm").await;
    let watcher = DropDirectory::new(drop_dir.clone(), host.deployer.clone()).unwrap();
    Watched {
        _dir: dir,
        drop_dir,
        host,
        admin,
        v1,
        watcher,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_file_is_deployed_and_a_bad_one_is_rejected_with_its_reason() {
    let Watched {
        _dir,
        drop_dir,
        host,
        admin,
        v1,
        mut watcher,
    } = watched_host().await;

    let v2 = with_custom_section(&guest("testing/version_stamp.wasm"), "v", b"2");
    std::fs::write(drop_dir.join("pc-to-crm.v2.wasm"), &v2).unwrap();
    std::fs::write(
        drop_dir.join("pc-to-crm.bomb.wasm"),
        guest("testing/memory_bomb.wasm"),
    )
    .unwrap();
    std::fs::write(drop_dir.join("notes.txt"), "ignored").unwrap();
    std::fs::write(drop_dir.join(".pc-to-crm.partial.wasm"), b"\0asm").unwrap();

    // First scan only notes the files: they must look the same twice before they are used.
    assert!(watcher.scan().await.unwrap().is_empty());
    assert_eq!(admin.active_version("pc-to-crm").await, v1);

    let mut outcomes = watcher.scan().await.unwrap();
    outcomes.sort_by_key(|o| matches!(o, DropOutcome::Rejected { .. }));
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    let DropOutcome::Deployed { version, file } = &outcomes[0] else {
        panic!("v2 was not deployed: {outcomes:?}")
    };
    assert!(file.starts_with(drop_dir.join("deployed")));
    let DropOutcome::Rejected { reason, file } = &outcomes[1] else {
        panic!("the memory bomb was not rejected: {outcomes:?}")
    };
    assert!(reason.contains("memory cap"), "{reason}");
    let reason_file = std::fs::read_to_string(file.with_extension("reason.txt")).unwrap();
    assert!(reason_file.contains("memory cap"), "{reason_file}");

    // The good file went live despite the bad one next to it; hidden and non-wasm files stayed.
    assert_eq!(&admin.active_version("pc-to-crm").await, version);
    assert_ne!(version, &v1);
    assert!(drop_dir.join("notes.txt").exists());
    assert!(drop_dir.join(".pc-to-crm.partial.wasm").exists());
    assert!(!drop_dir.join("pc-to-crm.v2.wasm").exists());

    // A file for a step that does not exist is rejected, not lost.
    std::fs::write(drop_dir.join("no-such-step.wasm"), &v2).unwrap();
    watcher.scan().await.unwrap();
    let outcomes = watcher.scan().await.unwrap();
    assert!(
        matches!(&outcomes[..], [DropOutcome::Rejected { reason, .. }] if reason.contains("no step named")),
        "{outcomes:?}"
    );
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_host_picks_up_a_dropped_file_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let drop_dir = dir.path().join("incoming");
    let config = stamp_host_config_with(
        dir.path(),
        &format!(
            "[deploy]\nwatch_dir = \"{}\"\nwatch_interval_ms = 50\n",
            drop_dir.display()
        ),
    );
    let host = start(config).await;
    let admin = Admin::new(&host);
    let v1 = admin.active_version("pc-to-crm").await;
    let v2 = with_custom_section(&guest("testing/version_stamp.wasm"), "v", b"2");
    // Written under a hidden name and renamed, as the docs recommend.
    std::fs::write(drop_dir.join(".pc-to-crm.wasm"), &v2).unwrap();
    std::fs::rename(
        drop_dir.join(".pc-to-crm.wasm"),
        drop_dir.join("pc-to-crm.wasm"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while admin.active_version("pc-to-crm").await == v1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped file was not deployed within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, out) = admin
        .run("partner-center-to-crm", serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    assert_ne!(out["document"]["_mapping"]["version"], v1.as_str());
    assert_eq!(
        std::fs::read_dir(drop_dir.join("deployed"))
            .unwrap()
            .count(),
        1
    );
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_directory_is_the_hosts_users_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let (host, _admin) = start_stamp_host(dir.path()).await;
    // Created 0700, with its folders.
    let fresh = dir.path().join("fresh");
    DropDirectory::new(fresh.clone(), host.deployer.clone()).unwrap();
    for sub in ["", "deployed", "rejected"] {
        assert_eq!(mode(&fresh.join(sub)), 0o700, "{sub:?}");
    }
    // An existing wider one (and its folders) is narrowed to 0700.
    let wide = dir.path().join("wide");
    for sub in ["", "deployed", "rejected"] {
        std::fs::create_dir_all(wide.join(sub)).unwrap();
        std::fs::set_permissions(wide.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    DropDirectory::new(wide.clone(), host.deployer.clone()).unwrap();
    for sub in ["", "deployed", "rejected"] {
        assert_eq!(mode(&wide.join(sub)), 0o700, "{sub:?} is narrowed");
    }
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_oversized_files_are_refused_unread_and_one_bad_file_does_not_stop_the_scan() {
    let Watched {
        _dir,
        drop_dir,
        host,
        admin,
        v1,
        mut watcher,
    } = watched_host().await;
    let v2 = with_custom_section(&guest("testing/version_stamp.wasm"), "v", b"2");
    let v3 = with_custom_section(&guest("testing/version_stamp.wasm"), "v", b"3");

    // A good component that belongs to another user (the tests run as root).
    let foreign = drop_dir.join("pc-to-crm.foreign.wasm");
    std::fs::write(&foreign, &v2).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534))
        .expect("chown to uid 65534 (the tests run as root)");
    // A 1 TiB file (sparse: it takes no space), which reading would exhaust the memory with.
    let huge = std::fs::File::create(drop_dir.join("pc-to-crm.huge.wasm")).unwrap();
    huge.set_len(1 << 40).unwrap();
    drop(huge);

    assert!(watcher.scan().await.unwrap().is_empty());
    let outcomes = watcher.scan().await.unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    for outcome in &outcomes {
        let DropOutcome::Rejected { file, reason } = outcome else {
            panic!("not rejected: {outcomes:?}")
        };
        let name = file.file_name().unwrap().to_string_lossy();
        let expected: &[&str] = if name.ends_with("foreign.wasm") {
            &["uid 65534", "not to uid 0"]
        } else {
            &[
                "1099511627776 bytes",
                "limits.max_component_bytes",
                "not read",
            ]
        };
        for text in expected {
            assert!(reason.contains(text), "{name}: {reason}");
        }
        assert!(file.starts_with(drop_dir.join("rejected")), "{file:?}");
        let reason_file = std::fs::read_to_string(file.with_extension("reason.txt")).unwrap();
        assert!(reason_file.contains(expected[0]), "{reason_file}");
    }
    assert_eq!(admin.active_version("pc-to-crm").await, v1);

    // A file that cannot be handled (here: `deployed/` is gone, so a deployed file cannot be
    // moved there) is reported and left in place, and the scan goes on: the refused file next
    // to it is still moved to `rejected/`.
    std::fs::remove_dir(drop_dir.join("deployed")).unwrap();
    std::fs::write(drop_dir.join("deployed"), "in the way").unwrap();
    std::fs::write(drop_dir.join("pc-to-crm.v3.wasm"), &v3).unwrap();
    std::fs::write(drop_dir.join("pc-to-crm.junk.wasm"), b"not a component").unwrap();
    assert!(watcher.scan().await.unwrap().is_empty());
    let mut outcomes = watcher
        .scan()
        .await
        .expect("one bad file does not fail the scan");
    outcomes.sort_by_key(|o| matches!(o, DropOutcome::Rejected { .. }));
    assert!(
        matches!(&outcomes[..], [DropOutcome::Failed { file, reason }, DropOutcome::Rejected { .. }]
            if file.ends_with("pc-to-crm.v3.wasm") && reason.contains("moving")),
        "{outcomes:?}"
    );
    assert!(drop_dir.join("pc-to-crm.v3.wasm").exists());
    assert!(!drop_dir.join("pc-to-crm.junk.wasm").exists());
    host.shutdown().await.unwrap();
}
