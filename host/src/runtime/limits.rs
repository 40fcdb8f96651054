//! Per-call limits of a mapping step, and the resource limiter that enforces the memory cap.
//!
//! Every call of a mapping step runs under the same limits in production, in `cosell mapping
//! test` and in deploy-time validation, so what passes locally passes in the host. The defaults
//! follow Shopify Functions (the closest product that runs customer WebAssembly on JSON
//! records), scaled up where CRM records are bigger than checkout carts: see
//! `docs/runtime.md` for the table and the reasoning.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The limits applied to one call of a mapping step. Every field is configurable in the
/// `[limits]` table of the host configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Deterministic instruction budget (wasmtime fuel) per call. The same input always runs
    /// out at the same place, so a budget failure is reproducible with `cosell mapping test`.
    pub fuel: u64,
    /// Wall-clock backstop per call, in milliseconds, enforced with epoch interruption. It only
    /// fires when fuel does not (for example a guest stalled in a host call).
    pub timeout_ms: u64,
    /// Cap on the linear memory of each call, in bytes: all the memories of the component's
    /// instance together. Growing past it traps.
    pub memory_bytes: u64,
    /// Largest input document (and current counterpart) the host passes in, in bytes.
    pub max_input_bytes: u64,
    /// Largest output document a step may return, in bytes.
    pub max_output_bytes: u64,
    /// Bytes a call may write to the log (log import, stdout and stderr together).
    pub max_log_bytes: u64,
    /// Largest `.wasm` file accepted for deployment, in bytes.
    pub max_component_bytes: u64,
    /// Most function bodies a component may hold, all its core modules together. Checked
    /// before compiling, with [`Limits::max_function_bytes`], so a "compile bomb" is refused
    /// in milliseconds instead of holding a core for minutes.
    pub max_functions: u64,
    /// Largest function body a component may hold, in bytes of WebAssembly code. Compile time
    /// grows faster than linearly with the size of one function.
    pub max_function_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 100_000_000,
            timeout_ms: 1_000,
            memory_bytes: 32 * MIB,
            max_input_bytes: 512 * KIB,
            max_output_bytes: 512 * KIB,
            max_log_bytes: 8 * KIB,
            max_component_bytes: 32 * MIB,
            max_functions: 50_000,
            max_function_bytes: 1024 * KIB,
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Most core instances one call's component may create. A wit-bindgen component has a
/// handful; WASI-using ones (the preview 1 adapter, shims) a few more. The pooling allocator
/// is sized from the same number, and the [`MemoryLimiter`] enforces it when the host falls
/// back to on-demand allocation, so a component runs, or is refused, the same on both.
pub const MAX_CORE_INSTANCES: u32 = 32;
/// Most linear memories one call's component may define, all core instances together. Their
/// sizes together are capped by [`Limits::memory_bytes`].
pub const MAX_MEMORIES: u32 = 4;
/// Most tables one call's component may define, all core instances together.
pub const MAX_TABLES: u32 = 8;
/// Most elements a table may hold: tables hold function references, and a mapping step has no
/// reason to grow one far. wasmtime's pooling default (a debug C# module was seen with 10k+).
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

impl Limits {
    /// The wall-clock backstop as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks that the limits make sense together, with a message that names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("fuel", self.fuel),
            ("timeout_ms", self.timeout_ms),
            ("memory_bytes", self.memory_bytes),
            ("max_input_bytes", self.max_input_bytes),
            ("max_output_bytes", self.max_output_bytes),
            ("max_component_bytes", self.max_component_bytes),
            ("max_functions", self.max_functions),
            ("max_function_bytes", self.max_function_bytes),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be greater than 0"));
        }
        if self.memory_bytes > 4 * 1024 * MIB {
            return Err("limits.memory_bytes cannot exceed 4 GiB (wasm32 address space)".into());
        }
        Ok(())
    }
}

