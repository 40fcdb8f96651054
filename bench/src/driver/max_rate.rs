//! Figure 9: the highest change rate one host sustains with p99 under a second, and where
//! the CPU goes at that rate.
//!
//! One environment (as figure 5's: both emulators here, a release `cosell serve` on SQLite,
//! pollers off, Dataverse limits raised) is offered trials of open-loop load at rising rates:
//! doubling from `--start` while every change lands with p99 under `--p99-ms`, then bisecting
//! between the last rate that held and the first that did not. A trial holds when nothing is
//! missing after the drain and its p99 is under the bound. Between trials the host's queue is
//! left to empty, so a failed trial's backlog does not count against the next one. The rate
//! found is a property of the whole machine (host and emulators share its cores): the CPU per
//! change of each, at that rate, says which one ran out.

use super::env::BenchEnv;
use super::measure::{Cpu, CpuMeter, warm_up};
use super::metric_value;
use super::profile::Profiler;
use super::workload::{self, Workload};
use anyhow::{Result, bail};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::short;
use std::time::{Duration, Instant};

/// How the search is driven.
#[derive(Debug, Clone, clap::Args)]
pub struct MaxRateArgs {
    /// The first rate tried (changes per second).
    #[arg(long, default_value_t = 50.0)]
    pub start: f64,
    /// No rate above this is tried.
    #[arg(long, default_value_t = 3200.0)]
    pub max: f64,
    /// Seconds of offered load per trial.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// The p99 a sustained rate keeps under, in milliseconds.
    #[arg(long, default_value_t = 1000.0)]
    pub p99_ms: f64,
    /// Bisection steps after the first failing rate.
    #[arg(long, default_value_t = 4)]
    pub steps: u32,
    /// Share of the changes that update an earlier referral.
    #[arg(long, default_value_t = 0.3)]
    pub update_share: f64,
}

/// One trial's result.
#[derive(Debug, Clone)]
struct Trial {
    rate: f64,
    p50: f64,
    p99: f64,
    missing: usize,
    cpu: Cpu,
}

impl Trial {
    fn held(&self, bound_ms: f64) -> bool {
        self.missing == 0 && self.p99 < bound_ms
    }
}

/// Runs figure 9 and saves it.
pub async fn run(args: &MaxRateArgs) -> Result<Vec<FigureResults>> {
    let env = super::latency::start_unthrottled().await?;
    warm_up(&env).await?;
    let mut trials: Vec<Trial> = Vec::new();
    let (mut held, mut failed): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = args.start;
    while rate <= args.max {
        let trial = offer(&env, args, rate, trials.len()).await?;
        let ok = trial.held(args.p99_ms);
        trials.push(trial);
        if ok {
            held = Some(rate);
            rate *= 2.0;
        } else {
            failed = Some(rate);
            break;
        }
    }
    let Some(mut low) = held else {
        bail!(
            "not even {} changes/s held p99 < {} ms: lower --start",
            args.start,
            args.p99_ms
        );
    };
    if let Some(mut high) = failed {
        for _ in 0..args.steps {
            let mid = ((low + high) / 2.0).round();
            if mid <= low || mid >= high {
                break;
            }
            let trial = offer(&env, args, mid, trials.len()).await?;
            if trial.held(args.p99_ms) {
                low = mid;
            } else {
                high = mid;
            }
            trials.push(trial);
        }
    }
    // The rate found, once more, with the profiler on if asked (the trials are not profiled:
    // perf's own CPU would move the boundary).
    let profiler = Profiler::start_if_asked(
        &format!("max-rate-{low}"),
        &[("host", env.host_pid()), ("emulators", std::process::id())],
    )?;
    let confirm = offer(&env, args, low, trials.len()).await?;
    if let Some(profiler) = profiler {
        profiler.finish()?;
    }
    let figure = FigureResults {
        figure: 9,
        title: "Highest sustained change rate (p99 < 1 s)".into(),
        method: format!(
            "one host on SQLite with default settings, pollers off, both emulators on the same 2 cores, Dataverse limits raised; open-loop trials of {} s ({}% updates, 200 customers), rate doubled from {} /s until a trial missed p99 < {} ms or lost a change, then {} bisection steps; the rate found run once more for its CPU split; trials: {}",
            args.seconds,
            (args.update_share * 100.0).round(),
            args.start,
            args.p99_ms,
            args.steps,
            trials
                .iter()
                .map(|t| format!(
                    "{} /s → p99 {} ms{}",
                    t.rate,
                    short(t.p99),
                    if t.missing > 0 {
                        format!(", {} missing", t.missing)
                    } else {
                        String::new()
                    }
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        rows: vec![
            Row::info(
                "highest rate with p99 < 1 s",
                format!("{low} changes/s"),
                format!(
                    "confirmed: p50 {} ms, p99 {} ms, {} missing",
                    short(confirm.p50),
                    short(confirm.p99),
                    confirm.missing
                ),
            ),
            Row::info(
                "CPU per change at that rate: host / emulators",
                format!(
                    "{} / {} ms",
                    short(confirm.cpu.host),
                    short(confirm.cpu.emulators)
                ),
                format!("{} of 2 cores", short(confirm.cpu.cores_at(low))),
            ),
        ],
    };
    figure.save("9-max-rate")?;
    Ok(vec![figure])
}

/// Offers `rate` for `args.seconds`, waits for the host's queue to empty, and answers how it
/// went.
async fn offer(env: &BenchEnv, args: &MaxRateArgs, rate: f64, n: usize) -> Result<Trial> {
    eprintln!("max-rate: trial {n} at {rate} changes/s…");
    let cpu = CpuMeter::start(env)?;
    let outcome = workload::run(
        &env.pc,
        &env.dv,
        &Workload {
            rate,
            duration: Duration::from_secs(args.seconds),
            update_share: args.update_share,
            customers: 200,
            drain: Duration::from_secs(30),
            run: format!("max-{n}"),
        },
    )
    .await?;
    let cpu = cpu.per_change(env, outcome.changes())?;
    let latency = outcome.latency_ms();
    let trial = Trial {
        rate,
        p50: latency.median(),
        p99: latency.percentile(99.0),
        missing: outcome.missing,
        cpu,
    };
    eprintln!(
        "max-rate: {rate} /s: p50 {:.1} ms, p99 {:.1} ms, {} missing, CPU per change host {:.2} / emulators {:.2} ms",
        trial.p50, trial.p99, trial.missing, trial.cpu.host, trial.cpu.emulators
    );
    settle(env).await?;
    Ok(trial)
}

/// Waits (up to two minutes) until the host has no event pending or running.
async fn settle(env: &BenchEnv) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let text = env.metrics().await?;
        let busy = metric_value(&text, "cosell_queue_events", &["state=\"pending\""])
            + metric_value(&text, "cosell_queue_events", &["state=\"running\""]);
        if busy == 0.0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the host's queue did not empty within two minutes after a trial")
}
