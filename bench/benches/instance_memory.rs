//! Figure 7b, memory of one instance of the default mapping: the linear memory a call uses
//! (`CallStats::peak_memory_bytes`, what the memory cap is checked against) and what a live
//! instance really costs the process: many instances are held at once, and the growth of
//! the resident set (VmRSS) and of the proportional set size (PSS, which counts a page shared
//! between instances, such as a copy-on-write data image, once) is divided by their number.
//! Measured with both allocators, right after instantiation and after each instance has mapped
//! one record. Not a timing, so not criterion: a plain `harness = false` bench.
//!
//! Every round runs in a fresh child process (this bench re-executed with `--child`): memory
//! freed by an earlier round stays resident (malloc keeps it, warm pool slots keep their
//! pages), so a second round in the same process would see almost no growth.
//!
//! `cargo bench -p cosell-bench --bench instance_memory`; writes
//! `target/bench-results/instance-memory.json`.

mod support;

use anyhow::{Context as _, Result, bail, ensure};
use cosell::runtime::{AllocatorKind, Limits, LiveInstance, MappingRuntime};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::{Summary, short};
use serde::{Deserialize, Serialize};
use std::process::Command;
use support::Fixtures;

/// The record each held instance maps (4.1 KB referral + the 2.6 KB opportunity it updates).
const CASE: &str = "referral-accepted";
/// Instances held at once with on-demand allocation; the pooling allocator holds as many as
/// its pool has slots (`MappingRuntime::max_concurrent_calls`, 64), the host's real ceiling.
const ON_DEMAND_INSTANCES: usize = 1000;
/// Rounds (child processes) per allocator.
const ROUNDS: usize = 5;
const ALLOCATORS: [(AllocatorKind, &str); 2] = [
    (AllocatorKind::OnDemand, "on-demand"),
    (AllocatorKind::Pooling, "pooling"),
];

/// What one child process measured, per held instance (KiB) unless said otherwise.
#[derive(Debug, Serialize, Deserialize)]
struct Round {
    held: usize,
    instantiated_rss: f64,
    instantiated_pss: f64,
    called_rss: f64,
    called_pss: f64,
    /// Linear memory of a fresh instance, bytes.
    fresh_linear_bytes: usize,
    /// Peak linear memory of one call, bytes.
    call_peak_linear_bytes: usize,
}

/// The process's memory now, in KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: f64,
    pss: f64,
}

impl Memory {
    fn now() -> Result<Self> {
        Ok(Self {
            rss: proc_field("/proc/self/status", "VmRSS:")?,
            pss: proc_field("/proc/self/smaps_rollup", "Pss:")?,
        })
    }
}

