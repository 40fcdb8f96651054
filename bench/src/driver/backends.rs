//! Figure 8, PostgreSQL vs SQLite with one replica: the same workload against a host keeping
//! its state in a SQLite file, then against one keeping it in PostgreSQL, side by side in one
//! run (same machine, same settings, a fresh environment each).
//!
//! For each backend, after a warm-up: the CPU time spent idle (paid per second, not per
//! change), then end-to-end latency at a moderate rate the machine carries (open loop, as
//! figure 5), then throughput: a fixed number of changes offered far faster than the host
//! lands them (a saturating open loop: the backlog builds in the Partner
//! Center emulator's webhook deliveries and the host's queue), timed from the first change
//! offered to the last one landing in Dataverse. Each phase reports the CPU time per change of
//! the host process, of the emulators (this process) and, on PostgreSQL, of the database
//! server's processes, which do there part of the work SQLite does inside the host.
//!
//! The PostgreSQL database is a schema on the server the tests use
//! ([`BenchDatabase`](super::postgres::BenchDatabase)); the figure's method names its `fsync`
//! setting, since the tests' throwaway cluster runs without it.

use super::env::{BenchEnv, EnvOptions, StateBackend};
use super::latency::unthrottled_dataverse;
use super::measure::{Cpu, CpuMeter, idle_cpu_per_second, warm_up};
use super::postgres::BenchDatabase;
use super::workload::{self, Workload, WorkloadOutcome};
use anyhow::{Result, bail};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::short;
use std::time::Duration;

/// How the backends figure is driven.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendsArgs {
    /// Changes of the throughput run, per backend.
    #[arg(long, default_value_t = 2_000)]
    pub changes: usize,
    /// Changes per second the throughput run offers: far above what the host lands, so it
    /// runs saturated (the driver warns when the figure comes close to it).
    #[arg(long, default_value_t = 1_000.0)]
    pub offer_rate: f64,
    /// Changes per second of the latency run: moderate, what the machine carries on either
    /// backend.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Share of the changes that update an earlier referral.
    #[arg(long, default_value_t = 0.3)]
    pub update_share: f64,
}

/// How long each backend's idle CPU is measured, after the warm-up.
const IDLE_SECONDS: u64 = 5;

/// One measured phase on one backend.
struct Phase {
    outcome: WorkloadOutcome,
    cpu: Cpu,
}

/// Both phases on one backend, and what it costs idle.
struct BackendRun {
    /// CPU milliseconds per second with no load.
    idle: Cpu,
    latency: Phase,
    saturated: Phase,
}

/// Offers `workload` and measures the CPU it cost.
async fn measure(env: &BenchEnv, workload: &Workload) -> Result<Phase> {
    let cpu = CpuMeter::start(env)?;
    let outcome = workload::run(&env.pc, &env.dv, workload).await?;
    let cpu = cpu.per_change(env, outcome.changes())?;
    Ok(Phase { outcome, cpu })
}

async fn run_backend(args: &BackendsArgs, name: &str, state: StateBackend) -> Result<BackendRun> {
    let env = BenchEnv::start(EnvOptions {
        extra: String::new(),
        dataverse: unthrottled_dataverse(),
        register_webhooks: true,
        state,
    })
    .await?;
    warm_up(&env).await?;
    let idle = idle_cpu_per_second(&env, IDLE_SECONDS).await?;
    let shape = |run: &str, rate: f64, seconds: f64, drain: u64| Workload {
        rate,
        duration: Duration::from_secs_f64(seconds),
        update_share: args.update_share,
        customers: 200,
        drain: Duration::from_secs(drain),
        run: run.into(),
    };
    eprintln!(
        "backends: {name}: {} changes/s for {} s…",
        args.rate, args.seconds
    );
    let latency = measure(&env, &shape("latency", args.rate, args.seconds as f64, 60)).await?;
    let p = latency.outcome.latency_ms();
    eprintln!(
        "backends: {name}: p50 {:.1} ms, p99 {:.1} ms, host CPU {:.2} ms/change, {} missing",
        p.median(),
        p.percentile(99.0),
        latency.cpu.host,
        latency.outcome.missing
    );
    eprintln!(
        "backends: {name}: {} changes offered at {} /s…",
        args.changes, args.offer_rate
    );
    // Up to five minutes for the backlog: far more than either backend needs on two cores.
    let seconds = args.changes as f64 / args.offer_rate;
    let saturated = measure(&env, &shape("saturated", args.offer_rate, seconds, 300)).await?;
    let landed = saturated.outcome.landed_per_second();
    eprintln!(
        "backends: {name}: {landed:.0} changes/s landed ({} in {:.1} s), host CPU {:.2} ms/change, {} missing",
        saturated.outcome.latencies.len(),
        saturated.outcome.landed_within.as_secs_f64(),
        saturated.cpu.host,
        saturated.outcome.missing
    );
    if landed > 0.8 * args.offer_rate {
        eprintln!(
            "backends: warning: {name} landed {landed:.0}/s of the {} /s offered: the offer, \
             not the host, may bound the figure; raise --offer-rate",
            args.offer_rate
        );
    }
    Ok(BackendRun {
        idle,
        latency,
        saturated,
    })
}

