//! Figure 10: what the machine charges for the work every change needs whatever cosell's
//! code does: one HTTP exchange over loopback (each side), one hand-over of a call to
//! tokio's blocking pool and back, one SQLite commit with `fsync`. Multiplied by how many of
//! each a change costs (figure 5 counts them from the host's metrics), it is the floor under
//! figure 5's CPU per change.
//!
//! The client side runs in a process of its own (this binary, `floor-client`), as cosell
//! does: a two-thread tokio runtime and a reqwest client with rustls and keep-alive, sending
//! one GET at a time from a worker thread on a fixed schedule (so every exchange pays the
//! wake-ups a lightly loaded host pays, and nothing else). The server side is an axum router in this process answering a
//! 4 KB JSON document, about a referral's size. Each cost is the CPU (user + system) of the
//! process that did the work, divided by how many it did.
//!
//! Then [`skeleton`] measures them together, as a change needs them, at figure 5's rates.

pub mod skeleton;

use super::procfs::cpu_seconds;
use anyhow::{Context as _, Result, bail};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::short;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How the floor is measured.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Operations per second of each kind (about what figure 5's host does at 200 changes/s).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of each kind.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The rates (changes per second) a change's skeleton is measured at, on one thread and on
    /// two; none to leave it out.
    #[arg(long, value_delimiter = ',', default_value = "100,200")]
    pub skeleton_rates: Vec<f64>,
}

/// What the client process measured, per operation, in microseconds of its CPU.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientCosts {
    pub exchange_us: f64,
    pub exchanges: u64,
    pub hand_off_us: f64,
    pub hand_offs: u64,
    pub commit_us: f64,
    pub commits: u64,
}

/// The answer the server sends: about a referral's size.
fn document() -> String {
    let filler = "x".repeat(4000);
    serde_json::json!({ "id": "floor", "filler": filler }).to_string()
}

