//! Figure 6, bulk backfill: referrals written into the Dataverse emulator as opportunities by
//! `cosell backfill`'s engine (`cosell::sync::backfill`), with the emulator's service
//! protection limits at their documented values (6,000 requests and 20 minutes of execution
//! time per 300 s sliding window, 52 concurrent requests, per user), in each write mode side by
//! side: `CreateMultiple` requests (bulk), `$batch` requests, and one request per referral.
//!
//! The referrals are the Partner Center emulator's realistic demo referrals (a mix of
//! directions and states, a few dozen customers), handed to the engine in memory: this figure
//! is the Dataverse side (listing them from Partner Center is a paged read, not what the quota
//! limits). The share of the quota is what the run used of the most any client could have
//! used in the run's time: a sliding window of length W admits at most one window's quota at
//! once and then one more per W, so over T seconds at most `quota × (1 + T / W)` (requests
//! against 6,000 per 300 s, execution time as the emulator charges it against 20 minutes per
//! 300 s, but at most 52 requests executing at once). The quota that binds is the one with the
//! larger share, and each mode is judged on it: "≥ 90% of the binding quota".
//!
//! How many records: a run bound by a sliding window proceeds in bursts (a window's quota,
//! then a wait until it slides), so a run that ends just after a burst begins measures the
//! wait, not the client. By default each mode first backfills a small calibration set on a
//! fresh emulator to learn what one record costs of each quota, then runs 1.95 windows' worth
//! of its binding quota: two bursts, the second ending short of the next wait.

use super::env::{BenchEnv, EnvOptions};
use super::procfs::cpu_seconds;
use anyhow::{Context as _, Result, bail};
use cosell::config::HostConfig;
use cosell::sync::backfill::{
    Backfill, BackfillReport, ClosedReferrals, Mode, Options, referrals_from,
};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::short;
use cosell_emulators::dataverse::{DataverseConfig, ServiceProtectionLimits};
use std::time::{Duration, Instant};

/// How the backfill figure is driven.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// Referrals backfilled with `$batch`; 0: 1.95 windows' worth of the binding quota, from
    /// a calibration run (see the module doc).
    #[arg(long, default_value_t = 0)]
    pub records: usize,
    /// Requests per `$batch`.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// `$batch` requests (or per-record requests) in flight (the host's Dataverse client allows
    /// 16 by default, `dataverse.max_concurrency`).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Referrals backfilled with `CreateMultiple` (bulk mode, `--batch-size` opportunities a
    /// request); 0: 1.95 windows' worth of the binding quota, from a calibration run.
    #[arg(long, default_value_t = 0)]
    pub bulk_records: usize,
    /// Referrals backfilled one request each; 0: 1.95 windows' worth of the binding quota, from
    /// a calibration run (at the documented 6,000 requests per 300 s and ~2 requests per
    /// referral with its lookups, about 5,700 referrals in about five minutes).
    #[arg(long, default_value_t = 0)]
    pub per_record_records: usize,
}

/// What one mode achieved.
struct ModeRun {
    report: BackfillReport,
    elapsed: Duration,
    admitted: u64,
    execution_ms: u64,
    early: u64,
    /// CPU time of this process (the backfill engine and both emulators) during the run.
    cpu_seconds: f64,
}

impl ModeRun {
    fn records_per_second(&self) -> f64 {
        (self.report.created + self.report.already_there) as f64 / self.elapsed.as_secs_f64()
    }

    /// Shares (0–1) of the request and execution-time quotas used over the run's windows, at
    /// the limits the emulator runs with.
    fn quota_shares(&self) -> (f64, f64) {
        let limits = DataverseConfig::default().limits;
        let window = limits.window.num_milliseconds() as f64 / 1000.0;
        let seconds = self.elapsed.as_secs_f64();
        // The most a sliding window admits in `seconds` (see the module doc).
        let windows = 1.0 + seconds / window;
        let requests_allowed = limits.requests as f64 * windows;
        let execution_allowed_ms = (limits.execution_time.num_milliseconds() as f64 * windows)
            .min(limits.concurrent as f64 * seconds * 1000.0);
        (
            self.admitted as f64 / requests_allowed,
            self.execution_ms as f64 / execution_allowed_ms,
        )
    }
}

