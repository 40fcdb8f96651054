//! What only the PostgreSQL store has: its schema table and concurrent upgrades, its session
//! settings, claims that skip held rows, the password from a secret. The behaviour both
//! backends share is tested on both in `store/tests/`.
use super::schema::MIGRATIONS;
use crate::config::{SecretRef, StateConfig};
use crate::store::migrations::latest;
use crate::store::testing::postgres::TestSchema;
use crate::store::testing::{Backend, TestStore};

fn versions(store: &TestStore) -> Vec<String> {
    store.texts("SELECT version::text FROM cosell_schema_migrations ORDER BY version")
}

#[test]
fn migrations_are_recorded_once_and_replicas_opening_together_agree() {
    let store = TestStore::new(Backend::Postgres);
    let all: Vec<String> = (1..=latest(MIGRATIONS)).map(|v| v.to_string()).collect();
    assert_eq!(versions(&store), all);
    // Replicas starting at once: each opens, nothing is applied twice.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| drop(store.reopen()));
        }
    });
    assert_eq!(versions(&store), all);
}

/// The test cluster runs with `synchronous_commit = off`: the store's sessions turn it
/// on, so an acknowledged write is on the server's disk whatever the server's default.
#[test]
fn the_stores_commits_wait_for_the_servers_disk_and_statements_are_bounded() {
    let store = TestStore::new(Backend::Postgres);
    assert_eq!(store.texts("SHOW synchronous_commit"), ["on"]);
    assert_eq!(store.texts("SHOW statement_timeout"), ["30s"]);
}

/// A replica whose machine vanishes leaves its connections open: the server probes them after
/// 30 s of silence and drops them (releasing their locks) about a minute after, instead of
/// after the operating system's two hours.
#[test]
fn the_server_drops_the_sessions_of_a_vanished_replica_after_a_minute_of_silence() {
    let store = TestStore::new(Backend::Postgres);
    assert_eq!(store.texts("SHOW tcp_keepalives_idle"), ["30"]);
    assert_eq!(store.texts("SHOW tcp_keepalives_interval"), ["10"]);
    assert_eq!(store.texts("SHOW tcp_keepalives_count"), ["3"]);
}

/// A claim skips an event another transaction holds (a webhook coalescing into it, a
/// replica's claim not yet committed) instead of waiting for it.
#[test]
fn a_claim_takes_the_next_event_while_another_transaction_holds_the_first() {
    let store = TestStore::new(Backend::Postgres);
    for record in ["a", "b"] {
        event(&store, record);
    }
    let held = store.lock_elsewhere("SELECT 1 FROM sync_events WHERE record_id = 'a' FOR UPDATE");
    // Without SKIP LOCKED this waits for `held` until the statement timeout, then fails.
    let claimed = store.claim(i64::MAX / 2, 60_000).unwrap().unwrap();
    assert_eq!(claimed.record_id, "b");
    drop(held);
    assert_eq!(
        store
            .claim(i64::MAX / 2, 60_000)
            .unwrap()
            .unwrap()
            .record_id,
        "a"
    );
}

#[test]
fn a_database_of_a_newer_release_is_refused() {
    let store = TestStore::new(Backend::Postgres);
    let newer = latest(MIGRATIONS) + 1;
    store.execute(
        "",
        &format!(
            "INSERT INTO cosell_schema_migrations (version, name) VALUES ({newer}, 'future.sql')"
        ),
    );
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.reopen()))
        .err()
        .expect("refused");
    let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains(&format!("schema version {newer}")) && text.contains("newer release"),
        "{text}"
    );
}