/// Runs the client in a process of its own against a server here; saves and answers the
/// figure.
pub async fn run(args: &FloorArgs) -> Result<FigureResults> {
    let body = document();
    let app = axum::Router::new().route(
        "/document",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/document", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    eprintln!(
        "floor: {} operations/s of each kind for {} s…",
        args.rate, args.seconds
    );
    let own_before = cpu_seconds(std::process::id())?;
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .args(["floor-client", "--url", &url])
        .args(["--rate", &args.rate.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .output()
        .await
        .context("running the floor's client process")?;
    let own_cpu = cpu_seconds(std::process::id())? - own_before;
    server.abort();
    if !output.status.success() {
        bail!(
            "the floor's client failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let client: ClientCosts = serde_json::from_slice(&output.stdout)
        .context("reading the floor client's measurements")?;
    let mut skeletons = Vec::new();
    for &rate in &args.skeleton_rates {
        for threads in [skeleton::Threads::One, skeleton::Threads::Two] {
            eprintln!(
                "floor: a change's skeleton at {rate} /s on {}…",
                threads.label()
            );
            let cost = skeleton::measure(threads, rate, args.seconds).await?;
            skeletons.push((rate, threads, cost));
        }
    }
    // This process served the exchanges and idled through the rest.
    let server_us = own_cpu * 1e6 / client.exchanges.max(1) as f64;
    let us = |v: f64| format!("{} µs", short(v));
    let summed = 3.0 * client.exchange_us + 2.0 * server_us + 2.0 * client.commit_us;
    let figure = FigureResults {
        figure: 10,
        title: "The machine's floor: CPU of the work every change needs".into(),
        method: format!(
            "{} /s of each operation for {} s, one at a time on a tokio worker thread (as a sync worker calls); client: a separate process, 2-thread tokio runtime, reqwest (rustls, keep-alive), GET of a 4 KB JSON document on loopback; server: axum in the driver process; hand-over: tokio::task::spawn_blocking of an empty call, awaited; commit: one row inserted in its own transaction, SQLite WAL, synchronous=FULL, on the target directory's disk; a change's skeleton: a process doing only a change's input and output (Partner Center's webhook received and committed with fsync, the referral read, the customer looked up, the opportunity created, the link committed, Dataverse's echo webhook answered) against services in the driver's process, open loop at the rate for {} s, its CPU per change",
            args.rate, args.seconds, args.seconds
        ),
        rows: vec![
            Row::info(
                "one HTTP exchange, client side",
                us(client.exchange_us),
                format!("{} exchanges", client.exchanges),
            ),
            Row::info(
                "one HTTP exchange, server side",
                us(server_us),
                format!("{} exchanges", client.exchanges),
            ),
            Row::info(
                "one hand-over to the blocking pool and back",
                us(client.hand_off_us),
                format!("{} hand-overs", client.hand_offs),
            ),
            Row::info(
                "one SQLite commit with fsync",
                us(client.commit_us),
                format!("{} commits", client.commits),
            ),
        ]
        .into_iter()
        .chain(skeletons.iter().map(|(rate, threads, cost)| {
            Row::info(
                format!("a change's skeleton at {rate} /s, {}", threads.label()),
                us(cost.cpu_per_change_us),
                format!(
                    "{} changes; 3 exchanges made, 2 answered, 2 commits (1 with fsync) each; those measured alone add up to {}",
                    cost.changes,
                    us(summed)
                ),
            )
        }))
        .collect(),
    };
    figure.save("10-floor")?;
    Ok(figure)
}

/// The client process's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorClientArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub rate: f64,
    #[arg(long)]
    pub seconds: u64,
}

/// The client process: measures each kind in turn and prints [`ClientCosts`] as JSON.
pub fn client(args: &FloorClientArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let count = (args.rate * args.seconds as f64) as u64;
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .build()?;
    let (exchange_us, exchanges) = runtime.block_on(paced(period, count, {
        let (http, url) = (http.clone(), args.url.clone());
        move || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let answer = http.get(&url).send().await?.error_for_status()?;
                answer.bytes().await?;
                Ok(())
            }
        }
    }))?;
    let (hand_off_us, hand_offs) = runtime.block_on(paced(period, count, || async {
        tokio::task::spawn_blocking(|| std::hint::black_box(0)).await?;
        Ok(())
    }))?;
    let (commit_us, commits) = commits(period, count)?;
    let costs = ClientCosts {
        exchange_us,
        exchanges,
        hand_off_us,
        hand_offs,
        commit_us,
        commits,
    };
    println!("{}", serde_json::to_string(&costs)?);
    Ok(())
}

/// Runs `operation` every `period`, `count` times (after a tenth as many to warm up), one at
/// a time on one of the runtime's worker threads, as a sync worker makes its calls; answers
/// this process's CPU per operation in µs, and how many.
async fn paced<F, Fut>(period: Duration, count: u64, operation: F) -> Result<(f64, u64)>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        for _ in 0..count / 10 {
            operation().await?;
        }
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let before = cpu_seconds(std::process::id())?;
        for _ in 0..count {
            tick.tick().await;
            operation().await?;
        }
        let spent = cpu_seconds(std::process::id())? - before;
        Ok((spent * 1e6 / count as f64, count))
    })
    .await?
}

/// SQLite commits of one row each, WAL with `synchronous = FULL` (the host's setting for
/// acknowledged webhooks), every `period`, on one thread.
fn commits(period: Duration, count: u64) -> Result<(f64, u64)> {
    let (_dir, db) = wal_database("floor.db")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")?;
    let body = "x".repeat(1000);
    let insert = |n: u64| {
        db.execute("INSERT INTO t (body) VALUES (?1)", [&body])
            .map(|_| n)
    };
    for n in 0..count / 10 {
        insert(n)?;
    }
    let before = cpu_seconds(std::process::id())?;
    let started = Instant::now();
    for n in 0..count {
        let due = started + period * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        insert(n)?;
    }
    let spent = cpu_seconds(std::process::id())? - before;
    Ok((spent * 1e6 / count as f64, count))
}

/// A new SQLite database `name` in WAL mode, as the host keeps its state, in a directory on
/// the disk the results go to (else the system's temporary directory), removed when the
/// answered directory is dropped.
fn wal_database(name: &str) -> Result<(tempfile::TempDir, rusqlite::Connection)> {
    let dir = tempfile::tempdir_in(
        cosell_bench::results::results_dir()
            .parent()
            .unwrap_or(std::path::Path::new(".")),
    )
    .or_else(|_| tempfile::tempdir())?;
    let db = rusqlite::Connection::open(dir.path().join(name))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    Ok((dir, db))
}
