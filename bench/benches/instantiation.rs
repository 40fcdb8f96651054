//! Figure 2, instantiation: what a fresh instance of the default component costs with the
//! pooling allocator (the host's choice) and with on-demand allocation (its fallback), alone
//! (`MappingRuntime::instantiate`: store, sandbox, limits, instantiate from the `InstancePre`,
//! then drop) and with the call of one record (`MappingRuntime::call`).
//!
//! `cargo bench -p cosell-bench --bench instantiation`; writes
//! `target/bench-results/instantiation.json`.

mod support;

use anyhow::{Context as _, Result};
use cosell::runtime::{AllocatorKind, Limits, MappingRuntime};
use cosell_bench::results::{FigureResults, Row};
use criterion::BenchmarkId;
use std::hint::black_box;
use std::time::SystemTime;
use support::{Fixtures, micros};

const GROUP: &str = "instantiation";
/// The record of the "and call" rows (4.1 KB referral + the 2.6 KB opportunity it updates).
const CASE: &str = "referral-accepted";
const ALLOCATORS: [(AllocatorKind, &str); 2] = [
    (AllocatorKind::Pooling, "pooling"),
    (AllocatorKind::OnDemand, "on-demand"),
];
const MEASURES: [(&str, &str); 2] = [
    ("instantiate", "instantiate (store + instance, no call)"),
    ("instantiate_and_call", "instantiate and map one record"),
];

fn main() -> Result<()> {
    let started = SystemTime::now();
    let fixtures = Fixtures::load()?;
    let case = fixtures.case(CASE)?;
    let call = fixtures.call(case);
    let mut criterion = support::criterion();
    let clock = support::Clock::from_env().name();
    let mut group = criterion.benchmark_group(GROUP);
    for (allocator, slug) in ALLOCATORS {
        let runtime = MappingRuntime::with_allocator(Limits::default(), allocator)
            .with_context(|| format!("a runtime with the {slug} allocator"))?;
        let component = support::load_component(&runtime, case.direction)?;
        // Every sample must be a successful instantiation, not a fast failure.
        runtime.instantiate(&component, &call)?;
        runtime.call(&component, &call).result?;

        group.bench_function(BenchmarkId::new(slug, "instantiate"), |b| {
            b.iter(|| runtime.instantiate(black_box(&component), black_box(&call)))
        });
        group.bench_function(BenchmarkId::new(slug, "instantiate_and_call"), |b| {
            b.iter(|| runtime.call(black_box(&component), black_box(&call)))
        });
    }
    group.finish();
    criterion.final_summary();

    let mut rows = Vec::new();
    for (measure, description) in MEASURES {
        for (_, slug) in ALLOCATORS {
            if let Some(samples) = support::samples(GROUP, &format!("{slug}/{measure}"), started)? {
                rows.push(Row::info(
                    format!("{description}, {slug}"),
                    micros(samples.median()),
                    samples.iqr_text("µs"),
                ));
            }
        }
    }
    // A filtered run (or criterion's test mode) must not replace the figure with part of it.
    if rows.len() < ALLOCATORS.len() * MEASURES.len() {
        println!("not every bench ran (test mode or a filter): the figure is not saved");
        return Ok(());
    }
    let figure = FigureResults {
        figure: 2,
        title: "Instantiation".into(),
        method: format!(
            "criterion, {clock}; default referral_to_opportunity component under \
             Limits::default(); \
             each instance dropped inside the timing (as after every record); the call maps \
             {CASE}; median µs over 60 samples, with IQR"
        ),
        rows,
    };
    let path = figure.save("instantiation")?;
    println!("saved {}", path.display());
    Ok(())
}
