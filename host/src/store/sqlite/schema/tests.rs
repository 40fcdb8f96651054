//! Upgrades of databases made before versioned migrations, and the refusal of newer ones.

use super::{MIGRATIONS, version};
use crate::store::migrations::latest;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{Link, NewEvent, Side};
use rusqlite::Connection;

/// The schema as every release before versioned migrations created it.
const UNVERSIONED: &str = include_str!("unversioned.sql");

/// A database as an earlier release left it: the unversioned schema, the columns
/// `add_missing_columns` added when `with_added_columns`, and a link, a cursor, a credential
/// and a pending event in it.
fn unversioned_database(path: &std::path::Path, with_added_columns: bool) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(UNVERSIONED).unwrap();
    if with_added_columns {
        conn.execute_batch(
            "ALTER TABLE sync_events ADD COLUMN lease_until INTEGER;
             ALTER TABLE sync_events ADD COLUMN parked_step TEXT;
             ALTER TABLE sync_events ADD COLUMN parked_version TEXT;",
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO sync_links (referral_id, opportunity_id, pc_hash, updated_at)
             VALUES ('r1', 'o1', 'h1', '2026-01-01T00:00:00.000Z');
         INSERT INTO sync_cursors (name, value) VALUES ('dataverse-delta', 'token-1');
         INSERT INTO credentials (name, value, updated_at)
             VALUES ('partner-center-refresh-token', 'rt-kept', '2026-01-01T00:00:00.000Z');
         INSERT INTO sync_events (side, record_id, lock_key, origin, payload, state, attempts,
                                  available_at, received_at)
             VALUES ('partner-center', 'r1', 'referral:r1', 'test', '{}', 'pending', 0, 0,
                     '2026-01-01T00:00:00.000Z');",
    )
    .unwrap();
    assert_eq!(version(&conn), 0, "made without a recorded version");
}

fn assert_upgraded_with_its_data(path: &std::path::Path) {
    let store = SqliteStore::open(path).unwrap();
    assert_eq!(version(&store.conn()), latest(MIGRATIONS));
    assert_eq!(
        store
            .link_by_referral("r1")
            .unwrap()
            .unwrap()
            .pc_hash
            .as_deref(),
        Some("h1")
    );
    assert_eq!(
        store.cursor("dataverse-delta").unwrap().as_deref(),
        Some("token-1")
    );
    assert_eq!(
        store
            .credential("partner-center-refresh-token")
            .unwrap()
            .as_deref(),
        Some("rt-kept")
    );
    // The event waits, and the columns of the later migrations work: claimed under a lease,
    // then parked on a step.
    let event = store.claim(i64::MAX / 2, 1_000).unwrap().unwrap();
    assert_eq!(event.record_id, "r1");
    store.park(event.id, "step", "v1", "trap").unwrap();
    assert_eq!(store.parked(10).unwrap()[0].version, "v1");
    drop(store);
    // Opened again, nothing is applied twice.
    let store = SqliteStore::open(path).unwrap();
    assert_eq!(version(&store.conn()), latest(MIGRATIONS));
}

#[test]
fn a_database_made_before_versioned_migrations_upgrades_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    unversioned_database(&path, true);
    assert_upgraded_with_its_data(&path);
}

#[test]
fn a_database_from_before_leases_and_parking_gets_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    unversioned_database(&path, false);
    assert_upgraded_with_its_data(&path);
}

#[test]
fn a_new_database_gets_every_migration_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(version(&store.conn()), latest(MIGRATIONS));
    store
        .enqueue(&NewEvent {
            side: Side::Dataverse,
            record_id: "o1".into(),
            lock_key: "opportunity:o1".into(),
            origin: "test".into(),
            payload: "{}".into(),
        })
        .unwrap();
    store
        .save_link(&Link {
            opportunity_id: Some("o1".into()),
            ..Link::default()
        })
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.queue_counts().unwrap().pending, 1);
    assert!(store.link_by_opportunity("o1").unwrap().is_some());
}

#[test]
fn a_database_of_a_newer_release_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    let newer = latest(MIGRATIONS) + 1;
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("schema version {newer}"))
            && text.contains("newer release of cosell")
            && text.contains(&path.display().to_string()),
        "{text}"
    );
    assert_eq!(version(&Connection::open(&path).unwrap()), newer);
}

#[test]
fn a_failing_migration_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // An unversioned database whose sync_events lacks `lease_until` but already has a
    // `parked_step` of another type: 0003 fails on the duplicate column after 0002 ran.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(UNVERSIONED).unwrap();
    conn.execute_batch("ALTER TABLE sync_events ADD COLUMN parked_step BLOB")
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(
        format!("{err:#}").contains("0003_parked_events.sql"),
        "{err:#}"
    );
    let conn = Connection::open(&path).unwrap();
    assert_eq!(version(&conn), 0);
    assert!(!super::has_column(&conn, "sync_events", "lease_until").unwrap());
}
