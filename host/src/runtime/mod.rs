//! The sandboxed WebAssembly runtime that executes mapping steps.
//!
//! One [`MappingRuntime`] per host owns the wasmtime `Engine` and the linker. Each deployed
//! version of a step is compiled and type-checked once into a [`MappingComponent`] (an
//! `InstancePre`); every record then gets a fresh `Store` and instance, under the [`Limits`].
//!
//! - [`limits`]: the per-call limits and the memory limiter.
//! - [`engine`]: engine configuration, pooling allocator with fallback, epoch ticker.
//! - [`bindings`]: the WIT contract's generated bindings and host imports.
//! - [`guest_env`]: what a guest may touch: the per-call store state and the deny-by-default
//!   WASI.
//! - [`linker`]: what a component may import.
//! - [`component`]: bytes → compiled, type-checked component.
//! - [`code_limits`]: function count and sizes checked before compiling (no compile bombs).
//! - [`artifact_cache`]: precompiled components on disk, so a known version skips compilation.
//! - [`call`]: one call on one record, and how its failures are named.
//! - [`json_depth`]: the nesting depth of a guest's output, checked where it leaves the guest.
//! - [`guest_log`]: the guest's log lines and their budget.
//! - [`live_instance`]: an instance held outside a call, for the benchmarks.

pub mod artifact_cache;
pub mod bindings;
pub mod call;
pub mod code_limits;
pub mod component;
pub mod engine;
pub mod guest_env;
pub mod guest_log;
pub mod json_depth;
pub mod limits;
pub mod linker;
pub mod live_instance;

pub use artifact_cache::{ArtifactCache, ArtifactKey, CacheOutcome};
pub use call::{CallError, CallErrorKind, CallReport, CallStats, Direction, MappingCall};
pub use component::{LoadError, MappingComponent};
pub use engine::AllocatorKind;
pub use guest_env::StepConfig;
pub use guest_log::{GuestLevel, GuestLogLine, GuestStream};
pub use limits::{Limit, Limits, LimitsOverride};
pub use live_instance::LiveInstance;

use anyhow::Result;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// The engine, linker and limits shared by every mapping step of a host.
pub struct MappingRuntime {
    engine: Engine,
    linker: Linker<guest_env::CallState>,
    limits: Limits,
    allocator: AllocatorKind,
    artifact_cache: Option<ArtifactCache>,
}

impl MappingRuntime {
    /// Creates the runtime, preferring the pooling allocator, and starts the epoch ticker.
    pub fn new(limits: Limits) -> Result<Self> {
        limits.validate().map_err(anyhow::Error::msg)?;
        let (engine, allocator) = engine::build_engine(&limits, true)?;
        Self::with_engine(engine, allocator, limits)
    }

    /// Creates the runtime as [`MappingRuntime::new`] does, with the pooling allocator's
    /// memory slots sized for `pool_memory_bytes` (the largest `memory_bytes` any step may use,
    /// see per-step limits) rather than `limits.memory_bytes`.
    pub fn with_pool_memory(limits: Limits, pool_memory_bytes: u64) -> Result<Self> {
        limits.validate().map_err(anyhow::Error::msg)?;
        let pool = Limits {
            memory_bytes: pool_memory_bytes.max(limits.memory_bytes),
            ..limits.clone()
        };
        let (engine, allocator) = engine::build_engine(&pool, true)?;
        Self::with_engine(engine, allocator, limits)
    }

    /// Creates the runtime with exactly the `allocator` asked for (no fallback: an error if
    /// the pooling allocator cannot reserve its address space). The host always uses
    /// [`MappingRuntime::new`]; this is for comparing the allocators (the benchmarks).
    pub fn with_allocator(limits: Limits, allocator: AllocatorKind) -> Result<Self> {
        limits.validate().map_err(anyhow::Error::msg)?;
        let engine = engine::build_engine_with(&limits, allocator)?;
        Self::with_engine(engine, allocator, limits)
    }

    fn with_engine(engine: Engine, allocator: AllocatorKind, limits: Limits) -> Result<Self> {
        let linker = linker::build_linker(&engine)?;
        engine::start_epoch_ticker(&engine);
        tracing::debug!(?allocator, "mapping runtime ready");
        Ok(Self {
            engine,
            linker,
            limits,
            allocator,
            artifact_cache: None,
        })
    }

    /// Makes [`load`](Self::load) keep compiled components in `cache` and take them from it.
    pub fn with_artifact_cache(mut self, cache: ArtifactCache) -> Self {
        self.artifact_cache = Some(cache);
        self
    }

    /// The artifact cache, when the runtime has one.
    pub fn artifact_cache(&self) -> Option<&ArtifactCache> {
        self.artifact_cache.as_ref()
    }

    /// Compiles and type-checks `bytes` (a component, or a core module with an embedded
    /// component type) as a mapping step. With an artifact cache, a component compiled before
    /// is deserialized instead; [`MappingComponent::artifact`] says which happened.
    pub fn load(&self, bytes: &[u8]) -> Result<MappingComponent, LoadError> {
        component::load(
            &self.engine,
            &self.linker,
            self.artifact_cache.as_ref(),
            bytes,
            &self.limits,
        )
    }

    /// Runs one record through `component` on a fresh instance, under the runtime's limits.
    /// Blocks: call it from a blocking thread (see `pipeline`).
    pub fn call(&self, component: &MappingComponent, call: &MappingCall<'_>) -> CallReport {
        call::call_mapping(&self.engine, &self.limits, component, call)
    }

    /// [`MappingRuntime::call`] under `limits` (a step's effective limits). Its `memory_bytes`
    /// must be within what the engine was sized for ([`MappingRuntime::with_pool_memory`]).
    pub fn call_with_limits(
        &self,
        component: &MappingComponent,
        call: &MappingCall<'_>,
        limits: &Limits,
    ) -> CallReport {
        call::call_mapping(&self.engine, limits, component, call)
    }

    /// [`MappingRuntime::load`] checking the component against `limits` (a step's effective
    /// limits: component size, function count and sizes).
    pub fn load_with_limits(
        &self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<MappingComponent, LoadError> {
        component::load(
            &self.engine,
            &self.linker,
            self.artifact_cache.as_ref(),
            bytes,
            limits,
        )
    }

    /// Instantiates `component` for `call` exactly as [`MappingRuntime::call`] does, without
    /// calling it, and keeps the instance alive. For measuring instantiation and the memory of
    /// a live instance; the host itself only uses `call`.
    pub fn instantiate(
        &self,
        component: &MappingComponent,
        call: &MappingCall<'_>,
    ) -> Result<LiveInstance, CallErrorKind> {
        LiveInstance::new(&self.engine, &self.limits, component, call)
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Which instance allocator the engine uses.
    pub fn allocator(&self) -> AllocatorKind {
        self.allocator
    }

    /// How many calls may run at once without exhausting the instance pool.
    pub fn max_concurrent_calls(&self) -> usize {
        engine::POOL_INSTANCES as usize
    }
}
