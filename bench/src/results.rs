//! The one result format of every benchmark: a figure (numbered as in docs/benchmarks.md) with
//! rows of measured values, each with its spread and, where the issue sets one, its target.
//!
//! Each benchmark writes its figure to `target/bench-results/<slug>.json`; the table command
//! reads them all, so the criterion benches and the load driver never have to run in one
//! process.

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One measured value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// What was measured, e.g. `WASM (pooling) / native`.
    pub measure: String,
    /// The median (or the single aggregate, for a throughput over a whole run), formatted with
    /// its unit, e.g. `14.2 µs`.
    pub value: String,
    /// How much it varied, e.g. `IQR 13.9–14.8 µs` or `p99 31 ms`; empty when not meaningful.
    pub spread: String,
    /// The target for this value, e.g. `< 25 µs`; empty when none is set.
    pub target: String,
    /// Whether the target was met; `None` when there is no target.
    pub met: Option<bool>,
}

impl Row {
    /// A row without a target.
    pub fn info(
        measure: impl Into<String>,
        value: impl Into<String>,
        spread: impl Into<String>,
    ) -> Self {
        Self {
            measure: measure.into(),
            value: value.into(),
            spread: spread.into(),
            target: String::new(),
            met: None,
        }
    }

    /// A row judged against `target`.
    pub fn judged(
        measure: impl Into<String>,
        value: impl Into<String>,
        spread: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Self {
        Self {
            target: target.into(),
            met: Some(met),
            ..Self::info(measure, value, spread)
        }
    }
}

/// All rows of one figure, with what produced them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FigureResults {
    /// The figure's number in docs/benchmarks.md (1–10).
    pub figure: u8,
    /// Its title, e.g. `Mapping cost per record`.
    pub title: String,
    /// How it was measured, in one line (sample sizes, load, settings).
    pub method: String,
    pub rows: Vec<Row>,
}

/// `target/bench-results` of this workspace (or `$COSELL_BENCH_RESULTS`).
pub fn results_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("COSELL_BENCH_RESULTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("bench-results")
}

/// The repository root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate lives in the workspace")
        .to_path_buf()
}

impl FigureResults {
    /// Writes the figure to `<results_dir>/<slug>.json`, replacing an earlier run's.
    pub fn save(&self, slug: &str) -> Result<PathBuf> {
        let dir = results_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{slug}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Every figure saved so far, in figure order.
    pub fn load_all() -> Result<Vec<FigureResults>> {
        let dir = results_dir();
        let mut figures = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(figures),
            Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let figure: FigureResults = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a benchmark result", path.display()))?;
                figures.push(figure);
            }
        }
        figures.sort_by(|a, b| (a.figure, &a.title).cmp(&(b.figure, &b.title)));
        Ok(figures)
    }
}