async fn run_mode(referrals: Vec<serde_json::Value>, mode: Mode) -> Result<ModeRun> {
    let env = BenchEnv::start(EnvOptions {
        extra: String::new(),
        // The documented limits (DataverseConfig's defaults, execution-time charge included).
        dataverse: DataverseConfig::default(),
        register_webhooks: false,
        ..EnvOptions::default()
    })
    .await?;
    let config = HostConfig::load(&env.config_path)?;
    let backfill = Backfill::from_config(&config)
        .await
        .context("setting up the backfill")?;
    let before = env.dv.service_protection();
    let options = Options {
        mode,
        closed: ClosedReferrals::Import,
        dry_run: false,
    };
    let started = Instant::now();
    let cpu_before = cpu_seconds(std::process::id())?;
    let mut last = Instant::now();
    let report = backfill
        .run(referrals_from(referrals), &options, |report| {
            if last.elapsed() > Duration::from_secs(5) {
                last = Instant::now();
                eprintln!(
                    "backfill: {} referrals in {:.0} s, {} requests, {} throttled",
                    report.processed(),
                    report.elapsed.as_secs_f64(),
                    report.requests,
                    report.throttled
                );
            }
        })
        .await?;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(std::process::id())? - cpu_before;
    if !report.failed.is_empty() || report.source_error.is_some() {
        bail!(
            "the backfill failed for {} referrals (first: {:?})",
            report.failed.len(),
            report.failed.first()
        );
    }
    let after = env.dv.service_protection();
    Ok(ModeRun {
        report,
        elapsed,
        admitted: after.admitted - before.admitted,
        execution_ms: after.execution_ms - before.execution_ms,
        early: after.early_requests - before.early_requests,
        cpu_seconds: cpu,
    })
}

/// The most records per second one request per record can sustain under the request quota,
/// at the requests per record `run` needed (lookups included).
fn sustained_per_record(run: &ModeRun) -> f64 {
    let limits: ServiceProtectionLimits = DataverseConfig::default().limits;
    let per_second = limits.requests as f64 / limits.window.num_seconds() as f64;
    let requests_per_record = run.admitted as f64 / run.report.processed().max(1) as f64;
    per_second / requests_per_record
}

/// Referrals in a calibration run: few enough to stay far inside either quota.
const CALIBRATION_RECORDS: usize = 1_000;

/// How many records make 1.95 windows' worth of the quota that binds `mode`, from what one
/// record cost in a calibration run of that mode (see the module doc).
async fn records_for_two_bursts(referrals: &[serde_json::Value], mode: Mode) -> Result<usize> {
    let calibration = run_mode(
        referrals
            .iter()
            .take(CALIBRATION_RECORDS)
            .cloned()
            .collect(),
        mode,
    )
    .await?;
    let records = calibration.report.processed().max(1) as f64;
    let limits = DataverseConfig::default().limits;
    let by_requests = limits.requests as f64 / (calibration.admitted as f64 / records);
    let by_execution = limits.execution_time.num_milliseconds() as f64
        / (calibration.execution_ms.max(1) as f64 / records);
    let per_window = by_requests.min(by_execution);
    eprintln!(
        "backfill: calibrated {mode:?}: a window's quota is {per_window:.0} records ({} binds)",
        if by_requests <= by_execution {
            "the request count"
        } else {
            "the execution time"
        }
    );
    Ok((1.95 * per_window) as usize)
}

