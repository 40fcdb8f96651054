//! The state backend an end-to-end test runs its host on: a SQLite file (the default), or a
//! PostgreSQL database, a schema of its own on the test cluster, which the store's own tests
//! use too (`host/src/store/testing/postgres.rs`, included here: `COSELL_TEST_POSTGRES_URL`, or
//! a throwaway cluster started with the machine's PostgreSQL binaries). Without PostgreSQL the
//! PostgreSQL half of a test fails, saying how to provide one: it is never skipped.
//!
//! [`on_both_backends!`] makes a test body `async fn name(backend: Backend)` two tests,
//! `name::sqlite` and `name::postgres`.

#[allow(dead_code)]
#[path = "../../host/src/store/testing/postgres.rs"]
mod cluster;

/// Where a host under test keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `[state] path`: a SQLite file in the test's directory.
    Sqlite,
    /// `[state] url`: a fresh schema on the test PostgreSQL cluster.
    Postgres,
    /// `[state] url`: a PostgreSQL cluster of the test's own, which it may restart
    /// ([`TestState::restart_server`]).
    OwnPostgres,
}

/// The state database of one test, dropped (the schema with it) after the test's host.
pub struct TestState {
    schema: Option<cluster::TestSchema>,
    own: Option<cluster::OwnCluster>,
}

impl TestState {
    /// A fresh state database of `backend`; SQLite needs nothing made in advance.
    pub fn new(backend: Backend) -> Self {
        Self {
            schema: (backend == Backend::Postgres).then(cluster::TestSchema::new),
            own: (backend == Backend::OwnPostgres).then(cluster::OwnCluster::start),
        }
    }

    /// `[state] url` for PostgreSQL (the schema as its `search_path`, or the own cluster's
    /// database); `None` for SQLite.
    pub fn url(&self) -> Option<String> {
        let own = self.own.as_ref().map(|own| own.url.clone());
        own.or_else(|| self.schema.as_ref().map(|schema| schema.url.clone()))
    }

    /// Restarts the state's PostgreSQL server (only a [`Backend::OwnPostgres`] may be).
    #[allow(
        dead_code,
        reason = "used by some of the test binaries sharing this module"
    )]
    pub fn restart_server(&self) {
        let own = self
            .own
            .as_ref()
            .expect("only a cluster of the test's own (Backend::OwnPostgres) may be restarted");
        own.restart().expect("the PostgreSQL server restarts");
    }

    /// The `[state]` table of a host configuration: `url = …` for PostgreSQL, `path =
    /// "<sqlite_path>"` for SQLite.
    pub fn toml(&self, sqlite_path: &str) -> String {
        let key = match self.url() {
            Some(url) => format!("url = {}", toml::Value::String(url)),
            None => format!("path = {}", toml::Value::String(sqlite_path.to_owned())),
        };
        format!("[state]\n{key}\n")
    }
}

/// Makes each named `async fn name(backend: Backend)` of the calling module two tests, in a
/// module of the same name: `name::sqlite` and `name::postgres` (`blocking name, …` for a
/// `fn name(backend: Backend)` that is not async).
#[allow(
    unused_macros,
    reason = "used by some of the test binaries sharing this module"
)]
macro_rules! on_both_backends {
    (blocking $($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::support::backend::Backend::Sqlite)
            }

            #[test]
            fn postgres() {
                super::$name($crate::support::backend::Backend::Postgres)
            }
        }
    )*};
    (drills $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "a drill of a minute or more: make test runs it"]
            async fn sqlite() {
                super::$name($crate::support::backend::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "a drill of a minute or more: make test runs it"]
            async fn postgres() {
                super::$name($crate::support::backend::Backend::Postgres).await
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::backend::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::backend::Backend::Postgres).await
            }
        }
    )*};
}
#[allow(
    unused_imports,
    reason = "used by some of the test binaries sharing this module"
)]
pub(crate) use on_both_backends;