#[test]
fn the_password_is_read_from_its_secret_and_the_store_opens_through_the_seam() {
    // The test cluster trusts every local connection, so a wrong password still connects;
    // what is checked is that the secret is read (a missing one is an error naming it).
    let schema = TestSchema::new();
    let state = StateConfig {
        url: Some(schema.url.clone()),
        password: Some(SecretRef {
            env: Some("NO_SUCH_PASSWORD_VARIABLE_FOR_A_TEST".into()),
            file: None,
        }),
        ..Default::default()
    };
    let err = crate::store::open(&state).err().expect("refused");
    assert!(format!("{err:#}").contains("state.password"), "{err:#}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "not-checked-by-trust").unwrap();
    let state = StateConfig {
        password: Some(SecretRef {
            env: None,
            file: Some(file),
        }),
        ..state
    };
    let store = crate::store::open(&state).unwrap();
    assert!(store.location.contains("PostgreSQL"), "{}", store.location);
    store.sync.set_cursor("c", "1").unwrap();
    assert_eq!(store.sync.cursor("c").unwrap().as_deref(), Some("1"));
}

/// Replicas on one schema as separate processes, each proving itself alive as `id`.
fn replica(store: &TestStore, id: &str) -> std::sync::Arc<dyn crate::store::testing::AnyStore> {
    let replica = store.reopen();
    replica.claim_as(id).unwrap();
    replica
}

fn event(store: &TestStore, record: &str) {
    use crate::store::{NewEvent, Side};
    store
        .enqueue(&NewEvent {
            side: Side::PartnerCenter,
            record_id: record.into(),
            lock_key: format!("referral:{record}"),
            origin: "test".into(),
            payload: "{}".into(),
        })
        .unwrap();
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Claims on `store` every 50 ms until an event comes or `deadline` passes (then fails,
/// saying `what` did not happen).
fn claim_before(
    store: &std::sync::Arc<dyn crate::store::testing::AnyStore>,
    deadline: std::time::Instant,
    what: &str,
) -> crate::store::QueuedEvent {
    loop {
        if let Some(event) = store.claim(now_ms(), LONG_LEASE).unwrap() {
            return event;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The lease every claim here takes: nothing in these tests waits for it.
const LONG_LEASE: i64 = 300_000;

/// A replica that dies (its process ends: its connections close) leaves its running event to
/// the others at once (to those that have held their own lock for `JUDGE_AFTER`), not when
/// its five-minute lease runs out; the event of a replica that
/// lives is never taken, whichever of the two claimed it.
#[test]
fn a_dead_replicas_running_event_is_taken_back_at_once_and_a_live_ones_never() {
    let store = TestStore::new(Backend::Postgres);
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    for round in 0..4 {
        let (claimer, other) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        event(&store, &format!("live-{round}"));
        let running = claimer.claim(now_ms(), LONG_LEASE).unwrap().unwrap();
        for _ in 0..5 {
            assert!(
                other.claim(now_ms(), LONG_LEASE).unwrap().is_none(),
                "round {round}: a live replica's event was taken"
            );
            assert_eq!(other.requeue_running().unwrap(), 0, "round {round}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        claimer.complete(running.id).unwrap();
    }

    event(&store, "orphan");
    let orphan = a.claim(now_ms(), LONG_LEASE).unwrap().unwrap();
    drop(a);
    // Bounded: without liveness, the event comes back only after 300 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let taken = claim_before(&b, deadline, "the dead replica's event was not taken back");
    assert_eq!((taken.id, taken.attempts), (orphan.id, 2));
    assert_eq!(
        store.texts("SELECT claimed_by FROM sync_events WHERE state = 'running'"),
        ["b"]
    );
}

/// A replica whose liveness lock is new (it just started, or took its lock back after a
/// restart of the server, when every replica lost its lock at once and the others may not
/// have theirs back yet) takes no other replica's running event for the lack of a lock: only
/// once it has held its own for `JUDGE_AFTER`.
#[test]
fn a_replica_whose_lock_is_new_does_not_judge_the_others_yet() {
    use super::liveness::JUDGE_AFTER;
    let store = TestStore::new(Backend::Postgres);
    let a = replica(&store, "a");
    event(&store, "x");
    let running = a.claim(now_ms(), LONG_LEASE).unwrap().unwrap();
    drop(a);
    // Taken before b takes its lock, so b's JUDGE_AFTER ends after `joined + JUDGE_AFTER`
    // however slowly b starts: the checks below cannot race it.
    let joined = std::time::Instant::now();
    let b = replica(&store, "b");
    // A lock-less claimer is all b sees; for JUDGE_AFTER it may be a live replica that has
    // not taken its lock back yet.
    while joined.elapsed() < JUDGE_AFTER - std::time::Duration::from_millis(500) {
        assert!(
            b.claim(now_ms(), LONG_LEASE).unwrap().is_none(),
            "taken {:?} after b took its lock",
            joined.elapsed()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let deadline = joined + JUDGE_AFTER + std::time::Duration::from_secs(30);
    let taken = claim_before(
        &b,
        deadline,
        "the dead replica's event was not taken back once b judged",
    );
    assert_eq!(taken.id, running.id);
}

/// Two live replicas under one id would each take the other for alive: the second is refused
/// with an error that says what to do. The same id in another schema (another installation)
/// is someone else; a replica restarted under its id gets it back, and its previous run's
/// running events are queued again at once.
#[test]
fn a_duplicate_replica_id_is_refused_and_a_restart_under_it_takes_back_its_events() {
    let store = TestStore::new(Backend::Postgres);
    let a = replica(&store, "a");
    let err = store.reopen().claim_as("a").expect_err("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("replica id `a` is in use") && text.contains("--replica-id"),
        "{text}"
    );
    let elsewhere = TestStore::new(Backend::Postgres);
    elsewhere.claim_as("a").unwrap();

    event(&store, "x");
    let running = a.claim(now_ms(), LONG_LEASE).unwrap().unwrap();
    drop(a);
    let restarted = store.reopen();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Err(err) = restarted.claim_as("a") {
        assert!(std::time::Instant::now() < deadline, "{err:#}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(store.queue_counts().unwrap().running, 0);
    let again = restarted.claim(now_ms(), LONG_LEASE).unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (running.id, 2));
}

/// A replica whose liveness connection is cut while it lives (a network blip, an operator's
/// `pg_terminate_backend`) opens another and takes its lock back within seconds, so its
/// claims are again safe from the others and its id stays its own.
#[test]
fn a_cut_liveness_connection_is_reopened_and_its_lock_taken_back() {
    // An id of this test alone: the sessions are found by name on the shared test cluster.
    const ID: &str = "reconnecting";
    let sessions = format!(
        "SELECT pid::text FROM pg_stat_activity WHERE application_name = 'cosell-alive {ID}'"
    );
    let store = TestStore::new(Backend::Postgres);
    let a = replica(&store, ID);
    let before = store.texts(&sessions);
    assert_eq!(before.len(), 1, "{before:?}");
    store.execute(
        "",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'cosell-alive {ID}'"
        ),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = store.texts(&sessions);
        if now.len() == 1 && now != before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the liveness connection was not reopened: {now:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let b = replica(&store, "b");
    assert!(
        store.reopen().claim_as(ID).is_err(),
        "the lock is held again"
    );
    event(&store, "after-the-cut");
    // Once the lock is back, a claim is made again (bounded), and it is never taken.
    let running = claim_before(&a, deadline, "no claim after the cut");
    assert!(b.claim(now_ms(), LONG_LEASE).unwrap().is_none());
    a.complete(running.id).unwrap();
}
