//! What a mapping step may touch: the per-call store state and its deny-by-default WASI.
//!
//! Components that import only the `cosell:mapping` contract never see any of this. Components
//! built by toolchains that import WASI 0.2 (`wasm32-wasip2`, componentize-py, jco) are linked
//! to a WASI that has:
//! - no preopened directories, no environment variables, no arguments, a closed stdin;
//! - no network: TCP, UDP and name lookup are all refused;
//! - stdout and stderr captured, capped with the log budget and sent to the host log tagged with
//!   the mapping and its version;
//! - a wall clock frozen at the call's context timestamp and a monotonic clock frozen at zero,
//!   so a guest that reads the time gets the same answer on a re-run of the same record;
//!   sleeping (subscribing to a clock) traps, because no mapping needs to wait;
//! - randomness from a generator seeded with the hash of the mapping version and the input, so
//!   it is repeatable: a mapping must not use it for secrets (it has none to make).
//!
//! The WASI context is only built if the guest calls WASI (see `LazyWasi`).

use super::guest_log::GuestLog;
use super::limits::MemoryLimiter;
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Operator-set key/values of one mapping step, read through the `config` import.
pub type StepConfig = BTreeMap<String, String>;

/// Everything one call's `Store` holds. A fresh one is made for every record.
pub struct CallState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) log: GuestLog,
    pub(crate) config: Arc<StepConfig>,
    wasi: LazyWasi,
    table: ResourceTable,
}

/// Inputs the sandbox needs to make a call's state.
pub struct SandboxSpec<'a> {
    /// Cap on the linear memory of the call, in bytes
    /// ([`Limits::memory_bytes`](super::limits::Limits::memory_bytes)).
    pub memory_cap: u64,
    /// The call's log, which also receives what WASI stdout and stderr capture.
    pub log: GuestLog,
    /// The operator's key/values for the step, served by the `config` import.
    pub config: Arc<StepConfig>,
    /// Seconds and nanoseconds since the Unix epoch of the context timestamp.
    pub frozen_time: Duration,
    /// Seeds the guest's randomness; the host passes the version hash and the input.
    pub seed_material: &'a [&'a [u8]],
}

impl CallState {
    /// Builds the state of one call, with the deny-by-default WASI described above.
    pub fn new(spec: SandboxSpec<'_>) -> Self {
        let (stdout, stderr) = spec.log.stdio_pipes();
        Self {
            limiter: MemoryLimiter::new(spec.memory_cap),
            log: spec.log,
            config: spec.config,
            wasi: LazyWasi::Pending(WasiSpec {
                stdout,
                stderr,
                frozen_time: spec.frozen_time,
                seed_material: spec.seed_material.concat(),
            }),
            table: ResourceTable::new(),
        }
    }
}

/// The call's WASI context, built the first time the guest calls a WASI function.
///
/// Components built for `wasm32-unknown-unknown` with wit-bindgen, such as the default
/// mappings, import no WASI at all, and building the context (hashing the input for the seed,
/// two generators) was about 5% of their call (issue 6, docs/benchmarks.md). A component that
/// does use WASI gets exactly the context it would have got up front: the seed is taken from
/// the same bytes, and nothing in it depends on when it is built (the clocks are frozen).
enum LazyWasi {
    Pending(WasiSpec),
    Ready(Box<WasiCtx>),
}

/// What the WASI context is built from.
struct WasiSpec {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    frozen_time: Duration,
    /// The concatenated seed material (hashing it in parts or whole gives the same digest).
    seed_material: Vec<u8>,
}

impl WasiSpec {
    fn build(&self) -> WasiCtx {
        let seed: [u8; 32] = Sha256::digest(&self.seed_material).into();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenWallClock(self.frozen_time))
            .monotonic_clock(FrozenMonotonicClock)
            .secure_random(rand::rngs::StdRng::from_seed(seed))
            .insecure_random(rand::rngs::StdRng::from_seed(seed))
            .insecure_random_seed(u128::from_le_bytes(
                seed[..16].try_into().expect("16 bytes"),
            ))
            .max_random_size(64 * 1024);
        wasi.build()
    }
}

impl LazyWasi {
    fn get(&mut self) -> &mut WasiCtx {
        if let LazyWasi::Pending(spec) = self {
            *self = LazyWasi::Ready(Box::new(spec.build()));
        }
        match self {
            LazyWasi::Ready(ctx) => ctx,
            LazyWasi::Pending(_) => unreachable!("built just above"),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get(),
            table: &mut self.table,
        }
    }
}

/// A wall clock that always reads the call's context timestamp.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that never advances.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Pipes for stdout and stderr with `capacity` bytes each.
pub(crate) fn capped_pipes(capacity: usize) -> (MemoryOutputPipe, MemoryOutputPipe) {
    (
        MemoryOutputPipe::new(capacity),
        MemoryOutputPipe::new(capacity),
    )
}