/// Runs figure 6 and saves it.
pub async fn run(args: &BackfillArgs) -> Result<FigureResults> {
    // Enough for any calibrated run at the documented limits (a few windows' worth).
    let made = args
        .records
        .max(args.per_record_records)
        .max(args.bulk_records)
        .max(100_000);
    eprintln!("backfill: making {made} demo referrals…");
    let source = cosell_emulators::partner_center::PartnerCenter::new(Default::default());
    source.seed_demo_data(made, 6);
    let all = source.referrals();
    drop(source);
    let batch_mode = Mode::Batch {
        size: args.batch_size,
        concurrency: args.concurrency,
    };
    let bulk_mode = Mode::Bulk {
        size: args.batch_size,
        concurrency: args.concurrency,
    };
    let single_mode = Mode::PerRecord {
        concurrency: args.concurrency,
    };
    let bulk_records = match args.bulk_records {
        0 => records_for_two_bursts(&all, bulk_mode).await?,
        n => n,
    };
    let batch_records = match args.records {
        0 => records_for_two_bursts(&all, batch_mode).await?,
        n => n,
    };
    let single_records = match args.per_record_records {
        0 => records_for_two_bursts(&all, single_mode).await?,
        n => n,
    };
    let first = |n: usize| all.iter().take(n).cloned().collect::<Vec<_>>();

    eprintln!(
        "backfill: {} referrals with $batch of {}…",
        batch_records, args.batch_size
    );
    let batch = run_mode(first(batch_records), batch_mode).await?;
    eprintln!(
        "backfill: {} referrals with CreateMultiple of {}…",
        bulk_records, args.batch_size
    );
    let bulk = run_mode(first(bulk_records), bulk_mode).await?;
    if bulk.report.bulk_created == 0 || bulk.report.bulk_refused.is_some() {
        bail!(
            "bulk mode did not write by CreateMultiple ({} created so, refused: {:?})",
            bulk.report.bulk_created,
            bulk.report.bulk_refused
        );
    }
    eprintln!("backfill: {single_records} referrals one request each…");
    let single = run_mode(first(single_records), single_mode).await?;

    let row = |name: &str, run: &ModeRun| {
        let (requests, execution) = run.quota_shares();
        let (binding, used) = if requests >= execution {
            ("requests", requests)
        } else {
            ("execution time", execution)
        };
        let value = format!("{} records/s", short(run.records_per_second()));
        let spread = format!(
            "{} created, {} skipped, {} refused in {:.0} s; {} requests ({} throttled, {} early); quota used: requests {:.0}%, execution time {:.0}% (binding: {binding})",
            run.report.created,
            run.report.skipped_total(),
            run.report.refused.len(),
            run.elapsed.as_secs_f64(),
            run.admitted,
            run.report.throttled,
            run.early,
            requests * 100.0,
            execution * 100.0
        );
        Row::judged(
            name,
            value,
            spread,
            "≥ 90% of the binding quota",
            used >= 0.9,
        )
    };
    let ratio = batch.records_per_second() / sustained_per_record(&single);
    let figure = FigureResults {
        figure: 6,
        title: "Bulk backfill into Dataverse".into(),
        method: format!(
            "cosell's backfill engine, default mapping, Dataverse emulator at the documented service protection limits (each row charged its execution time whatever carries it); {} demo referrals with CreateMultiple of {size} ({} in flight; closed referrals' create and close in $batch change sets), {} with $batch of {size} ({} in flight), {} one request each ({} in flight); each mode on a fresh emulator",
            bulk.report.processed(),
            args.concurrency,
            batch.report.processed(),
            args.concurrency,
            single.report.processed(),
            args.concurrency,
            size = args.batch_size,
        ),
        rows: vec![
            row("CreateMultiple (bulk)", &bulk),
            row("$batch", &batch),
            row("one request per record", &single),
            Row::info(
                "one request per record, sustained at the quota",
                format!("{} records/s", short(sustained_per_record(&single))),
                format!(
                    "{} requests per {} s ÷ {} requests per record; 100,000 in {:.1} h",
                    DataverseConfig::default().limits.requests,
                    DataverseConfig::default().limits.window.num_seconds(),
                    short(single.admitted as f64 / single.report.processed().max(1) as f64),
                    100_000.0 / sustained_per_record(&single) / 3600.0
                ),
            ),
            Row::info(
                "$batch: CPU per record (engine + emulators, one process)",
                format!(
                    "{} ms",
                    short(batch.cpu_seconds * 1000.0 / batch.report.processed().max(1) as f64)
                ),
                format!(
                    "{} of 2 cores busy; at 2 cores at most {} records/s",
                    short(batch.cpu_seconds / batch.elapsed.as_secs_f64()),
                    short(2.0 * batch.report.processed() as f64 / batch.cpu_seconds.max(1e-9))
                ),
            ),
            Row::info(
                "CreateMultiple: CPU per record (engine + emulators, one process)",
                format!(
                    "{} ms",
                    short(bulk.cpu_seconds * 1000.0 / bulk.report.processed().max(1) as f64)
                ),
                format!(
                    "{} of {} created by CreateMultiple; {} requests against $batch's {}",
                    bulk.report.bulk_created, bulk.report.created, bulk.admitted, batch.admitted
                ),
            ),
            Row::info(
                "CreateMultiple / $batch",
                format!(
                    "{}×",
                    short(bulk.records_per_second() / batch.records_per_second())
                ),
                String::new(),
            ),
            Row::info(
                "$batch / per record (sustained at the quota)",
                format!("{}×", short(ratio)),
                String::new(),
            ),
        ],
    };
    figure.save("6-backfill")?;
    Ok(figure)
}
