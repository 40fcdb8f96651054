//! cosell's benchmarks, shared parts: where results are written, the row format every
//! benchmark reports in, and the statistics quoted (medians and spreads, never single runs).
//!
//! The in-process figures are criterion benches (`benches/`); the end-to-end ones come from the
//! load driver (`src/main.rs`, binary `cosell-bench`). Both write [`results::FigureResults`]
//! files under `target/bench-results/`, and `cosell-bench table` prints them as one table
//! (docs/benchmarks.md).

pub mod results;
pub mod stats;
