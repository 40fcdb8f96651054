//! Figure 7b, memory of one instance of the default mapping: the linear memory a call uses
//! (`CallStats::peak_memory_bytes`, what the memory cap is checked against) and what a live
//! instance really costs the process: many instances are held at once, and the growth of
//! the resident set (VmRSS) and of the proportional set size (PSS, which counts a page shared
//! between instances, such as a copy-on-write data image, once) is divided by their number.
//! Measured with both allocators, right after instantiation and after each instance has mapped
//! one record. Not a timing, so not criterion: a plain `harness = false` bench.
//!
//! `cargo bench -p cosell-bench --bench instance_memory`; writes
//! `target/bench-results/instance-memory.json`.

mod support;

use anyhow::{Context as _, Result, ensure};
use cosell::runtime::{AllocatorKind, Limits, LiveInstance, MappingRuntime};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::{Summary, short};
use support::Fixtures;

/// The record each held instance maps (4.1 KB referral + the 2.6 KB opportunity it updates).
const CASE: &str = "referral-accepted";
/// Instances held at once with on-demand allocation; the pooling allocator holds as many as
/// its pool has slots (`MappingRuntime::max_concurrent_calls`, 64), the host's real ceiling.
const ON_DEMAND_INSTANCES: usize = 1000;
/// Rounds per allocator, after one warm-up round (allocator caches, lazily mapped code).
const ROUNDS: usize = 5;

/// The process's memory now, in KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: f64,
    pss_kib: f64,
}

impl Memory {
    fn now() -> Result<Self> {
        Ok(Self {
            rss_kib: proc_field("/proc/self/status", "VmRSS:")?,
            pss_kib: proc_field("/proc/self/smaps_rollup", "Pss:")?,
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

/// Per-instance growth (KiB) of RSS and PSS in each round: once instantiated, once called.
#[derive(Default)]
struct Growth {
    instantiated_rss: Vec<f64>,
    instantiated_pss: Vec<f64>,
    called_rss: Vec<f64>,
    called_pss: Vec<f64>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--list") {
        return Ok(()); // a listing of bench functions: there are none to list
    }
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) this is a quick check
    // that the bench still runs, with a few instances and nothing saved.
    let measuring = args.iter().any(|arg| arg == "--bench");
    let rounds = if measuring { ROUNDS } else { 1 };
    let fixtures = Fixtures::load()?;
    let case = fixtures.case(CASE)?;
    let call = fixtures.call(case);
    let mut rows = Vec::new();
    let mut linear_rows = None;

    for (allocator, slug) in [
        (AllocatorKind::OnDemand, "on-demand"),
        (AllocatorKind::Pooling, "pooling"),
    ] {
        let runtime = MappingRuntime::with_allocator(Limits::default(), allocator)
            .with_context(|| format!("a runtime with the {slug} allocator"))?;
        let component = support::load_component(&runtime, case.direction)?;
        let held = match allocator {
            _ if !measuring => 4,
            AllocatorKind::OnDemand => ON_DEMAND_INSTANCES,
            AllocatorKind::Pooling => runtime.max_concurrent_calls(),
        };

        if linear_rows.is_none() {
            let fresh = runtime.instantiate(&component, &call)?;
            let report = runtime.call(&component, &call);
            report.result?;
            linear_rows = Some([
                Row::info(
                    "linear memory of a fresh instance",
                    kib(fresh.peak_memory_bytes() as f64 / 1024.0),
                    "",
                ),
                Row::info(
                    format!("linear memory peak of one call ({CASE})"),
                    kib(report.stats.peak_memory_bytes as f64 / 1024.0),
                    format!(
                        "cap {}",
                        kib(Limits::default().memory_bytes as f64 / 1024.0)
                    ),
                ),
            ]);
        }

        let mut growth = Growth::default();
        for round in 0..=rounds {
            let before = Memory::now()?;
            let mut instances: Vec<LiveInstance> = (0..held)
                .map(|_| runtime.instantiate(&component, &call))
                .collect::<Result<_, _>>()
                .with_context(|| format!("holding {held} {slug} instances"))?;
            let instantiated = Memory::now()?;
            for instance in &mut instances {
                instance.call(&component, &call)?;
            }
            let called = Memory::now()?;
            drop(instances);
            if round == 0 {
                continue; // warm-up
            }
            let per = |after: f64, before: f64| (after - before) / held as f64;
            growth
                .instantiated_rss
                .push(per(instantiated.rss_kib, before.rss_kib));
            growth
                .instantiated_pss
                .push(per(instantiated.pss_kib, before.pss_kib));
            growth.called_rss.push(per(called.rss_kib, before.rss_kib));
            growth.called_pss.push(per(called.pss_kib, before.pss_kib));
        }
        ensure!(!growth.called_rss.is_empty(), "no rounds measured");
        for (measure, samples) in [
            ("RSS per live instance", growth.instantiated_rss),
            ("PSS per live instance", growth.instantiated_pss),
            ("RSS per live instance after one call", growth.called_rss),
            ("PSS per live instance after one call", growth.called_pss),
        ] {
            let summary = Summary::new(samples);
            rows.push(Row::info(
                format!("{measure}, {slug} ({held} held)"),
                kib(summary.median()),
                summary.iqr_text("KiB"),
            ));
        }
    }
    let mut all = Vec::from(linear_rows.context("no runtime was measured")?);
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
            "referral_to_opportunity under Limits::default(); live instances held at once \
             ({ON_DEMAND_INSTANCES} on-demand, the pool's {} slots pooling), growth of VmRSS \
             (/proc/self/status) and Pss (/proc/self/smaps_rollup) divided by their number, \
             right after instantiation and after each mapped {CASE}; median of {ROUNDS} rounds \
             after a warm-up round, with IQR",
            cosell::runtime::engine::POOL_INSTANCES
        ),
        rows: all,
    };
    let path = figure.save("instance-memory")?;
    println!("saved {}", path.display());
    Ok(())
}

/// `123 KiB`.
fn kib(value: f64) -> String {
    format!("{} KiB", short(value))
}
