//! `cosell backfill`: lists the referrals in Partner Center (oldest first, a page at a time)
//! and creates the opportunities of those not in Dataverse yet (`crate::sync::backfill`),
//! printing a progress line on stderr every few seconds and a summary at the end.

use crate::config::HostConfig;
use crate::sinks::configured::partner_center_client;
use crate::sinks::partner_center::ReferralSink;
use crate::sync::backfill::{Backfill, BackfillReport, ClosedReferrals, Mode, Options};
use anyhow::Result;
use clap::Args;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Referrals per page of the Partner Center list (the page size the reconciliation uses).
const PAGE_SIZE: u32 = 100;

/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Refusals and failures listed one by one in the summary (`--json` lists all).
const LISTED: usize = 20;

/// `cosell backfill`'s arguments.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The host's TOML configuration (the same file as `cosell serve`): its [partner_center],
    /// [dataverse], state database, pipelines and [sync] settings are used.
    #[arg(long, short, env = "COSELL_CONFIG")]
    config: PathBuf,
    /// Read, check and map every referral and count what would be created; write nothing (no
    /// account, contact, opportunity or link).
    #[arg(long)]
    dry_run: bool,
    /// How the opportunities are written: `bulk` (CreateMultiple requests, falling back to
    /// `$batch` where Dataverse refuses them), `batch` (`$batch` requests only) or `per-record`
    /// (one request per referral; slower, for comparison).
    #[arg(long, value_enum, default_value_t = WriteMode::Bulk)]
    write_mode: WriteMode,
    /// Opportunities per CreateMultiple, or requests per `$batch` (1 to 1000; a closed
    /// referral's create and close count two).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Writes in flight at once: bulk or `$batch` requests, or referrals one by one (1 to 52;
    /// dataverse.max_concurrency also bounds every request).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Process at most this many referrals (the oldest first).
    #[arg(long)]
    limit: Option<usize>,
    /// Skip closed referrals (won, lost, declined, expired) instead of creating their
    /// opportunities closed.
    #[arg(long)]
    skip_closed: bool,
    /// Print the report as JSON on stdout (every refusal and failure) instead of the summary.
    #[arg(long)]
    json: bool,
}

/// How `cosell backfill` writes the opportunities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum WriteMode {
    /// CreateMultiple requests (Microsoft's recommendation for throughput), `$batch` where
    /// Dataverse refuses them.
    Bulk,
    /// `$batch` requests of independent creates.
    Batch,
    /// One request per referral.
    PerRecord,
}

impl BackfillArgs {
    fn options(&self) -> Options {
        let (size, concurrency) = (self.batch_size, self.concurrency);
        Options {
            mode: match self.write_mode {
                WriteMode::Bulk => Mode::Bulk { size, concurrency },
                WriteMode::Batch => Mode::Batch { size, concurrency },
                WriteMode::PerRecord => Mode::PerRecord { concurrency },
            },
            closed: if self.skip_closed {
                ClosedReferrals::Skip
            } else {
                ClosedReferrals::Import
            },
            dry_run: self.dry_run,
        }
    }
}

/// Runs the command; exit code 1 when a referral failed or the list could not be read to the
/// end.
pub(super) async fn run(args: BackfillArgs) -> Result<i32> {
    let options = args.options();
    options.validate()?;
    let config = HostConfig::load(&args.config)?;
    if config.partner_center.is_none() {
        anyhow::bail!("[partner_center] is not configured: the referrals are listed from there");
    }
    let mut backfill = Backfill::from_config(&config).await?;
    if let Some(dv) = &config.dataverse
        && args.concurrency > dv.max_concurrency
    {
        eprintln!(
            "note: dataverse.max_concurrency is {}, so at most {} requests run at once",
            dv.max_concurrency, dv.max_concurrency
        );
    }
    let pc = partner_center_client(&config, backfill.store.clone())?;
    backfill.partner_center = Some(ReferralSink::new(pc.clone()));
    let pages = pc.referral_pages(None, Some("createdDateTime asc"), Some(PAGE_SIZE))?;
    let referrals = pages
        .map_err(|e| anyhow::anyhow!("listing the referrals in Partner Center: {e}"))
        .map_ok(|page| stream::iter(page.into_iter().map(Ok::<_, anyhow::Error>)))
        .try_flatten()
        .take(args.limit.unwrap_or(usize::MAX));
    // The first totals are shown at once, then every PROGRESS_EVERY.
    let mut last: Option<Instant> = None;
    let report = backfill
        .run(referrals, &options, |report| {
            if last.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
                last = Some(Instant::now());
                eprintln!("{}", progress_line(report));
            }
        })
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
    }
    Ok(if report.is_complete() { 0 } else { 1 })
}

