//! Test guest `memory-bomb`: `map` allocates 1 MiB blocks and keeps them all, forever (the host's
//! memory limit must stop it). When `memory.grow` fails the allocator aborts: a trap.

use core::hint::black_box;
use cosell_mapping::{Context, Mapping, MappingError};

struct MemoryBomb;

impl Mapping for MemoryBomb {
    fn map(_: Context, _: String, _: Option<String>) -> Result<String, MappingError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(black_box(vec![0xA5u8; 1 << 20]));
            black_box(&hoard);
        }
    }
}

cosell_mapping::export_mapping!(MemoryBomb);