/// A pipeline step's `limits = { … }`: any subset of [`Limits`]' keys, overriding `[limits]`
/// for that step only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    /// Replaces [`Limits::fuel`] for this step.
    pub fuel: Option<u64>,
    /// Replaces [`Limits::timeout_ms`] for this step.
    pub timeout_ms: Option<u64>,
    /// Replaces [`Limits::memory_bytes`] for this step.
    pub memory_bytes: Option<u64>,
    /// Replaces [`Limits::max_input_bytes`] for this step.
    pub max_input_bytes: Option<u64>,
    /// Replaces [`Limits::max_output_bytes`] for this step.
    pub max_output_bytes: Option<u64>,
    /// Replaces [`Limits::max_log_bytes`] for this step.
    pub max_log_bytes: Option<u64>,
    /// Replaces [`Limits::max_component_bytes`] for this step.
    pub max_component_bytes: Option<u64>,
    /// Replaces [`Limits::max_functions`] for this step.
    pub max_functions: Option<u64>,
    /// Replaces [`Limits::max_function_bytes`] for this step.
    pub max_function_bytes: Option<u64>,
}

impl LimitsOverride {
    /// `base` with the keys this override sets replaced.
    pub fn apply(&self, base: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.unwrap_or(base.fuel),
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
            max_input_bytes: self.max_input_bytes.unwrap_or(base.max_input_bytes),
            max_output_bytes: self.max_output_bytes.unwrap_or(base.max_output_bytes),
            max_log_bytes: self.max_log_bytes.unwrap_or(base.max_log_bytes),
            max_component_bytes: self.max_component_bytes.unwrap_or(base.max_component_bytes),
            max_functions: self.max_functions.unwrap_or(base.max_functions),
            max_function_bytes: self.max_function_bytes.unwrap_or(base.max_function_bytes),
        }
    }
}

/// Which limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// The call used all of its [`Limits::fuel`].
    Fuel,
    /// The call ran past [`Limits::timeout_ms`] of wall-clock time.
    Timeout,
    /// The instance's memories needed more than [`Limits::memory_bytes`] together.
    Memory,
    /// The guest's wasm call stack overflowed (512 KiB, fixed), usually runaway recursion.
    Stack,
    /// The input document or the current counterpart was over [`Limits::max_input_bytes`].
    InputSize,
    /// The output document was over [`Limits::max_output_bytes`].
    OutputSize,
    /// The guest logged more than [`Limits::max_log_bytes`] (log import, stdout and stderr
    /// together).
    LogSize,
    /// The `.wasm` file was over [`Limits::max_component_bytes`] (refused at deploy).
    ComponentSize,
    /// More core instances, memories or tables than [`MAX_CORE_INSTANCES`], [`MAX_MEMORIES`]
    /// and [`MAX_TABLES`] allow. Deterministic: the same component always hits it.
    InstanceResources,
    /// Output nested deeper than `json_depth::MAX_DEPTH` levels of arrays and objects.
    OutputDepth,
    /// More function bodies than [`Limits::max_functions`] (refused before compiling).
    FunctionCount,
    /// A function body over [`Limits::max_function_bytes`] (refused before compiling).
    FunctionSize,
}

impl Limit {
    /// A short snake_case name, for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Fuel => "fuel",
            Limit::Timeout => "timeout",
            Limit::Memory => "memory",
            Limit::Stack => "stack",
            Limit::InputSize => "input_size",
            Limit::OutputSize => "output_size",
            Limit::LogSize => "log_size",
            Limit::ComponentSize => "component_size",
            Limit::InstanceResources => "instance_resources",
            Limit::OutputDepth => "output_depth",
            Limit::FunctionCount => "function_count",
            Limit::FunctionSize => "function_size",
        }
    }

    /// The configuration key that raises this limit, for error messages.
    pub fn config_key(self) -> &'static str {
        match self {
            Limit::Fuel => "limits.fuel",
            Limit::Timeout => "limits.timeout_ms",
            Limit::Memory => "limits.memory_bytes",
            Limit::Stack => "limits (wasm stack, 512 KiB, fixed)",
            Limit::InputSize => "limits.max_input_bytes",
            Limit::OutputSize => "limits.max_output_bytes",
            Limit::LogSize => "limits.max_log_bytes",
            Limit::ComponentSize => "limits.max_component_bytes",
            Limit::InstanceResources => {
                "limits (32 core instances, 4 memories, 8 tables per component, fixed)"
            }
            Limit::OutputDepth => "limits (output nesting, 64 levels, fixed)",
            Limit::FunctionCount => "limits.max_functions",
            Limit::FunctionSize => "limits.max_function_bytes",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Limit::Fuel => "fuel budget",
            Limit::Timeout => "time limit",
            Limit::Memory => "memory cap",
            Limit::Stack => "stack limit",
            Limit::InputSize => "input size cap",
            Limit::OutputSize => "output size cap",
            Limit::LogSize => "log size cap",
            Limit::ComponentSize => "component size cap",
            Limit::InstanceResources => "limit on core instances, memories and tables",
            Limit::OutputDepth => "output nesting limit",
            Limit::FunctionCount => "function count limit",
            Limit::FunctionSize => "function size limit",
        };
        f.write_str(text)
    }
}

