//! The store's tests on every backend: [`TestStore`] is a fresh, empty store of one backend,
//! and [`store_tests!`](crate::store::testing::store_tests) makes each test body a test on
//! SQLite (a temporary file) and one on PostgreSQL (a schema of its own, see [`postgres`]).

pub(crate) use super::test_postgres as postgres;

use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{DeploymentStore, SyncStore};
use std::sync::Arc;

/// Both store traits, as one object.
pub(crate) trait AnyStore: DeploymentStore + SyncStore {}
impl<T: DeploymentStore + SyncStore> AnyStore for T {}

/// The backend a [`TestStore`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test store lives: dropped after the store.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(postgres::TestSchema),
}

/// A fresh store of one backend; derefs to both store traits.
pub(crate) struct TestStore {
    store: Arc<dyn AnyStore>,
    raw: Raw,
    pub backend: Backend,
    place: Place,
}

/// The concrete store, for tests that reach under the traits.
enum Raw {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl std::ops::Deref for TestStore {
    type Target = dyn AnyStore;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl TestStore {
    pub(crate) fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
                Self {
                    store: store.clone(),
                    raw: Raw::Sqlite(store),
                    backend,
                    place: Place::Sqlite(dir),
                }
            }
            Backend::Postgres => {
                let schema = postgres::TestSchema::new();
                let store = Arc::new(open_postgres(&schema.url));
                Self {
                    store: store.clone(),
                    raw: Raw::Postgres(store),
                    backend,
                    place: Place::Postgres(schema),
                }
            }
        }
    }

    /// A second store on the same database, as another process (or replica) opens it.
    pub(crate) fn reopen(&self) -> Arc<dyn AnyStore> {
        match &self.place {
            Place::Sqlite(dir) => {
                Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap())
            }
            Place::Postgres(schema) => Arc::new(open_postgres(&schema.url)),
        }
    }

    /// Runs `sql` in a transaction of another connection that stays open (PostgreSQL only),
    /// holding what it locks until the answer is dropped.
    pub(crate) fn lock_elsewhere(&self, sql: &str) -> postgres::HeldLock {
        match &self.place {
            Place::Postgres(schema) => postgres::HeldLock::take(&schema.url, sql),
            Place::Sqlite(_) => panic!("lock_elsewhere is for PostgreSQL"),
        }
    }

    /// The store as the engine holds it.
    pub(crate) fn sync(&self) -> Arc<dyn SyncStore> {
        self.store.clone()
    }

    /// Holds the queue as a long write of another process or replica would: the store's
    /// writes to the queue wait until the answer is dropped (SQLite: the store's connection;
    /// PostgreSQL: a lock on the queue's table from another connection).
    pub(crate) fn hold(&self) -> Held<'_> {
        match (&self.raw, &self.place) {
            (Raw::Sqlite(store), _) => Held::Sqlite(store.conn()),
            (_, Place::Postgres(schema)) => Held::Postgres(postgres::HeldLock::take(
                &schema.url,
                "LOCK TABLE sync_events IN ACCESS EXCLUSIVE MODE",
            )),
            _ => unreachable!("a PostgreSQL store lives in a schema"),
        }
    }

    /// Runs `sqlite` or `postgres` (several statements) on the database, under the traits.
    pub(crate) fn execute(&self, sqlite: &str, postgres: &str) {
        match &self.raw {
            Raw::Sqlite(store) => store.conn().execute_batch(sqlite).unwrap(),
            Raw::Postgres(store) => store.execute_for_test(postgres).unwrap(),
        }
    }

    /// The first column of every row `sql` answers, as text (`sql` must be valid on both).
    pub(crate) fn texts(&self, sql: &str) -> Vec<String> {
        match &self.raw {
            Raw::Sqlite(store) => {
                let conn = store.conn();
                let mut stmt = conn.prepare(sql).unwrap();
                stmt.query_map([], |row| row.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
            Raw::Postgres(store) => store.texts_for_test(sql).unwrap(),
        }
    }
}

/// What [`TestStore::hold`] holds.
#[allow(dead_code, reason = "held for its drop")]
pub(crate) enum Held<'a> {
    Sqlite(std::sync::MutexGuard<'a, rusqlite::Connection>),
    Postgres(postgres::HeldLock),
}

fn open_postgres(url: &str) -> PgStore {
    let state = crate::config::StateConfig {
        url: Some(url.to_owned()),
        ..Default::default()
    };
    PgStore::open(&state).unwrap_or_else(|e| panic!("opening the test PostgreSQL store: {e:#}"))
}

/// Makes each `fn name(store) { … }` a module `name` with two tests, `sqlite` and `postgres`,
/// running the body on a fresh [`TestStore`] of that backend.
macro_rules! store_tests {
    ($($(#[$meta:meta])* fn $name:ident($store:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::store::testing::{Backend, TestStore};

            fn body($store: &TestStore) $body

            #[test]
            fn sqlite() {
                body(&TestStore::new(Backend::Sqlite))
            }

            #[test]
            fn postgres() {
                body(&TestStore::new(Backend::Postgres))
            }
        }
    )*};
}
pub(crate) use store_tests;
