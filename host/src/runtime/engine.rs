//! The one wasmtime [`Engine`] of the host, and the epoch ticker that backs call deadlines.
//!
//! Every component version, linker and `InstancePre` belongs to this engine. It is configured
//! once: fuel metering for deterministic budgets, epoch interruption as a wall-clock backstop,
//! and the pooling instance allocator when the machine lets us reserve its address space
//! (falling back to on-demand allocation, as Spin and wasmCloud do, when it does not).

use super::limits::{Limits, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
use anyhow::{Context as _, Result};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A call's deadline is a number of these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorKind {
    /// Pre-reserved slots, reused across calls: fastest instantiation.
    Pooling,
    /// Memory mapped per instance; used when the pool cannot be reserved.
    OnDemand,
}

/// How many instances may be alive at once with the pooling allocator. Callers bound their
/// concurrency to this (see `pipeline`), because instantiation fails when the pool is full.
pub const POOL_INSTANCES: u32 = 64;

/// Builds the engine, preferring the pooling allocator.
pub fn build_engine(limits: &Limits, prefer_pooling: bool) -> Result<(Engine, AllocatorKind)> {
    if prefer_pooling {
        match build_engine_with(limits, AllocatorKind::Pooling) {
            Ok(engine) => return Ok((engine, AllocatorKind::Pooling)),
            Err(err) => tracing::warn!(
                error = %format!("{err:#}"),
                "could not reserve the pooling allocator's address space; using on-demand allocation"
            ),
        }
    }
    let engine = build_engine_with(limits, AllocatorKind::OnDemand)?;
    Ok((engine, AllocatorKind::OnDemand))
}

/// Builds the engine with exactly the `allocator` asked for, failing instead of falling back.
pub fn build_engine_with(limits: &Limits, allocator: AllocatorKind) -> Result<Engine> {
    let pooling = allocator == AllocatorKind::Pooling;
    Engine::new(&engine_config(limits, pooling))
        .map_err(anyhow::Error::from)
        .with_context(|| format!("creating the WebAssembly engine ({allocator:?} allocator)"))
}

fn engine_config(limits: &Limits, pooling: bool) -> Config {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    // 512 KiB, Shopify's stack limit and wasmtime's default, stated so it cannot drift.
    config.max_wasm_stack(512 * 1024);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        let memory = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        // The per-component counts are the sandbox's (see `limits`), which the memory limiter
        // also enforces on the on-demand allocator; per module they may use all of them, as
        // they may on demand. `max_memory_size` is per memory: the limiter caps their sum.
        pool.total_component_instances(POOL_INSTANCES)
            .max_core_instances_per_component(MAX_CORE_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .max_memories_per_component(MAX_MEMORIES)
            .max_memories_per_module(MAX_MEMORIES)
            .total_memories(POOL_INSTANCES * 2)
            .max_tables_per_component(MAX_TABLES)
            .max_tables_per_module(MAX_TABLES)
            .total_tables(POOL_INSTANCES * 8)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(memory);
        keep_slots_warm(&mut pool);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Most bytes of a linear memory kept resident in its pool slot between instances, when the
/// kernel can tell which pages an instance wrote (`PAGEMAP_SCAN`, Linux 6.7+); only written
/// pages are kept. The default mapping writes ~100 KiB per record (stack, heap, the documents),
/// so 1 MiB leaves room for bigger guests while bounding what warm slots may hold: at most
/// 1 MiB for each of the pool's memories (128 MiB if every slot were used by a guest that
/// writes a megabyte or more).
pub const LINEAR_MEMORY_KEEP_RESIDENT: usize = 1024 * 1024;
/// The same for tables. A mapping's tables fit in a page, and a table no bigger than a page
/// kept resident is simply zeroed, without a `PAGEMAP_SCAN` system call.
pub const TABLE_KEEP_RESIDENT: usize = 4096;

/// Resets a freed slot by rewriting the pages the instance dirtied instead of handing them
/// back to the kernel, so the next record's instance does not page-fault them in again.
///
/// By default wasmtime `madvise`s a slot's memory away after every instance: each record then
/// pays a page fault per page it touches, plus the `madvise` and its TLB shootdown, which was
/// about 40% of a call of the default mapping (issue 6, docs/benchmarks.md). With
/// `PAGEMAP_SCAN`, only the pages actually written are reset (zeroed or copied back from the
/// data image), up to the keep-resident size; anything beyond is still decommitted. Without
/// it, keeping memory resident would mean zeroing the first N bytes on every reset whether
/// they were used or not, which costs more than it saves, so the defaults are kept there.
/// The isolation between records is the same either way: a reused slot starts from the
/// module's pristine image.
fn keep_slots_warm(pool: &mut PoolingAllocationConfig) {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
///
/// It holds only a weak reference, so it never keeps the engine alive; the thread ends on the
/// first tick after the last strong reference is gone.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("cosell-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// The number of epoch ticks that covers `timeout`, plus one so a call is never cut short by
/// the phase of the ticker.
pub fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_millis() as u64;
    (timeout.as_millis() as u64).div_ceil(tick) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_covers_the_timeout() {
        assert_eq!(deadline_ticks(Duration::from_millis(1000)), 101);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }
}