/// Enforces the memory cap of one store (all its linear memories together) and the counts of
/// core instances, memories and tables, and remembers the peak, so `cosell mapping test` can
/// report it and a violation is reported as the memory cap rather than a bare trap.
///
/// The cap covers the sum of every memory, not each one: a component with several memories
/// (multi-memory, or several core modules each with its own) must not get the cap once per
/// memory. wasmtime asks the limiter before creating a memory (from 0 to its initial size)
/// and before every growth, so the running sum is exact.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: usize,
    /// Bytes of every memory of the store together, as granted so far.
    total: usize,
    /// The last growth granted, taken back if wasmtime then fails to grow the memory.
    last_grant: usize,
    peak: usize,
    exceeded: bool,
}

impl MemoryLimiter {
    /// A limiter that refuses growth past `cap` bytes, all memories together.
    pub fn new(cap: u64) -> Self {
        Self {
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            total: 0,
            last_grant: 0,
            peak: 0,
            exceeded: false,
        }
    }

    /// The largest size the store's linear memories reached together, in bytes.
    pub fn peak_bytes(&self) -> usize {
        self.peak
    }

    /// Whether a growth request was refused because of the cap.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.total.saturating_add(growth);
        if total > self.cap {
            self.exceeded = true;
            // Trapping (instead of letting `memory.grow` return -1) gives the author a clear
            // error; most guest allocators would abort anyway, with a less useful message.
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded: the instance's memories would hold {total} bytes together",
                self.cap
            ));
        }
        self.total = total;
        self.last_grant = growth;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // wasmtime could not grow the memory after the limiter allowed it (its own maximum):
        // the bytes were never added, so they do not count.
        self.total = self
            .total
            .saturating_sub(std::mem::take(&mut self.last_grant));
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_limiter_refuses_growth_past_the_cap_and_tracks_the_peak() {
        let mut limiter = MemoryLimiter::new(1024 * 1024);
        assert!(limiter.memory_growing(0, 65536, None).unwrap());
        assert!(limiter.memory_growing(65536, 1024 * 1024, None).unwrap());
        assert_eq!(limiter.peak_bytes(), 1024 * 1024);
        assert!(!limiter.exceeded());
        let err = limiter.memory_growing(1024 * 1024, 1024 * 1024 + 65536, None);
        assert!(err.is_err());
        assert!(limiter.exceeded());
        assert_eq!(limiter.peak_bytes(), 1024 * 1024);
    }

    #[test]
    fn the_cap_covers_every_memory_of_the_store_together() {
        const MIB: usize = 1024 * 1024;
        let mut limiter = MemoryLimiter::new(32 * MIB as u64);
        // Two memories created at 10 MiB each, then the first grows to 20 MiB: 30 MiB.
        assert!(limiter.memory_growing(0, 10 * MIB, None).unwrap());
        assert!(limiter.memory_growing(0, 10 * MIB, None).unwrap());
        assert!(limiter.memory_growing(10 * MIB, 20 * MIB, None).unwrap());
        assert_eq!(limiter.peak_bytes(), 30 * MIB);
        // The second to 13 MiB would make 33 MiB: refused, though it alone is far below.
        assert!(limiter.memory_growing(10 * MIB, 13 * MIB, None).is_err());
        assert!(limiter.exceeded());
        // A growth wasmtime could not carry out after it was allowed does not count.
        let mut limiter = MemoryLimiter::new(32 * MIB as u64);
        assert!(limiter.memory_growing(0, 16 * MIB, None).unwrap());
        assert!(limiter.memory_growing(16 * MIB, 32 * MIB, None).unwrap());
        limiter
            .memory_grow_failed(wasmtime::format_err!("over its maximum"))
            .unwrap();
        assert!(limiter.memory_growing(0, 16 * MIB, None).unwrap());
    }

    #[test]
    fn zero_limits_are_refused_with_the_field_name() {
        let limits = Limits {
            fuel: 0,
            ..Limits::default()
        };
        assert_eq!(
            limits.validate().unwrap_err(),
            "limits.fuel must be greater than 0"
        );
        assert!(Limits::default().validate().is_ok());
    }
}
