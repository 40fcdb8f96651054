//! Host side of the `cosell:mapping` WIT contract: generated bindings and the host imports.
//!
//! The world lives in `wit/mapping.wit`. The host provides two imports: `log` (levelled,
//! budgeted) and `config` (read-only operator key/values). Everything else a component might
//! import is WASI, wired up in [`super::linker`].

// The generated bindings are documented by the contract, `wit/mapping.wit`, not here (a lint
// attribute on the macro call does not reach what it generates).
#![allow(missing_docs)]

use super::guest_env::CallState;
use super::guest_log::GuestLevel;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "cosell:mapping/mapping-step",
    imports: {
        // Trappable so that a guest that floods the log is stopped with a clear error.
        "cosell:mapping/log.log": trappable,
    },
});

pub use cosell::mapping::types::MappingError as GuestMappingError;
pub use cosell::mapping::types::{Context as GuestContext, Direction as GuestDirection};

/// Error a log call traps with when the call's log budget is spent.
#[derive(Debug, thiserror::Error)]
#[error("log budget exceeded")]
pub struct LogBudgetExceeded;

impl cosell::mapping::log::Host for CallState {
    fn log(&mut self, level: cosell::mapping::log::Level, message: String) -> wasmtime::Result<()> {
        use cosell::mapping::log::Level;
        let level = match level {
            Level::Trace => GuestLevel::Trace,
            Level::Debug => GuestLevel::Debug,
            Level::Info => GuestLevel::Info,
            Level::Warn => GuestLevel::Warn,
            Level::Error => GuestLevel::Error,
        };
        self.log
            .write(level, message)
            .map_err(|_| wasmtime::Error::new(LogBudgetExceeded))
    }
}

impl cosell::mapping::config::Host for CallState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn keys(&mut self) -> Vec<String> {
        // BTreeMap iterates in key order, which is the documented "sorted".
        self.config.keys().cloned().collect()
    }
}

impl cosell::mapping::types::Host for CallState {}
