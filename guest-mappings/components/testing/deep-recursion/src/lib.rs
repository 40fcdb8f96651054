//! Test guest `deep-recursion`: `map` recurses without bound until the *wasm* stack overflows
//! (wasmtime's `max_wasm_stack` trap). The recursive function only handles integers and takes no
//! addresses (no `black_box`, which spills its argument to Rust's shadow stack in linear memory
//! on wasm), so each frame lives on the wasm stack only. The work done on the result after the
//! call (rotate, then xor with a local) keeps it out of tail position, so LLVM cannot turn it
//! into a loop. (Checked in the release build: `descend` calls itself and never touches
//! `__stack_pointer`.)

use cosell_mapping::{Context, Mapping, MappingError};

#[inline(never)]
fn descend(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    descend(depth + 1).rotate_left(5) ^ depth
}

struct DeepRecursion;

impl Mapping for DeepRecursion {
    fn map(_: Context, _: String, _: Option<String>) -> Result<String, MappingError> {
        Ok(descend(0).to_string())
    }
}

cosell_mapping::export_mapping!(DeepRecursion);
