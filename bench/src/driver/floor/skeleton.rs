//! Figure 10's last rows: a change's skeleton. A process that does only the input and output a
//! synced change cannot do without, in the order the host does it, at the rates figure 5
//! offers, and nothing else: no signature checked, no document parsed, no mapping, no
//! fingerprint, no state beyond one row per commit. Its CPU per change is the floor under the
//! host's at the same rate on the same machine, measured instead of added up from figure 10's
//! single operations (which are measured at 1,000 a second, where each pays fewer wake-ups).
//!
//! One change, as the least a host can do:
//! 1. Partner Center's webhook is received; the delivery is committed with `fsync` before it is
//!    answered (an acknowledged delivery must survive a crash).
//! 2. The referral is read from Partner Center (its webhook names it, it does not carry it).
//! 3. The customer is looked up in Dataverse and the opportunity created (answering its row).
//! 4. The link is committed (WAL, `synchronous = NORMAL`, as the host's ordinary writes).
//! 5. Dataverse's webhook of that write (the echo) is received and answered, not stored.
//!
//! That is 3 exchanges made, 2 answered and 2 commits per change; the host makes 4.5, answers 2
//! and commits more often (figure 5). The services' side (both Microsoft services and the
//! source of the changes) is an axum router in the driver's process; the skeleton is a child
//! process (`floor-skeleton`) whose CPU is read from `/proc` over the measured changes.

use super::super::procfs::cpu_seconds;
use anyhow::{Context as _, Result, bail};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// The threads the skeleton runs its work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Threads {
    /// Everything on one thread: no wake-up crosses threads (the cheapest a host can be).
    One,
    /// A two-worker tokio runtime, as the host's sync workers run on.
    Two,
}

impl Threads {
    /// How a figure's row names it.
    pub fn label(self) -> &'static str {
        match self {
            Threads::One => "one thread",
            Threads::Two => "two worker threads",
        }
    }
}

/// The skeleton process's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SkeletonArgs {
    /// The services' base URL (the driver's router).
    #[arg(long)]
    pub services: String,
    /// The threads it runs on.
    #[arg(long, value_enum)]
    pub threads: Threads,
}

/// What one change costs the skeleton at one rate.
#[derive(Debug)]
pub struct SkeletonCost {
    /// CPU (user + system) of the skeleton process per change, in µs.
    pub cpu_per_change_us: f64,
    /// Changes measured (after the warm-up).
    pub changes: u64,
}

/// Bodies about the size of the real ones: Partner Center's webhook, the referral, the account
/// lookup's answer, the opportunity (sent and answered), Dataverse's webhook.
struct Bodies {
    webhook: String,
    referral: String,
    account: String,
    opportunity: String,
    echo: String,
}

impl Bodies {
    fn new() -> Self {
        let padded = |size: usize| {
            serde_json::json!({ "id": "skeleton", "filler": "x".repeat(size) }).to_string()
        };
        Bodies {
            webhook: padded(300),
            referral: padded(3_600),
            account: padded(1_000),
            opportunity: padded(3_000),
            echo: padded(4_000),
        }
    }
}

/// The driver's side: the services, and the count of changes whose echo the skeleton answered.
struct Services {
    bodies: Bodies,
    http: reqwest::Client,
    skeleton: String,
    echoed: AtomicU64,
}

