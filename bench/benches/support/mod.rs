//! What the in-process benches share: the recorded fixture cases, the default components, the
//! native and the WASM call of one case made exactly as `tests/default_mappings.rs` makes them,
//! criterion's settings for a noisy two-core machine, and reading criterion's samples back as
//! a median and an interquartile range.

#![allow(dead_code)] // Each bench uses its own part of this module.

use anyhow::{Context as _, Result, bail};
use cosell::pipeline::fixtures::load_suite;
use cosell::runtime::{Direction, MappingCall, MappingComponent, MappingRuntime, StepConfig};
use cosell_bench::results::workspace_root;
use cosell_bench::stats::Summary;
use criterion::Criterion;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The recorded cases of `guest-mappings/fixtures/<direction>/<case>/`, with their documents
/// read.
pub struct Fixtures {
    pub cases: Vec<Case>,
}

/// One case: a record, its counterpart if any, the step configuration and the context.
pub struct Case {
    pub name: String,
    pub direction: Direction,
    pub mapping_name: Arc<str>,
    pub event: String,
    pub tenant: String,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub input: String,
    pub current: Option<String>,
    pub config: Arc<StepConfig>,
}

impl Fixtures {
    /// Reads every case of both directions (the format `cosell mapping test --fixtures` runs).
    pub fn load() -> Result<Self> {
        let mut cases = Vec::new();
        for (direction, mapping_name) in [
            (Direction::PartnerCenterToCrm, "referral-to-opportunity"),
            (Direction::CrmToPartnerCenter, "opportunity-to-referral"),
        ] {
            let dir = workspace_root()
                .join("guest-mappings/fixtures")
                .join(direction.to_string());
            for case in load_suite(&dir)? {
                cases.push(Case {
                    name: case.name,
                    direction,
                    mapping_name: mapping_name.into(),
                    event: case.context.event,
                    tenant: case.context.tenant,
                    timestamp: case.context.timestamp,
                    input: case.input,
                    current: case.current,
                    config: Arc::new(case.config),
                });
            }
        }
        Ok(Self { cases })
    }

    /// The case called `name`.
    pub fn case(&self, name: &str) -> Result<&Case> {
        match self.cases.iter().find(|case| case.name == name) {
            Some(case) => Ok(case),
            None => bail!("guest-mappings/fixtures has no case `{name}`"),
        }
    }

    /// The host's call of `case`, as the pipeline makes it.
    pub fn call<'a>(&'a self, case: &'a Case) -> MappingCall<'a> {
        MappingCall {
            mapping_name: case.mapping_name.clone(),
            direction: case.direction,
            event: &case.event,
            tenant: &case.tenant,
            timestamp: case.timestamp,
            input: &case.input,
            current: case.current.as_deref(),
            config: case.config.clone(),
        }
    }
}

/// The context the native library gets: the very strings the host hands the guest.
pub fn native_context(call: &MappingCall<'_>, version: &str) -> mapping_rules::Context {
    mapping_rules::Context {
        direction: match call.direction {
            Direction::PartnerCenterToCrm => mapping_rules::Direction::PartnerCenterToCrm,
            Direction::CrmToPartnerCenter => mapping_rules::Direction::CrmToPartnerCenter,
        },
        event: call.event.to_owned(),
        tenant: call.tenant.to_owned(),
        mapping_name: call.mapping_name.to_string(),
        mapping_version: version.to_owned(),
        timestamp: call
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// The native library's mapping of `call` (the function the component wraps).
pub fn native_map(
    ctx: &mapping_rules::Context,
    call: &MappingCall<'_>,
) -> Result<String, mapping_rules::MappingError> {
    let config: &BTreeMap<String, String> = &call.config;
    match call.direction {
        Direction::PartnerCenterToCrm => {
            mapping_rules::referral_to_opportunity(ctx, call.input, call.current, config)
        }
        Direction::CrmToPartnerCenter => {
            mapping_rules::opportunity_to_referral(ctx, call.input, call.current, config)
        }
    }
}

/// The default component's file for `direction`.
pub fn component_path(direction: Direction) -> PathBuf {
    let name = match direction {
        Direction::PartnerCenterToCrm => "referral_to_opportunity.wasm",
        Direction::CrmToPartnerCenter => "opportunity_to_referral.wasm",
    };
    workspace_root().join("guest-mappings/dist").join(name)
}

/// Loads the default component for `direction` into `runtime`.
pub fn load_component(runtime: &MappingRuntime, direction: Direction) -> Result<MappingComponent> {
    let path = component_path(direction);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (build the guests first: make rust-guests)",
            path.display()
        )
    })?;
    runtime
        .load(&bytes)
        .with_context(|| format!("loading {}", path.display()))
}

