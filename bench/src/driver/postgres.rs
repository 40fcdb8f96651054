//! The PostgreSQL database a benchmark's host keeps its state in: a fresh schema on the
//! server the tests use (`cosell::store::test_postgres`: `COSELL_TEST_POSTGRES_URL`, else a
//! throwaway cluster started with the machine's PostgreSQL binaries), dropped afterwards; what
//! that server is set to; and the CPU time its processes spend, which with PostgreSQL is part of
//! the cost of a change that SQLite spends inside the host.

use super::procfs::{parent_pid, tree_cpu_seconds};
use anyhow::{Context as _, Result};
use cosell::store::test_postgres::TestSchema;

/// A schema of its own on the test server, dropped with this value (after the host using it).
pub struct BenchDatabase {
    schema: TestSchema,
    /// The server's postmaster, when it runs on this machine (its CPU time is then measured).
    postmaster: Option<u32>,
    /// Which server it is and how it makes commits durable, e.g. `PostgreSQL 15.14, fsync on,
    /// on this machine (COSELL_TEST_POSTGRES_URL)`.
    pub settings: String,
}

impl BenchDatabase {
    /// A fresh schema; an error saying how to get a server when none can be had.
    pub async fn create() -> Result<Self> {
        let schema = tokio::task::spawn_blocking(TestSchema::try_new)
            .await?
            .context(
                "the PostgreSQL half of this benchmark needs a PostgreSQL server it can reach: \
                 set COSELL_TEST_POSTGRES_URL to one (or check the one it names), or install \
                 PostgreSQL's server binaries (`apt-get install postgresql`) so a throwaway \
                 cluster can be started",
            )?;
        let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
            .await
            .context("connecting to the benchmark's PostgreSQL schema")?;
        let connection = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_setting('fsync'), \
                 pg_backend_pid()",
                &[],
            )
            .await
            .context("reading the PostgreSQL server's settings")?;
        let (version, fsync, backend): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
        // A backend's parent is the postmaster, if the backend is a process of this machine
        // (a server elsewhere: its CPU is not measured).
        let postmaster = u32::try_from(backend).ok().and_then(|pid| {
            std::path::Path::new(&format!("/proc/{pid}"))
                .exists()
                .then(|| parent_pid(pid).ok())
                .flatten()
        });
        drop(client);
        let _ = connection.await;
        let place = if postmaster.is_some() {
            "on this machine"
        } else {
            "on another machine"
        };
        let source = if std::env::var_os("COSELL_TEST_POSTGRES_URL").is_some() {
            "COSELL_TEST_POSTGRES_URL"
        } else {
            "the tests' throwaway cluster"
        };
        Ok(Self {
            schema,
            postmaster,
            settings: format!("PostgreSQL {version}, fsync {fsync}, {place} ({source})"),
        })
    }

    /// The `[state] url` of the host.
    pub fn url(&self) -> &str {
        &self.schema.url
    }

    /// CPU time (seconds) the whole server has used so far: its postmaster and every child
    /// (backends, WAL writer, checkpointer), those already ended included; `None` for a server
    /// on another machine. Whole-server: other clients of a shared server count too.
    pub fn server_cpu_seconds(&self) -> Option<f64> {
        self.postmaster
            .and_then(|postmaster| tree_cpu_seconds(postmaster).ok())
    }
}