fn progress_line(report: &BackfillReport) -> String {
    format!(
        "backfill: {} referrals in {:.0} s ({:.0}/s): {} created, {} already there, {} skipped, {} refused, {} failed; {} Dataverse requests, {} throttled",
        report.processed(),
        report.elapsed.as_secs_f64(),
        report.records_per_second(),
        if report.dry_run {
            report.would_create
        } else {
            report.created
        },
        report.already_there,
        report.skipped_total(),
        report.refused.len(),
        report.failed.len(),
        report.requests,
        report.throttled,
    )
}

/// The summary printed at the end.
fn summary(report: &BackfillReport) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "backfill {}: {} referrals in {:.1} s ({:.0}/s)",
        if report.dry_run {
            "dry run (nothing written)"
        } else {
            "done"
        },
        report.processed(),
        report.elapsed.as_secs_f64(),
        report.records_per_second()
    ));
    if report.dry_run {
        line(format!("  would create   {}", report.would_create));
    } else {
        line(format!(
            "  created        {} ({} closed as won or lost)",
            report.created, report.closed
        ));
    }
    line(format!(
        "  already there  {} ({} found without a link and linked)",
        report.already_there, report.adopted
    ));
    line(format!("  skipped        {}", report.skipped_total()));
    for (reason, count) in &report.skipped {
        line(format!("    {count:>6}  {reason}"));
    }
    for (what, records) in [
        ("refused by the mapping", &report.refused),
        ("failed", &report.failed),
    ] {
        line(format!("  {what:<14} {}", records.len()));
        for record in records.iter().take(LISTED) {
            line(format!("    {}: {}", record.referral_id, record.reason));
        }
        if records.len() > LISTED {
            line(format!(
                "    … and {} more (--json lists them all)",
                records.len() - LISTED
            ));
        }
    }
    line(format!(
        "  Dataverse      {} requests, {} answered 429 (waited out)",
        report.requests, report.throttled
    ));
    if report.bulk_created > 0 {
        line(format!(
            "  bulk           {} of the created written by CreateMultiple",
            report.bulk_created
        ));
    }
    if let Some(reason) = &report.bulk_refused {
        line(format!(
            "  bulk refused   Dataverse refused CreateMultiple ({reason}); the rest was written in $batch requests"
        ));
    }
    if let Some(error) = &report.source_error {
        line(format!(
            "  stopped early: {error}; run it again to go on (what was created is skipped)"
        ));
    }
    if !report.failed.is_empty() {
        line("  run it again for the failed ones once their cause is fixed: what was created is skipped".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::backfill::RecordFailure;

    #[test]
    fn the_summary_names_every_outcome_and_lists_failures() {
        let mut report = BackfillReport {
            created: 3,
            closed: 1,
            already_there: 2,
            adopted: 1,
            requests: 4,
            throttled: 1,
            elapsed: Duration::from_secs(2),
            ..BackfillReport::default()
        };
        report.skipped.insert("listed twice".into(), 1);
        report.failed.push(RecordFailure {
            referral_id: "r9".into(),
            reason: "Dataverse rejected the request".into(),
        });
        let text = summary(&report);
        for expected in [
            "7 referrals in 2.0 s (4/s)",
            "created        3 (1 closed",
            "already there  2 (1 found",
            "1  listed twice",
            "failed         1",
            "r9: Dataverse rejected the request",
            "4 requests, 1 answered 429",
            "run it again",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
        }
    }
}
