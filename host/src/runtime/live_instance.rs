//! An instance held alive outside a call, for measuring what the runtime costs.
//!
//! The host never holds one: every record gets its own store, made and dropped inside
//! [`super::call::call_mapping`]. The benchmarks need the two halves of that apart: the cost of
//! instantiating alone (issue 6, figure 2) and the memory a live instance occupies (figure 7),
//! so this module offers the same store set-up, with the same sandbox and limits, without the
//! call and without the drop.

use super::bindings::MappingStep;
use super::call::{self, CallErrorKind, MappingCall};
use super::component::MappingComponent;
use super::guest_env::CallState;
use super::limits::Limits;
use wasmtime::{Engine, Store};

/// A fresh instance of a mapping component in its own store, set up exactly as a call sets it
/// up. Its memory (and, with the pooling allocator, its slot) is held until it is dropped.
pub struct LiveInstance {
    store: Store<CallState>,
    instance: MappingStep,
    limits: Limits,
}

impl LiveInstance {
    /// Instantiates `component` for `call` (whose input seeds the sandbox's randomness).
    pub(super) fn new(
        engine: &Engine,
        limits: &Limits,
        component: &MappingComponent,
        call: &MappingCall<'_>,
    ) -> Result<Self, CallErrorKind> {
        let mut store = call::new_store(engine, limits, component, call);
        let instance = component
            .pre
            .instantiate(&mut store)
            .map_err(|err| call::classify_instantiation(&err, store.data(), limits))?;
        Ok(Self {
            store,
            instance,
            limits: limits.clone(),
        })
    }

    /// Maps `call`'s record on this instance, which keeps whatever memory the guest grew.
    /// Measurement only: the host maps every record on a fresh instance, so that no state
    /// survives from one record to the next.
    pub fn call(
        &mut self,
        component: &MappingComponent,
        call: &MappingCall<'_>,
    ) -> Result<String, CallErrorKind> {
        let context = call::guest_context(component, call);
        call::invoke(
            &mut self.store,
            &self.instance,
            &context,
            call,
            &self.limits,
        )?
        .map_err(call::guest_error_kind)
    }

    /// The largest linear memory the instance has had so far, in bytes.
    pub fn peak_memory_bytes(&self) -> usize {
        self.store.data().limiter.peak_bytes()
    }
}
