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
    /// Cap on the linear memory of each instance, in bytes. Growing past it traps.
    pub memory_bytes: u64,
    /// Largest input document (and current counterpart) the host passes in, in bytes.
    pub max_input_bytes: u64,
    /// Largest output document a step may return, in bytes.
    pub max_output_bytes: u64,
    /// Bytes a call may write to the log (log import, stdout and stderr together).
    pub max_log_bytes: u64,
    /// Largest `.wasm` file accepted for deployment, in bytes.
    pub max_component_bytes: u64,
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
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

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

/// Which limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    Fuel,
    Timeout,
    Memory,
    Stack,
    InputSize,
    OutputSize,
    LogSize,
    ComponentSize,
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
        };
        f.write_str(text)
    }
}

/// Enforces the memory cap of one store and remembers the peak, so `cosell mapping test` can
/// report it and a violation is reported as the memory cap rather than a bare trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: usize,
    peak: usize,
    exceeded: bool,
}

impl MemoryLimiter {
    /// A limiter that refuses growth past `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self {
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            peak: 0,
            exceeded: false,
        }
    }

    /// The largest linear memory size any instance in the store asked for and got, in bytes.
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
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.exceeded = true;
            // Trapping (instead of letting `memory.grow` return -1) gives the author a clear
            // error; most guest allocators would abort anyway, with a less useful message.
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded (asked for {desired})",
                self.cap
            ));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a mapping step has no reason to grow one far.
        Ok(desired <= 100_000)
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
