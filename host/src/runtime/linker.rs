//! The component linker every mapping step is type-checked and instantiated against.
//!
//! It offers the `cosell:mapping` imports and, for components whose toolchain imports them,
//! the WASI 0.2 interfaces, restricted as described in [`super::guest_env`].

use super::bindings::MappingStep;
use super::guest_env::CallState;
use anyhow::Result;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime_wasi_io::poll::DynPollable;

/// WASI clock interfaces whose `subscribe-*` functions are replaced, one per WASI 0.2 version
/// a toolchain may have been built against (the linker matches imports by semver, so `0.2.0`
/// through `0.2.12` all resolve to the newest one defined here).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Builds the linker: contract imports, WASI 0.2 (sync), and no sleeping.
pub fn build_linker(engine: &Engine) -> Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    MappingStep::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
        .map_err(anyhow::Error::from)?;
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;

    // Epoch deadlines cannot interrupt a host call, and WASI's clock subscriptions sleep in
    // the host. A mapping never needs to wait, so a subscription traps instead of blocking.
    linker.allow_shadowing(true);
    let mut clock = linker
        .instance(MONOTONIC_CLOCK)
        .map_err(anyhow::Error::from)?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock
            .func_wrap(
                name,
                |_store, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
                    Err(wasmtime::format_err!(
                        "mapping steps may not sleep or wait on a clock"
                    ))
                },
            )
            .map_err(anyhow::Error::from)?;
    }
    linker.allow_shadowing(false);
    Ok(linker)
}
