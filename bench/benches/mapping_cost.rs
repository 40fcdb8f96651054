//! Figure 1, mapping cost per record: the default mapping run natively (the `mapping-rules`
//! library) and as the default WebAssembly component through cosell's own call path
//! (`MappingRuntime::call`: a fresh store from the `InstancePre`, the sandbox, fuel, epoch
//! deadline and memory cap of the production limits, the pooling allocator, output check), side
//! by side in one run, on recorded 2–4 KB records in both directions; and, to show what the
//! instantiation costs, the guest's call on an instance made outside the timing.
//!
//! `cargo bench -p cosell-bench --bench mapping_cost`; writes
//! `target/bench-results/mapping-cost.json`.

mod support;

use anyhow::{Result, ensure};
use cosell::runtime::{Limits, MappingRuntime};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::{Summary, short};
use criterion::{BatchSize, BenchmarkId};
use std::hint::black_box;
use std::time::SystemTime;
use support::{Fixtures, micros};

/// The recorded cases measured: two referrals (one with the opportunity it updates) and two
/// opportunities (one with the referral it updates), 1.7–4.1 KB of input each.
const CASES: [&str; 4] = [
    "referral-accepted",
    "referral-sample",
    "opportunity-sample",
    "opportunity-won",
];

const GROUP: &str = "mapping_cost";
/// WASM may cost at most this many times the native mapping (issue 6)...
const MAX_RATIO: f64 = 2.0;
/// ...and at most this many µs per record.
const MAX_WASM_US: f64 = 25.0;

fn main() -> Result<()> {
    let started = SystemTime::now();
    let fixtures = Fixtures::load()?;
    let runtime = MappingRuntime::new(Limits::default())?;
    let mut criterion = support::criterion();
    let clock = support::Clock::from_env().name();
    let mut group = criterion.benchmark_group(GROUP);
    for name in CASES {
        let case = fixtures.case(name)?;
        let call = fixtures.call(case);
        let component = support::load_component(&runtime, case.direction)?;
        let context = support::native_context(&call, &component.version);

        // Both sides must do the same work, or the ratio means nothing.
        let native = support::native_map(&context, &call);
        let wasm = runtime.call(&component, &call).result;
        ensure!(
            matches!((&native, &wasm), (Ok(n), Ok(w)) if n == w),
            "case {name}: the native and the WASM mapping disagree ({native:?} vs {wasm:?})"
        );

        group.bench_function(BenchmarkId::new("native", name), |b| {
            b.iter(|| support::native_map(black_box(&context), black_box(&call)))
        });
        group.bench_function(BenchmarkId::new("wasm", name), |b| {
            b.iter(|| runtime.call(black_box(&component), black_box(&call)))
        });
        // The guest's own work: the same call on an instance made (and dropped) outside the
        // timing, which shows how much of the WASM cost is instantiation.
        group.bench_function(BenchmarkId::new("wasm_ready_instance", name), |b| {
            b.iter_batched(
                || {
                    runtime
                        .instantiate(&component, &call)
                        .expect("instantiates")
                },
                |mut instance| {
                    black_box(instance.call(&component, black_box(&call))).ok();
                    instance
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    criterion.final_summary();

    let mut rows = Vec::new();
    for name in CASES {
        let case = fixtures.case(name)?;
        let native = support::samples(GROUP, &format!("native/{name}"), started)?;
        let wasm = support::samples(GROUP, &format!("wasm/{name}"), started)?;
        let ready = support::samples(GROUP, &format!("wasm_ready_instance/{name}"), started)?;
        let (Some(native), Some(wasm), Some(ready)) = (native, wasm, ready) else {
            continue;
        };
        let label = format!(
            "{name} ({:.1} KB{})",
            case.input.len() as f64 / 1000.0,
            match &case.current {
                Some(current) => format!(" + {:.1} KB current", current.len() as f64 / 1000.0),
                None => String::new(),
            }
        );
        rows.extend(case_rows(&label, &native, &wasm));
        rows.push(Row::info(
            format!("{label}: WASM on a ready instance (no instantiation)"),
            micros(ready.median()),
            format!(
                "{}; {}× native",
                ready.iqr_text("µs"),
                short(ready.median() / native.median())
            ),
        ));
    }
    // A filtered run (or criterion's test mode) must not replace the figure with part of it.
    if rows.len() < CASES.len() * 4 {
        println!("not every bench ran (test mode or a filter): the figure is not saved");
        return Ok(());
    }
    let figure = FigureResults {
        figure: 1,
        title: "Mapping cost per record".into(),
        method: format!(
            "criterion, {clock}; native library and default component side by side in one \
             process; WASM = MappingRuntime::call with Limits::default() and the {:?} \
             allocator (fresh store, sandbox, fuel, epoch deadline, memory cap, output check); \
             ready instance = the same call on an instance made outside the timing; median µs \
             per record over 60 samples, with IQR",
            runtime.allocator()
        ),
        rows,
    };
    let path = figure.save("mapping-cost")?;
    println!("saved {}", path.display());
    Ok(())
}

/// Native, WASM and their ratio for one case, judged against the targets.
fn case_rows(label: &str, native: &Summary, wasm: &Summary) -> [Row; 3] {
    let ratio = wasm.median() / native.median();
    // The ratio's spread from the quartiles: best case (WASM's lower over native's upper) to
    // worst case (WASM's upper over native's lower).
    let ratio_spread = format!(
        "quartiles {}–{}×",
        short(wasm.percentile(25.0) / native.percentile(75.0)),
        short(wasm.percentile(75.0) / native.percentile(25.0))
    );
    [
        Row::info(
            format!("{label}: native"),
            micros(native.median()),
            native.iqr_text("µs"),
        ),
        Row::judged(
            format!("{label}: WASM"),
            micros(wasm.median()),
            wasm.iqr_text("µs"),
            format!("< {MAX_WASM_US} µs"),
            wasm.median() < MAX_WASM_US,
        ),
        Row::judged(
            format!("{label}: WASM / native"),
            format!("{}×", short(ratio)),
            ratio_spread,
            format!("≤ {MAX_RATIO}×"),
            ratio <= MAX_RATIO,
        ),
    ]
}
