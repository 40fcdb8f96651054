//! A PostgreSQL server for the store's tests (and the replicas' tests in `tests/`), and a
//! fresh schema in it for each test.
//!
//! The server is `COSELL_TEST_POSTGRES_URL` when set (any database the URL's user may create
//! schemas in). Otherwise a throwaway cluster is made with the PostgreSQL binaries of the
//! machine (`COSELL_TEST_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/*/bin`): in
//! `$TMPDIR/cosell-test-postgres` (`/tmp/…` as root), listening on 127.0.0.1 on a free port and on a unix socket
//! in that directory, trusting local connections. `initdb` refuses to run as root, so as root
//! the cluster runs as the `postgres` user (`runuser`). The first test process starts it under
//! a file lock and the others (nextest runs each test in a process of its own) reuse it; it is
//! left running for the next run (`pg_ctl -D $TMPDIR/cosell-test-postgres/data stop` ends it).
//!
//! Each test gets a schema of its own (`search_path` in the URL), dropped when the test ends,
//! so tests run in parallel. Without a server and without binaries the tests FAIL, saying
//! how to provide one: CI always has PostgreSQL, so a silent skip would hide a broken backend.

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The URL of the test server's administrative database, made once per test process; an
/// error saying how to provide a server when none can be had.
fn server() -> Result<&'static str> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    match SERVER.get_or_init(|| find_or_start().map_err(|e| format!("{e:#}"))) {
        Ok(url) => Ok(url),
        Err(e) => bail!(
            "this needs a PostgreSQL server and none could be had: {e}\n\
             Either set COSELL_TEST_POSTGRES_URL=postgres://user@127.0.0.1:5432/db (a user that \
             may create schemas), or install PostgreSQL (`apt-get install postgresql`; a \
             throwaway cluster is then started with its binaries, see \
             host/src/store/testing/postgres.rs)"
        ),
    }
}

fn find_or_start() -> Result<String> {
    if let Ok(url) = std::env::var("COSELL_TEST_POSTGRES_URL") {
        return Ok(url);
    }
    let bin = binaries()?;
    let root = base_dir().join("cosell-test-postgres");
    // One process starts the cluster; the others wait here and find it running.
    let lock = std::fs::File::create(base_dir().join("cosell-test-postgres.lock"))
        .context("creating the test cluster's lock file")?;
    lock.lock()
        .context("locking the test cluster's lock file")?;
    let port_file = root.join("port");
    if let Ok(port) = std::fs::read_to_string(&port_file)
        && let Ok(port) = port.trim().parse::<u16>()
        && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    {
        return Ok(url(port));
    }
    start(&bin, &root).map(url)
}

/// Where the cluster lives: the temporary directory, or `/tmp` as root, since the `postgres`
/// user must be able to reach it (a `TMPDIR` under `/root` would not do).
fn base_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    }
}

fn url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// The directory holding `initdb` and `pg_ctl`.
fn binaries() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("COSELL_TEST_POSTGRES_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no COSELL_TEST_POSTGRES_URL, and no /usr/lib/postgresql to start a cluster with")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("/usr/lib/postgresql holds no version with an initdb")
}

/// Makes a fresh cluster in `root` and starts it; answers its port.
fn start(bin: &Path, root: &Path) -> Result<u16> {
    make(bin, root)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    pg_ctl(bin, root, port, "start")?;
    std::fs::write(root.join("port"), port.to_string())?;
    Ok(port)
}

/// `pg_ctl start` or `restart` of the cluster in `root` on `port`, waiting until it accepts
/// connections.
fn pg_ctl(bin: &Path, root: &Path, port: u16, action: &str) -> Result<()> {
    run(
        is_root(),
        Command::new(bin.join("pg_ctl"))
            .arg("-D")
            .arg(root.join("data"))
            .arg("-l")
            .arg(root.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
                root.display()
            ))
            .args(["-m", "fast", "-w", "-t", "60", action]),
    )
    .with_context(|| {
        format!(
            "{action} of the test cluster (its log: {})",
            root.join("log").display()
        )
    })
}

