//! Test guest `panics`: `map` panics with "deliberate panic in map". The panic hook of
//! `guest-glue` logs the message at level `error`, then the guest traps.

use guest_glue::{Context, Mapping, MappingError};

struct Panics;

impl Mapping for Panics {
    fn map(_: Context, _: String, _: Option<String>) -> Result<String, MappingError> {
        panic!("deliberate panic in map");
    }
}

guest_glue::export_mapping!(Panics);
