//! The `pass-through` mapping step: its output is its input, unchanged.
//!
//! It is the first version of a step added to a pipeline before its author has deployed one
//! (`cosell sandbox --add-step`, or a `[[pipelines.*]]` table naming it in production): the
//! pipeline behaves as if the step were not there, and a version of the author's own can be
//! shadow-tested against it (every field the author's step changes shows as a difference)
//! and promoted without a restart.

use cosell_mapping::{Context, Mapping, MappingError};

struct PassThrough;

impl Mapping for PassThrough {
    fn map(_ctx: Context, input: String, _current: Option<String>) -> Result<String, MappingError> {
        Ok(input)
    }
}

cosell_mapping::export_mapping!(PassThrough);
