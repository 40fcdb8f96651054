//! The guests' global allocator: talc, serving first from a static arena inside the initial
//! linear memory, and only then from `memory.grow`.
//!
//! Why not the standard library's dlmalloc: every mapping call runs on a fresh instance, and
//! dlmalloc never uses the initial memory: its first allocation already calls `memory.grow`.
//! In the host, a grow is an `mprotect` of the pool slot (with a TLB shootdown), undone by
//! another when the slot is reset for the next record, about a tenth of a call of the default
//! mapping; and talc itself allocates faster than dlmalloc on wasm32. With a 1 MiB arena the
//! default mapping's records never grow memory; bigger records grow it in steps of at least
//! [`MIN_GROW_PAGES`], still under the host's memory cap (issue 6, docs/benchmarks.md).

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use talc::base::binning::Binning;
use talc::base::{CHUNK_UNIT, Talc};
use talc::cell::TalcSyncCell;
use talc::source::Source;
use talc::wasm::WasmBinning;

/// Bytes of the static arena (zero-initialised, so it costs the module no data and an
/// instance nothing until a page is touched).
const ARENA_BYTES: usize = 1024 * 1024;
/// The WebAssembly page size.
const PAGE_BYTES: usize = 64 * 1024;
/// Smallest growth once the arena is full (1 MiB), so a large record grows memory a few times
/// rather than once per allocation.
const MIN_GROW_PAGES: usize = 16;

static mut ARENA: [MaybeUninit<u8>; ARENA_BYTES] = [MaybeUninit::uninit(); ARENA_BYTES];

#[global_allocator]
static ALLOCATOR: TalcSyncCell<ArenaThenGrow, WasmBinning> =
    TalcSyncCell::new_wasm(ArenaThenGrow {
        arena_claimed: false,
        grown_end: None,
    });

/// Where talc gets memory: the arena once, then new pages from `memory.grow`.
///
/// Talc's heaps must not be managed by hand while this source is in use (it tracks the end of
/// the grown heap to extend it).
#[derive(Debug)]
pub struct ArenaThenGrow {
    arena_claimed: bool,
    /// End of the heap made of grown pages, extended when the next growth is contiguous.
    grown_end: Option<NonNull<u8>>,
}

// SAFETY: `acquire` only claims memory nothing else uses (the private arena, freshly grown
// pages) and never allocates through a Rust allocator.
unsafe impl Source for ArenaThenGrow {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        if !talc.source.arena_claimed {
            talc.source.arena_claimed = true;
            // SAFETY: `ARENA` is private to this module and only ever handed to talc, here,
            // once.
            if unsafe { talc.claim((&raw mut ARENA).cast(), ARENA_BYTES) }.is_some() {
                return Ok(());
            }
        }
        // Room for the chunk, its tag and the claim's own overhead, aligned.
        let needed = layout.size() + layout.align() + 4 * CHUNK_UNIT;
        let pages = needed.div_ceil(PAGE_BYTES).max(MIN_GROW_PAGES);
        let previous_pages = core::arch::wasm32::memory_grow(0, pages);
        if previous_pages == usize::MAX {
            return Err(()); // the host refused: the memory cap
        }
        let base = (previous_pages * PAGE_BYTES) as *mut u8;
        let end = base.wrapping_add(pages * PAGE_BYTES);
        talc.source.grown_end = match talc.source.grown_end.take() {
            // SAFETY: the grown pages directly follow the heap that ends at `old_end`, and are
            // used by nothing else.
            Some(old_end) if old_end.as_ptr() == base => Some(unsafe { talc.extend(old_end, end) }),
            // SAFETY: freshly grown pages, used by nothing else.
            _ => unsafe { talc.claim(base, pages * PAGE_BYTES) },
        };
        if talc.source.grown_end.is_some() {
            Ok(())
        } else {
            Err(())
        }
    }
}