/// `a / b` of a measure on SQLite and PostgreSQL.
fn pair(sqlite: f64, postgres: f64, unit: &str) -> String {
    format!("{} / {} {unit}", short(sqlite), short(postgres))
}

/// The PostgreSQL server's CPU per change, or why there is none.
fn server_cpu(cpu: &Cpu) -> String {
    cpu.database.map_or_else(
        || "server CPU not measured (not on this machine)".into(),
        |ms| format!("+ PostgreSQL server {} ms", short(ms)),
    )
}

/// Runs figure 8 and saves it.
pub async fn run(args: &BackendsArgs) -> Result<FigureResults> {
    if args.changes == 0 || args.offer_rate <= 0.0 || args.rate <= 0.0 || args.seconds == 0 {
        bail!("--changes, --offer-rate, --rate and --seconds must all be above zero");
    }
    // First, so a machine without PostgreSQL learns it before the SQLite half has run.
    let database = BenchDatabase::create().await?;
    let settings = database.settings.clone();
    let sqlite = run_backend(args, "SQLite", StateBackend::Sqlite).await?;
    let postgres = run_backend(args, "PostgreSQL", StateBackend::Postgres(database)).await?;

    let (s, p) = (&sqlite.saturated, &postgres.saturated);
    let (s_rate, p_rate) = (s.outcome.landed_per_second(), p.outcome.landed_per_second());
    let (s_lat, p_lat) = (
        sqlite.latency.outcome.latency_ms(),
        postgres.latency.outcome.latency_ms(),
    );
    let outcomes = [
        &sqlite.latency.outcome,
        &s.outcome,
        &postgres.latency.outcome,
        &p.outcome,
    ];
    let clean = outcomes
        .iter()
        .all(|o| o.missing == 0 && o.duplicate_creates == 0);
    let lost = |a: &WorkloadOutcome, b: &WorkloadOutcome| {
        format!(
            "{} / {}",
            a.missing + b.missing,
            a.duplicate_creates + b.duplicate_creates
        )
    };
    let figure = FigureResults {
        figure: 8,
        title: "PostgreSQL vs SQLite, one replica".into(),
        method: format!(
            "one host per backend, same workload, one after the other in one run: SQLite = a file on the machine's disk; PostgreSQL = a schema on {settings}; after a warm-up, {IDLE_SECONDS} s idle, {} changes at {} /s open loop (latency, as figure 5), then {} changes offered at {} /s (saturating open loop): changes/s = changes landed ÷ (first offered → last landed in the Dataverse emulator); CPU = process CPU time ÷ changes; 200 customers, {}% updates; host with default settings, pollers off; Dataverse limits raised",
            sqlite.latency.outcome.changes(),
            args.rate,
            args.changes,
            args.offer_rate,
            (args.update_share * 100.0).round()
        ),
        rows: vec![
            Row::info(
                "changes/s landed, saturated: SQLite / PostgreSQL",
                pair(s_rate, p_rate, "/s"),
                format!("PostgreSQL at {}× SQLite", short(p_rate / s_rate.max(1e-9))),
            ),
            Row::info(
                "host CPU per change, saturated: SQLite / PostgreSQL",
                pair(s.cpu.host, p.cpu.host, "ms"),
                server_cpu(&p.cpu),
            ),
            Row::info(
                "emulators CPU per change, saturated: SQLite / PostgreSQL",
                pair(s.cpu.emulators, p.cpu.emulators, "ms"),
                format!(
                    "all CPU at the rate landed: {} / {} of 2 cores",
                    short(s.cpu.cores_at(s_rate)),
                    short(p.cpu.cores_at(p_rate))
                ),
            ),
            Row::info(
                format!("p50 at {} changes/s: SQLite / PostgreSQL", args.rate),
                pair(s_lat.median(), p_lat.median(), "ms"),
                format!(
                    "p99 {}",
                    pair(s_lat.percentile(99.0), p_lat.percentile(99.0), "ms")
                ),
            ),
            Row::info(
                format!(
                    "host CPU per change at {} changes/s: SQLite / PostgreSQL",
                    args.rate
                ),
                pair(sqlite.latency.cpu.host, postgres.latency.cpu.host, "ms"),
                server_cpu(&postgres.latency.cpu),
            ),
            Row::info(
                "CPU idle, host: SQLite / PostgreSQL",
                pair(sqlite.idle.host, postgres.idle.host, "ms/s"),
                postgres.idle.database.map_or_else(
                    || "server CPU not measured (not on this machine)".into(),
                    |ms| format!("+ PostgreSQL server {} ms/s", short(ms)),
                ),
            ),
            Row::judged(
                "changes not landed / creates written twice: SQLite; PostgreSQL",
                format!(
                    "{}; {}",
                    lost(&sqlite.latency.outcome, &s.outcome),
                    lost(&postgres.latency.outcome, &p.outcome)
                ),
                String::new(),
                "0 / 0",
                clean,
            ),
        ],
    };
    figure.save("8-backends")?;
    Ok(figure)
}