/// Starts the services here and a skeleton process on `threads`, offers `rate` changes a second
/// for `seconds` (after a tenth as many to warm up) and answers the skeleton's CPU per change.
pub async fn measure(threads: Threads, rate: f64, seconds: u64) -> Result<SkeletonCost> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let services_url = format!("http://{}", listener.local_addr()?);
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["floor-skeleton", "--services", &services_url])
        .args([
            "--threads",
            if threads == Threads::One {
                "one"
            } else {
                "two"
            },
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the skeleton process")?;
    let pid = child.id().context("the skeleton process ended at once")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let skeleton = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("the skeleton did not say where it listens within 10 s")??
        .context("the skeleton ended before it listened")?;

    let services = Arc::new(Services {
        bodies: Bodies::new(),
        http: reqwest::Client::new(),
        skeleton: skeleton.trim().to_owned(),
        echoed: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/referrals/{id}", get(referral))
        .route("/accounts", get(account))
        .route("/opportunities", post(create_opportunity))
        .with_state(services.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let warm_up = (rate * seconds as f64 / 10.0) as u64;
    offer(&services, rate, warm_up, 0).await?;
    let count = (rate * seconds as f64) as u64;
    let before = cpu_seconds(pid)?;
    offer(&services, rate, count, warm_up).await?;
    let spent = cpu_seconds(pid)? - before;
    server.abort();
    child.kill().await.ok();
    Ok(SkeletonCost {
        cpu_per_change_us: spent * 1e6 / count as f64,
        changes: count,
    })
}

/// Sends `count` Partner Center webhooks at `rate` (open loop, numbered from `first`), then
/// waits until the skeleton has answered the echo of every one.
async fn offer(services: &Arc<Services>, rate: f64, count: u64, first: u64) -> Result<()> {
    let target = services.echoed.load(Ordering::SeqCst) + count;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut sent = Vec::with_capacity(count as usize);
    for n in first..first + count {
        tick.tick().await;
        let services = services.clone();
        sent.push(tokio::spawn(async move {
            services
                .http
                .post(format!("{}/webhooks/partner-center/{n}", services.skeleton))
                .body(services.bodies.webhook.clone())
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(())
        }));
    }
    for delivery in sent {
        delivery.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while services.echoed.load(Ordering::SeqCst) < target {
        if Instant::now() > deadline {
            bail!("the skeleton did not finish its changes within 30 s of the last one");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn referral(State(services): State<Arc<Services>>, Path(_id): Path<u64>) -> String {
    services.bodies.referral.clone()
}

async fn account(State(services): State<Arc<Services>>) -> String {
    services.bodies.account.clone()
}

/// Answers the created row, then sends Dataverse's webhook of the write, as Dataverse does.
async fn create_opportunity(
    State(services): State<Arc<Services>>,
    _body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    let echo = services.clone();
    tokio::spawn(async move {
        let answered = echo
            .http
            .post(format!("{}/webhooks/dataverse", echo.skeleton))
            .body(echo.bodies.echo.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        if answered.is_ok() {
            echo.echoed.fetch_add(1, Ordering::SeqCst);
        }
    });
    (
        axum::http::StatusCode::CREATED,
        services.bodies.opportunity.clone(),
    )
}

/// The skeleton's state: its database and what it sends.
struct Skeleton {
    db: Mutex<rusqlite::Connection>,
    http: reqwest::Client,
    services: String,
    opportunity: String,
}

/// The skeleton process: listens, says where on its first line, and serves until killed.
pub fn serve(args: &SkeletonArgs) -> Result<()> {
    let runtime = match args.threads {
        Threads::One => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Threads::Two => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    };
    let (_dir, db) = super::wal_database("skeleton.db")?;
    db.execute_batch(
        "CREATE TABLE deliveries (id INTEGER PRIMARY KEY, body BLOB);
         CREATE TABLE links (referral INTEGER PRIMARY KEY, snapshot TEXT);",
    )?;
    let skeleton = Arc::new(Skeleton {
        db: Mutex::new(db),
        http: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?,
        services: args.services.clone(),
        opportunity: Bodies::new().opportunity,
    });
    runtime.block_on(async move {
        let app = axum::Router::new()
            .route("/webhooks/partner-center/{n}", post(partner_center_webhook))
            .route("/webhooks/dataverse", post(|| async { "" }))
            .with_state(skeleton);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Step 1: the delivery committed with `fsync`, then answered; the rest of the change goes on
/// in a task of its own.
async fn partner_center_webhook(
    State(skeleton): State<Arc<Skeleton>>,
    Path(n): Path<u64>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let stored = commit(&skeleton, true, |db| {
        db.execute("INSERT INTO deliveries (body) VALUES (?1)", [&body[..]])
    });
    if stored.is_err() {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    tokio::spawn(async move {
        if let Err(error) = sync(&skeleton, n).await {
            eprintln!("skeleton: change {n} failed: {error:#}");
        }
    });
    axum::http::StatusCode::OK
}

/// Steps 2–4: the referral read, the customer looked up, the opportunity created, the link
/// committed.
async fn sync(skeleton: &Skeleton, n: u64) -> Result<()> {
    let services = &skeleton.services;
    let http = &skeleton.http;
    let referral = exchange(http.get(format!("{services}/referrals/{n}"))).await?;
    exchange(http.get(format!("{services}/accounts"))).await?;
    let created = exchange(
        http.post(format!("{services}/opportunities"))
            .body(skeleton.opportunity.clone()),
    )
    .await?;
    commit(skeleton, false, |db| {
        db.execute(
            "INSERT OR REPLACE INTO links (referral, snapshot) VALUES (?1, ?2)",
            rusqlite::params![n as i64, format!("{}{}", referral.len(), created.len())],
        )
    })?;
    Ok(())
}

/// Sends `request` and reads its whole answer.
async fn exchange(request: reqwest::RequestBuilder) -> Result<axum::body::Bytes> {
    Ok(request.send().await?.error_for_status()?.bytes().await?)
}

/// One write in its own transaction, on the calling thread; `durable` makes it `fsync` the WAL.
fn commit(
    skeleton: &Skeleton,
    durable: bool,
    write: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<usize>,
) -> Result<()> {
    let db = skeleton
        .db
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    db.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
    write(&db)?;
    Ok(())
}
