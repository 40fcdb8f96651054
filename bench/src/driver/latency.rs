//! Figure 5, end-to-end latency at 200 changes/s, and figure 7's host memory (RSS idle and
//! under that load), from one run.
//!
//! The Dataverse emulator's service protection limits are raised for this run: at the
//! documented 6,000 requests per 300 s, 200 changes/s (several requests each) would be
//! throttled within seconds, and the figure would measure the quota, not cosell (figure 6
//! measures the quota).

use super::env::{BenchEnv, EnvOptions};
use super::measure::{CpuMeter, warm_up};
use super::metric_value;
use super::procfs::rss_bytes;
use super::profile::Profiler;
use super::workload::{self, Workload};
use anyhow::Result;
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::{Summary, short};
use cosell_emulators::dataverse::{DataverseConfig, ServiceProtectionLimits};
use std::time::Duration;

/// How the latency figure is driven.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// Changes per second offered.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of offered load.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Share of the changes that update an earlier referral.
    #[arg(long, default_value_t = 0.3)]
    pub update_share: f64,
}

/// The Dataverse emulator with room for the load (see the module doc).
pub fn unthrottled_dataverse() -> DataverseConfig {
    DataverseConfig {
        limits: ServiceProtectionLimits {
            requests: 100_000_000,
            execution_time: chrono::Duration::days(365),
            ..ServiceProtectionLimits::default()
        },
        ..DataverseConfig::default()
    }
}

/// The environment of the load figures (3, 5, 9): webhooks registered, Dataverse limits
/// raised ([`unthrottled_dataverse`]).
pub async fn start_unthrottled() -> Result<BenchEnv> {
    BenchEnv::start(EnvOptions {
        extra: String::new(),
        dataverse: unthrottled_dataverse(),
        register_webhooks: true,
        ..EnvOptions::default()
    })
    .await
}

/// Samples the host's RSS every 100 ms until stopped; answers the samples in bytes.
pub fn sample_rss(
    pid: u32,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<u64>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {
                    if let Ok(rss) = rss_bytes(pid) { samples.push(rss) }
                }
            }
        }
        samples
    });
    (stop, task)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Runs figures 5 and 7a and saves them.
pub async fn run(args: &LatencyArgs) -> Result<Vec<FigureResults>> {
    let env = start_unthrottled().await?;
    warm_up(&env).await?;
    let idle = Summary::new(
        (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(100));
                rss_bytes(env.host_pid()).unwrap_or(0) as f64 / MIB
            })
            .collect(),
    );

    eprintln!("latency: {} changes/s for {} s…", args.rate, args.seconds);
    let (stop, sampler) = sample_rss(env.host_pid());
    let counts_before = env.metrics().await?;
    let cpu = CpuMeter::start(&env)?;
    let profiler = Profiler::start_if_asked(
        &format!("latency-{}", args.rate),
        &[("host", env.host_pid()), ("emulators", std::process::id())],
    )?;
    let outcome = workload::run(
        &env.pc,
        &env.dv,
        &Workload {
            rate: args.rate,
            duration: Duration::from_secs(args.seconds),
            update_share: args.update_share,
            customers: 200,
            drain: Duration::from_secs(60),
            run: "latency".into(),
        },
    )
    .await?;
    let _ = stop.send(());
    let changes = outcome.changes();
    if let Some(profiler) = profiler {
        profiler.finish()?;
    }
    // CPU per change, to tell a slow path from a machine without the cores for the load.
    let cpu = cpu.per_change(&env, changes)?;
    let work = WorkPerChange::between(&counts_before, &env.metrics().await?, changes);
    let load_rss = Summary::new(sampler.await?.into_iter().map(|b| b as f64 / MIB).collect());
    let latency = outcome.latency_ms();
    eprintln!(
        "latency: {} creates + {} updates offered in {:.1} s, {} missing, p50 {:.1} ms, p99 {:.1} ms",
        outcome.creates_sent,
        outcome.updates_sent,
        outcome.offered_for.as_secs_f64(),
        outcome.missing,
        latency.median(),
        latency.percentile(99.0)
    );
    let fig5 = FigureResults {
        figure: 5,
        title: format!("End-to-end latency at {} changes/s", args.rate),
        method: format!(
            "{changes} Microsoft-side changes ({} creates, {} updates, 200 customers) offered open-loop at {} /s for {} s; from the referral changing in the Partner Center emulator (which then signs and delivers its webhook) to the opportunity write committing in the Dataverse emulator; host with default settings, pollers off; Dataverse limits raised",
            outcome.creates_sent, outcome.updates_sent, args.rate, args.seconds
        ),
        rows: vec![
            Row::info(
                "p50, webhook → written in Dataverse",
                format!("{} ms", short(latency.median())),
                latency.iqr_text("ms"),
            ),
            Row::judged(
                "p99",
                format!("{} ms", short(latency.percentile(99.0))),
                format!("max {} ms", short(latency.max())),
                "< 50 ms",
                latency.percentile(99.0) < 50.0 && outcome.missing == 0,
            ),
            Row::info(
                "CPU per change: host / emulators",
                format!("{} / {} ms", short(cpu.host), short(cpu.emulators)),
                format!(
                    "{} of 2 cores at {} /s",
                    short(cpu.cores_at(args.rate)),
                    args.rate
                ),
            ),
            Row::info(
                "per change: requests to Partner Center / Dataverse, webhooks received, runs",
                format!(
                    "{} / {}, {}, {}",
                    short(work.partner_center),
                    short(work.dataverse),
                    short(work.webhooks),
                    short(work.runs)
                ),
                "from the host's metrics (figure 10 prices them)",
            ),
            Row::judged(
                "changes not landed / creates written twice",
                format!("{} / {}", outcome.missing, outcome.duplicate_creates),
                String::new(),
                "0 / 0",
                outcome.missing == 0 && outcome.duplicate_creates == 0,
            ),
        ],
    };
    fig5.save(&format!("5-latency-{}", args.rate))?;
    let fig7 = FigureResults {
        figure: 7,
        title: format!("Host memory at {} changes/s", args.rate),
        method: "VmRSS of the `cosell serve` process: idle after a warm-up, then sampled every 100 ms during figure 5's load".into(),
        rows: vec![
            Row::info("host RSS idle", format!("{} MiB", short(idle.median())), idle.iqr_text("MiB")),
            Row::info(
                format!("host RSS under {} changes/s", args.rate),
                format!("{} MiB", short(load_rss.median())),
                format!("max {} MiB", short(load_rss.max())),
            ),
        ],
    };
    fig7.save(&format!("7-host-memory-{}", args.rate))?;
    Ok(vec![fig5, fig7])
}

/// What the host did per change during a run, from its metrics before and after it.
struct WorkPerChange {
    /// Requests sent to Partner Center (every attempt).
    partner_center: f64,
    /// Requests sent to Dataverse (every attempt).
    dataverse: f64,
    /// Webhook deliveries received, of both services.
    webhooks: f64,
    /// Events run by the workers, echoes included.
    runs: f64,
}

impl WorkPerChange {
    fn between(before: &str, after: &str, changes: usize) -> Self {
        let per_change = |name: &str, labels: &[&str]| {
            (metric_value(after, name, labels) - metric_value(before, name, labels))
                / changes.max(1) as f64
        };
        Self {
            partner_center: per_change(
                "cosell_service_requests_total",
                &["service=\"partner-center\""],
            ),
            dataverse: per_change("cosell_service_requests_total", &["service=\"dataverse\""]),
            webhooks: per_change("cosell_intake_events_total", &[]),
            runs: per_change("cosell_sync_events_total", &[]),
        }
    }
}
