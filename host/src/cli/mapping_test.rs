//! `cosell mapping test`: run a component on one record, or on every case of a fixtures
//! directory (`--fixtures`, see [`super::mapping_fixtures`]), under the production limits.

use super::DirectionArg;
use crate::config::HostConfig;
use crate::runtime::{
    CallReport, GuestStream, Limits, MappingCall, MappingComponent, MappingRuntime, StepConfig,
};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component (.wasm: a component, or a core module built with wit-bindgen).
    pub component: PathBuf,
    /// The input document (JSON file).
    #[arg(
        long,
        required_unless_present = "fixtures",
        conflicts_with = "fixtures"
    )]
    pub input: Option<PathBuf>,
    /// The current counterpart record on the destination side (JSON file).
    #[arg(long, conflicts_with = "fixtures")]
    pub current: Option<PathBuf>,
    /// A configuration value the step reads with `config.get` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value, conflicts_with = "fixtures")]
    pub config: Vec<(String, String)>,
    /// The sync direction the step is called for (with --fixtures: for the cases whose
    /// context.json names none). Default: partner-center-to-crm.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// The triggering event name passed in the context.
    #[arg(long, default_value = "test", conflicts_with = "fixtures")]
    pub event: String,
    /// The tenant passed in the context.
    #[arg(long, default_value = "test", conflicts_with = "fixtures")]
    pub tenant: String,
    /// The step name passed in the context; with --limits-from, also the configured step
    /// whose limits apply.
    #[arg(long, default_value = "test")]
    pub step: String,
    /// The context timestamp (RFC 3339). Default: now.
    #[arg(long, conflicts_with = "fixtures")]
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
    /// Take the limits from this host configuration instead of the defaults: those of the
    /// step named by --step when it has one (its own `limits` over `[limits]`), else `[limits]`.
    #[arg(long, value_name = "HOST_CONFIG")]
    pub limits_from: Option<PathBuf>,
    /// Run every case of this fixtures directory (one directory per case: input.json,
    /// optional current.json, config.json, context.json, and expected.json or
    /// expected-error.json) and compare each outcome with the expected one. Exits 0 only
    /// when every case passes.
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<PathBuf>,
    /// With --fixtures: rewrite each case's expected file from what the component did.
    #[arg(long, requires = "fixtures")]
    pub update: bool,
    /// With --fixtures: print the results as one JSON document on stdout.
    #[arg(long, requires = "fixtures")]
    pub json: bool,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

fn read_json(path: &Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))?;
    if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        bail!(
            "the {what} file {} is not valid JSON: {err}",
            path.display()
        );
    }
    Ok(text)
}

pub(super) async fn run(args: TestArgs) -> Result<i32> {
    let limits = match &args.limits_from {
        // The limits of the step named `--step` when the configuration has one (its own
        // `limits` over `[limits]`), else `[limits]`.
        Some(path) => HostConfig::load(path)?.step_limits(&args.step),
        None => Limits::default(),
    };
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("reading the component {}", args.component.display()))?;
    if let Some(dir) = args.fixtures.clone() {
        let cases = crate::pipeline::fixtures::load_suite(&dir)?;
        return tokio::task::spawn_blocking(move || {
            super::mapping_fixtures::run_suite(&args, limits, &bytes, cases)
        })
        .await?;
    }
    let input = read_json(args.input.as_deref().expect("required by clap"), "input")?;
    let current = args
        .current
        .as_deref()
        .map(|path| read_json(path, "current"))
        .transpose()?;
    // Compiling and calling block; keep them off the async runtime's threads.
    tokio::task::spawn_blocking(move || test_blocking(args, limits, bytes, input, current)).await?
}

fn test_blocking(
    args: TestArgs,
    limits: Limits,
    bytes: Vec<u8>,
    input: String,
    current: Option<String>,
) -> Result<i32> {
    let (runtime, component, compile_time) = compile(&args.component, limits, &bytes)?;
    let config: StepConfig = args.config.into_iter().collect();
    let report = runtime.call(
        &component,
        &MappingCall {
            mapping_name: Arc::from(args.step.as_str()),
            direction: args.direction.unwrap_or_default().into(),
            event: &args.event,
            tenant: &args.tenant,
            timestamp: args.timestamp.unwrap_or_else(chrono::Utc::now),
            input: &input,
            current: current.as_deref(),
            config: Arc::new(config),
        },
    );
    print_report(&report, &component, &runtime, compile_time);
    match report.result {
        Ok(output) => {
            let value: serde_json::Value = serde_json::from_str(&output)?;
            let pretty = serde_json::to_string_pretty(&value)?;
            match writeln!(std::io::stdout().lock(), "{pretty}") {
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
                _ => Ok(0),
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(1)
        }
    }
}

/// A runtime with `limits` and the component compiled on it, and how long compiling took.
pub(super) fn compile(
    path: &Path,
    limits: Limits,
    bytes: &[u8],
) -> Result<(MappingRuntime, MappingComponent, Duration)> {
    let runtime = MappingRuntime::new(limits)?;
    let started = Instant::now();
    let component = runtime
        .load(bytes)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok((runtime, component, started.elapsed()))
}

fn print_report(
    report: &CallReport,
    component: &MappingComponent,
    runtime: &MappingRuntime,
    compile: Duration,
) {
    let (stats, limits) = (&report.stats, runtime.limits());
    eprintln!("allocator:   {:?}", runtime.allocator());
    eprintln!(
        "component:   {} ({} bytes)",
        component.version, component.size
    );
    eprintln!(
        "fuel used:   {} of {} ({:.1}%)",
        stats.fuel_used,
        limits.fuel,
        stats.fuel_used as f64 * 100.0 / limits.fuel as f64
    );
    eprintln!(
        "peak memory: {:.2} MiB of {:.2} MiB",
        stats.peak_memory_bytes as f64 / 1048576.0,
        limits.memory_bytes as f64 / 1048576.0
    );
    eprintln!(
        "time:        {:.3} ms (compile {:.1} ms)",
        stats.duration.as_secs_f64() * 1000.0,
        compile.as_secs_f64() * 1000.0
    );
    if report.logs.is_empty() {
        eprintln!("guest log:   (empty)");
    } else {
        eprintln!("guest log:");
        for line in &report.logs {
            let stream = match line.stream {
                GuestStream::Log => "",
                GuestStream::Stdout => " stdout",
                GuestStream::Stderr => " stderr",
            };
            eprintln!("  [{:?}{stream}] {}", line.level, line.message);
        }
    }
}