/// The value in kB of the line starting with `key` in a /proc file.
fn proc_field(path: &str, key: &str) -> Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let line = text
        .lines()
        .find(|line| line.starts_with(key))
        .with_context(|| format!("{path} has no `{key}` line (not Linux?)"))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("reading `{line}` in {path}"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--list") {
        return Ok(()); // a listing of bench functions: there are none to list
    }
    if let Some(at) = args.iter().position(|arg| arg == "--child") {
        let (Some(slug), Some(held)) = (args.get(at + 1), args.get(at + 2)) else {
            bail!("usage: instance_memory --child <allocator> <instances>");
        };
        let round = child(allocator(slug)?, held.parse().context("instances")?)?;
        println!("{}", serde_json::to_string(&round)?);
        return Ok(());
    }
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) this is a quick check
    // that the bench still runs, with a few instances and nothing saved.
    let measuring = args.iter().any(|arg| arg == "--bench");
    let rounds = if measuring { ROUNDS } else { 1 };

    let mut linear = None;
    let mut rows = Vec::new();
    for (kind, slug) in ALLOCATORS {
        let held = match kind {
            _ if !measuring => 4,
            AllocatorKind::OnDemand => ON_DEMAND_INSTANCES,
            AllocatorKind::Pooling => cosell::runtime::engine::POOL_INSTANCES as usize,
        };
        let results = (0..rounds)
            .map(|_| run_child(slug, held))
            .collect::<Result<Vec<_>>>()?;
        let first = &results[0];
        linear.get_or_insert((first.fresh_linear_bytes, first.call_peak_linear_bytes));
        let column = |pick: fn(&Round) -> f64| Summary::new(results.iter().map(pick).collect());
        for (measure, summary) in [
            ("RSS per live instance", column(|r| r.instantiated_rss)),
            ("PSS per live instance", column(|r| r.instantiated_pss)),
            ("RSS per instance after one call", column(|r| r.called_rss)),
            ("PSS per instance after one call", column(|r| r.called_pss)),
        ] {
            rows.push(Row::info(
                format!("{measure}, {slug} ({held} held)"),
                kib(summary.median()),
                summary.iqr_text("KiB"),
            ));
        }
    }
    let (fresh, peak) = linear.context("no allocator was measured")?;
    let mut all = vec![
        Row::info(
            "linear memory of a fresh instance",
            kib(fresh as f64 / 1024.0),
            "",
        ),
        Row::info(
            format!("linear memory peak of one call ({CASE})"),
            kib(peak as f64 / 1024.0),
            format!(
                "cap {}",
                kib(Limits::default().memory_bytes as f64 / 1024.0)
            ),
        ),
    ];
    all.extend(rows);
    for row in &all {
        println!("{:<60} {:>12}  {}", row.measure, row.value, row.spread);
    }
    if !measuring {
        println!("test mode (no --bench): nothing saved");
        return Ok(());
    }

    let figure = FigureResults {
        figure: 7,
        title: "Memory per instance of the default mapping".into(),
        method: format!(
            "referral_to_opportunity under Limits::default(); in a fresh process per round, \
             live instances held at once ({ON_DEMAND_INSTANCES} on-demand, the pool's {} \
             slots pooling), growth of VmRSS (/proc/self/status) and Pss \
             (/proc/self/smaps_rollup) divided by their number, right after instantiation and \
             after each mapped {CASE}; median of {ROUNDS} rounds, with IQR",
            cosell::runtime::engine::POOL_INSTANCES
        ),
        rows: all,
    };
    let path = figure.save("instance-memory")?;
    println!("saved {}", path.display());
    Ok(())
}

fn allocator(slug: &str) -> Result<AllocatorKind> {
    match ALLOCATORS.iter().find(|(_, s)| *s == slug) {
        Some((kind, _)) => Ok(*kind),
        None => bail!("unknown allocator `{slug}` (on-demand or pooling)"),
    }
}

/// Runs one round in a fresh process and reads its result.
fn run_child(slug: &str, held: usize) -> Result<Round> {
    let exe = std::env::current_exe().context("finding this bench's executable")?;
    let output = Command::new(&exe)
        .args(["--child", slug, &held.to_string()])
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    ensure!(
        output.status.success(),
        "the {slug} round failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the {slug} round printed `{stdout}`"))
}

/// One round, in this (fresh) process: one warm-up call, so code and the runtime's own
/// structures are resident before measuring, then `held` instances.
fn child(kind: AllocatorKind, held: usize) -> Result<Round> {
    let fixtures = Fixtures::load()?;
    let case = fixtures.case(CASE)?;
    let call = fixtures.call(case);
    let runtime = MappingRuntime::with_allocator(Limits::default(), kind)?;
    let component = support::load_component(&runtime, case.direction)?;
    let fresh_linear_bytes = runtime.instantiate(&component, &call)?.peak_memory_bytes();
    let report = runtime.call(&component, &call);
    report.result?;

    let before = Memory::now()?;
    let mut instances: Vec<LiveInstance> = (0..held)
        .map(|_| runtime.instantiate(&component, &call))
        .collect::<Result<_, _>>()
        .with_context(|| format!("holding {held} instances"))?;
    let instantiated = Memory::now()?;
    for instance in &mut instances {
        instance.call(&component, &call)?;
    }
    let called = Memory::now()?;
    let per = |after: f64, before: f64| (after - before) / held as f64;
    Ok(Round {
        held,
        instantiated_rss: per(instantiated.rss, before.rss),
        instantiated_pss: per(instantiated.pss, before.pss),
        called_rss: per(called.rss, before.rss),
        called_pss: per(called.pss, before.pss),
        fresh_linear_bytes,
        call_peak_linear_bytes: report.stats.peak_memory_bytes,
    })
}

/// `123 KiB`.
fn kib(value: f64) -> String {
    format!("{} KiB", short(value))
}
