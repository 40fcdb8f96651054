//! Test guest `infinite-loop`: `map` never returns (the host must interrupt it with fuel or an
//! epoch deadline).

use core::hint::black_box;
use cosell_mapping::{Context, Mapping, MappingError};

struct InfiniteLoop;

impl Mapping for InfiniteLoop {
    fn map(_: Context, _: String, _: Option<String>) -> Result<String, MappingError> {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }
}

cosell_mapping::export_mapping!(InfiniteLoop);
