//! The connection pool, and the runtime the async driver runs on.
//!
//! The store traits are synchronous (the engine calls them from async code, as it calls
//! SQLite), while tokio-postgres is async. Blocking on a future inside the caller's tokio
//! runtime panics (`block_on` within a runtime), and would also tie the pool's connection
//! tasks to whichever runtime happened to open it (the admin API and the webhook listener run
//! on runtimes of their own). So the store owns a small runtime: every call is spawned there
//! and its result handed back over a channel, which the caller's thread waits on as it waits
//! on SQLite's lock or disk. Connections, their background tasks and the pool's timers all
//! live on that runtime, whatever thread calls.

use super::customer_locks::PgCustomerLocks;
use super::liveness::{self, Claimer};
use super::schema;
use crate::config::StateConfig;
use anyhow::{Context as _, Result, anyhow, bail};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A future borrowing a pooled connection.
pub(super) type Job<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// A PostgreSQL database holding the host's state (see the module docs of [`super`]).
pub struct PgStore {
    pool: Pool,
    runtime: OwnRuntime,
    /// The advisory customer locks, on this store's pool and runtime.
    customer_locks: Arc<PgCustomerLocks>,
    /// How to open the liveness lock's connection.
    connector: Connector,
    /// Who claims, once [`crate::store::SyncStore::claim_as`] named it ([`liveness`]).
    claimer: std::sync::OnceLock<Claimer>,
}

/// How to open a connection to the database `[state]` names: the pool's, and the dedicated
/// connections of [`crate::replicas`] (the leader's lock, the deployment notices).
#[derive(Clone)]
pub struct Connector {
    /// Address, credentials and session options.
    pub config: tokio_postgres::Config,
    /// TLS as `[state] ca_file` says.
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Connector {
    /// The connection settings of `[state]` (the password from `[state] password` if set),
    /// naming the session `application_name` (shown in `pg_stat_activity`).
    pub fn new(state: &StateConfig, application_name: &str) -> Result<Self> {
        let url = state
            .url
            .as_deref()
            .context("[state] url is not set: it names the PostgreSQL database")?;
        let mut pg: tokio_postgres::Config = url
            .parse()
            .context("state.url is not a valid PostgreSQL URL")?;
        if let Some(password) = &state.password {
            pg.password(password.read("state.password")?.expose());
        }
        pg.application_name(application_name);
        pg.connect_timeout(state.pool.connect_timeout());
        // Kept with any options the URL sets (a `search_path`, say). `synchronous_commit = on`
        // whatever the server's default: a commit answers only once it is on the server's
        // disk, so what cosell acknowledges (a webhook's 2xx, a rotated refresh token, a
        // deploy) survives a crash of the database server, as `synchronous = FULL` makes it
        // survive a power loss on SQLite. TCP keepalives from the server's side: a replica
        // whose machine vanishes (power lost, network cut) never closes its connections, and
        // what its sessions hold (a customer's lock, the leader's lock) would otherwise wait
        // for the operating system's default of two hours of silence; with these the server
        // drops the session, and releases its locks, about a minute after the replica went
        // silent.
        let options = format!(
            "{} -c statement_timeout={} -c synchronous_commit=on -c tcp_keepalives_idle=30 \
             -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3",
            pg.get_options().unwrap_or_default(),
            state.pool.statement_timeout().as_millis()
        );
        pg.options(options.trim_start());
        let tls = super::tls::connector(state.ca_file.as_deref())?;
        Ok(Self { config: pg, tls })
    }
}

/// The store's runtime, shut down without waiting when the store is dropped: dropping a
/// runtime normally blocks, which panics when the last owner drops it in async code.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects to the database `[state] url` names (the password from `[state] password` if
    /// set) and brings its schema to the newest version.
    pub fn open(state: &StateConfig) -> Result<Self> {
        let connector = Connector::new(state, "cosell")?;
        let Connector { config: pg, tls } = connector.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cosell-postgres")
            .enable_all()
            .build()
            .context("starting the PostgreSQL store's runtime")?;
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = state.pool.connect_timeout();
        let pool = Pool::builder(manager)
            .max_size(state.pool.max_connections)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .context("making the PostgreSQL connection pool")?;
        let customer_locks = Arc::new(PgCustomerLocks {
            pool: pool.clone(),
            runtime: runtime.handle().clone(),
        });
        let store = Self {
            pool,
            runtime: OwnRuntime(Some(runtime)),
            customer_locks,
            connector,
            claimer: std::sync::OnceLock::new(),
        };
        store.with(|c| Box::pin(schema::upgrade(c)))?;
        Ok(store)
    }

    /// From now on claims are made as `replica_id`, proven alive by its liveness lock
    /// (see [`liveness`]); refused when a live session holds that id's lock already.
    pub(super) fn join_as(&self, replica_id: &str) -> Result<()> {
        if let Some(claimer) = self.claimer.get() {
            bail!(
                "this store already claims as replica `{}`; it cannot claim as `{replica_id}` too",
                claimer.id
            );
        }
        let joined = self.run(liveness::join(
            self.connector.clone(),
            replica_id.to_owned(),
        ))?;
        self.claimer
            .set(joined)
            .map_err(|_| anyhow!("this store joined as two replicas at once"))
    }

    /// The replica this store claims as, if named, and what it may claim now.
    pub(super) fn claimer(&self) -> Option<(&str, liveness::Standing)> {
        self.claimer.get().map(|c| (c.id.as_str(), c.standing()))
    }

    /// Runs `job` on the store's runtime; waits for its result.
    fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .0
            .as_ref()
            .context("the PostgreSQL store is shut down")?;
        let (answer, result) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = answer.send(job.await);
        });
        result
            .recv()
            .map_err(|_| anyhow!("a call to the PostgreSQL store ended without an answer (it panicked, or the store's runtime stopped)"))?
    }

    /// Runs `job` on a pooled connection, on the store's runtime; waits for its result.
    pub(super) fn with<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Object) -> Job<'c, T> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.run(async move {
            match pool.get().await {
                Ok(mut client) => job(&mut client).await,
                Err(e) => Err(anyhow!(e).context(
                    "no connection to the PostgreSQL state database (is it up, and does \
                     state.url name it?)",
                )),
            }
        })
    }
}

#[cfg(test)]
impl PgStore {
    /// Runs statements under the traits (tests inject failures so).
    pub(crate) fn execute_for_test(&self, sql: &str) -> Result<()> {
        let sql = sql.to_owned();
        self.with(move |c| Box::pin(async move { Ok(c.batch_execute(&sql).await?) }))
    }

    /// The first column, text, of every row `sql` answers.
    pub(crate) fn texts_for_test(&self, sql: &str) -> Result<Vec<String>> {
        let sql = sql.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let rows = c.query(&sql, &[]).await?;
                Ok(rows.iter().map(|row| row.get(0)).collect())
            })
        })
    }
}

/// The queue, links, cursors and audit trail (each implemented beside its SQL); every replica on this database shares the customer locks.
impl crate::store::SyncStore for PgStore {
    fn customer_locks(&self) -> Arc<dyn crate::store::CustomerLocks> {
        self.customer_locks.clone()
    }
}
