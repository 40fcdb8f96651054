//! Test guest `panics`: `map` panics with "deliberate panic in map". The panic hook of
//! the `cosell-mapping` SDK logs the message at level `error`, then the guest traps.

use cosell_mapping::{Context, Mapping, MappingError};

struct Panics;

impl Mapping for Panics {
    fn map(_: Context, _: String, _: Option<String>) -> Result<String, MappingError> {
        panic!("deliberate panic in map");
    }
}

cosell_mapping::export_mapping!(Panics);