/// Where these benches keep criterion's reports, so they can be read back.
pub fn criterion_dir() -> PathBuf {
    cosell_bench::results::results_dir()
        .parent()
        .map(|target| target.join("criterion"))
        .unwrap_or_else(|| workspace_root().join("target/criterion"))
}

/// What the benches time: the benchmark thread's CPU time (user and system, so page faults and
/// system calls count), or wall-clock time with `COSELL_BENCH_CLOCK=wall`.
///
/// CPU time is the default because the machines are shared: time spent descheduled while
/// other work runs is not the cost of a record, and it made wall-clock medians swing by half
/// from one run to the next. It still varies with what shares the caches, hence the spreads.
pub struct Clock {
    wall: bool,
    formatter: WallTime,
}

impl Clock {
    /// The clock `COSELL_BENCH_CLOCK` asks for.
    pub fn from_env() -> Self {
        Self {
            wall: std::env::var("COSELL_BENCH_CLOCK").is_ok_and(|v| v == "wall"),
            formatter: WallTime,
        }
    }

    /// How the benches' method lines name this clock.
    pub fn name(&self) -> &'static str {
        if self.wall {
            "wall-clock time"
        } else {
            "thread CPU time"
        }
    }

    fn now(&self) -> Duration {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        if self.wall {
            return EPOCH.get_or_init(Instant::now).elapsed();
        }
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec to write to; this clock exists on every Linux.
        let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0;
        assert!(!failed, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }
}

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }
    fn end(&self, started: Duration) -> Duration {
        self.now().saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.formatter.formatter()
    }
}

/// Criterion set for short, repeatable runs on a shared machine: enough samples for a median
/// and quartiles, each bench a few seconds, timed with [`Clock`].
pub fn criterion() -> Criterion<Clock> {
    Criterion::default()
        .with_measurement(Clock::from_env())
        .output_directory(&criterion_dir())
        .sample_size(60)
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3))
        .noise_threshold(0.05)
        .configure_from_args()
}

#[derive(Deserialize)]
struct SavedSample {
    iters: Vec<f64>,
    times: Vec<f64>,
}

/// The per-iteration times (µs) of criterion's samples of `group/id`, if this run (started at
/// `since`) measured it: a run filtered to some benches leaves older runs' files in place,
/// which must not be reported as this run's, and criterion's test mode writes none.
pub fn samples(group: &str, id: &str, since: SystemTime) -> Result<Option<Summary>> {
    let path = criterion_dir().join(group).join(id).join("new/sample.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|modified| modified >= since);
    if !fresh {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let sample: SavedSample = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not criterion's sample file", path.display()))?;
    // Nanoseconds per sample over the sample's iteration count → µs per iteration.
    let per_iter = sample
        .iters
        .iter()
        .zip(&sample.times)
        .map(|(iters, ns)| ns / iters / 1000.0)
        .collect();
    Ok(Some(Summary::new(per_iter)))
}

/// `12.3 µs`.
pub fn micros(value: f64) -> String {
    format!("{} µs", cosell_bench::stats::short(value))
}