/// Makes a fresh cluster in `root` (removing what an earlier run left there).
fn make(bin: &Path, root: &Path) -> Result<()> {
    let as_root = is_root();
    if root.exists() {
        // A cluster from an earlier run that is no longer running (a reboot): start afresh.
        let _ = run(
            as_root,
            Command::new(bin.join("pg_ctl"))
                .arg("-D")
                .arg(root.join("data"))
                .args(["-m", "immediate", "stop"]),
        );
        std::fs::remove_dir_all(root)
            .with_context(|| format!("removing the stale test cluster {}", root.display()))?;
    }
    std::fs::create_dir_all(root)?;
    if as_root {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(root)
            .status()
            .context("running chown")?;
        if !status.success() {
            bail!(
                "could not give {} to the postgres user (is there one?)",
                root.display()
            );
        }
    }
    let data = root.join("data");
    run(
        as_root,
        Command::new(bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]),
    )
    .context("initdb")?;
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs `command` (as the `postgres` user when `as_root`); its output only on failure.
fn run(as_root: bool, command: &mut Command) -> Result<()> {
    let mut command = if as_root {
        let mut wrapped = Command::new("runuser");
        wrapped
            .args(["-u", "postgres", "--"])
            .arg(command.get_program());
        wrapped.args(command.get_args());
        wrapped
    } else {
        std::mem::replace(command, Command::new("true"))
    };
    // Output to a file, never a pipe: the server pg_ctl starts would hold a pipe open.
    let log = tempfile::tempfile()?;
    let status = command
        .current_dir(base_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .status()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    if !status.success() {
        use std::io::{Read as _, Seek as _};
        let mut text = String::new();
        let mut log = log;
        log.rewind()?;
        log.read_to_string(&mut text)?;
        bail!("{:?} failed ({status}): {text}", command.get_program());
    }
    Ok(())
}

/// A PostgreSQL cluster of one test's own, which the test may restart (the shared server may
/// not be: other tests use it at the same time). Made with the machine's binaries, as the
/// shared one is (`COSELL_TEST_POSTGRES_URL` does not apply), in a fresh directory, stopped and
/// removed when dropped.
pub struct OwnCluster {
    /// The URL of its administrative database.
    pub url: String,
    bin: PathBuf,
    root: PathBuf,
    port: u16,
}

impl OwnCluster {
    /// Makes and starts the cluster (panics, saying what is missing, when it cannot).
    pub fn start() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let started = binaries().and_then(|bin| {
            let root = base_dir().join(format!(
                "cosell-own-postgres-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let port = start(&bin, &root)?;
            Ok(Self {
                url: url(port),
                bin,
                root,
                port,
            })
        });
        started.unwrap_or_else(|e| {
            panic!(
                "this test restarts a PostgreSQL cluster of its own, made with the machine's \
                 PostgreSQL binaries (`apt-get install postgresql`, or \
                 COSELL_TEST_POSTGRES_BIN=<dir of initdb and pg_ctl>): {e:#}"
            )
        })
    }

    /// Restarts the server (a fast shutdown: every session is ended, as at an operator's
    /// restart or a failover) and waits until it accepts connections again.
    pub fn restart(&self) -> Result<()> {
        pg_ctl(&self.bin, &self.root, self.port, "restart")
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = run(
            is_root(),
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.root.join("data"))
                .args(["-m", "immediate", "stop"]),
        );
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A schema of its own on the test server, dropped with this value.
pub struct TestSchema {
    /// The URL the store under test opens: the schema is its `search_path`.
    pub url: String,
    admin: String,
    name: String,
}

impl TestSchema {
    /// A fresh schema (panics, saying how to get a server, when none can be had).
    pub fn new() -> Self {
        Self::try_new().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A fresh schema, or an error saying how to get a server when none can be had (for
    /// callers that are not tests: the benchmarks).
    pub fn try_new() -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin = server()?.to_owned();
        let name = format!(
            "cosell_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            chrono::Utc::now().timestamp_micros()
        );
        admin_sql(&admin, &format!("CREATE SCHEMA {name}")).with_context(|| {
            format!(
                "creating a schema on {admin} (COSELL_TEST_POSTGRES_URL, or the tests' own \
                 cluster)"
            )
        })?;
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-c%20search_path%3D{name}");
        Ok(Self { url, admin, name })
    }
}

impl Default for TestSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let _ = admin_sql(&self.admin, &format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

/// Runs `sql` on the schema of `url` (a [`TestSchema::url`]); async tests may call it too.
pub fn execute(url: &str, sql: &str) -> Result<()> {
    admin_sql(url, sql)
}

/// Runs `sql` on the server, from a thread and runtime of its own: callers may be async (the
/// end-to-end tests make and drop their schema inside a tokio test), where blocking on a
/// runtime of their thread would panic.
fn admin_sql(url: &str, sql: &str) -> Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| admin_sql_here(url, sql))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn admin_sql_here(url: &str, sql: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let connection = tokio::spawn(connection);
        client.batch_execute(sql).await?;
        drop(client);
        let _ = connection.await;
        Ok(())
    })
}

/// Locks held by a transaction of another connection, as a transaction of another replica
/// would hold them, until this value is dropped.
pub struct HeldLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeldLock {
    /// Runs `sql` (which takes locks) in a transaction on the schema of `url`; returns once it
    /// has run, and the locks are held.
    pub fn take(url: &str, sql: &str) -> Self {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held, is_held) = std::sync::mpsc::channel::<Result<(), String>>();
        let (url, sql) = (url.to_owned(), format!("BEGIN; {sql}"));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let connected = tokio_postgres::connect(&url, tokio_postgres::NoTls).await;
                let (client, connection) = match connected {
                    Ok(pair) => pair,
                    Err(e) => return drop(held.send(Err(e.to_string()))),
                };
                let connection = tokio::spawn(connection);
                let locked = client.batch_execute(&sql).await;
                let _ = held.send(locked.map_err(|e| e.to_string()));
                // Until the holder is dropped (bounded: a forgotten guard ends the test).
                let _ = tokio::task::spawn_blocking(move || {
                    released.recv_timeout(std::time::Duration::from_secs(120))
                })
                .await;
                let _ = client.batch_execute("ROLLBACK").await;
                drop(client);
                let _ = connection.await;
            });
        });
        is_held
            .recv()
            .expect("the lock holder stopped")
            .unwrap_or_else(|e| panic!("taking the locks: {e}"));
        Self {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
