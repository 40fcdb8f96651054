//! Test guest `oversized-output`: `map` returns a valid JSON document of about 2 MiB
//! (`{"padding":"xxxx…"}`, exactly 2 MiB + 14 bytes), for the host's output size limit.

use cosell_mapping::{Context, Mapping, MappingError};

/// Length of the padding string.
const PADDING: usize = 2 * 1024 * 1024;

struct OversizedOutput;

impl Mapping for OversizedOutput {
    fn map(_: Context, _: String, _: Option<String>) -> Result<String, MappingError> {
        let mut out = String::with_capacity(PADDING + 16);
        out.push_str("{\"padding\":\"");
        out.extend(core::iter::repeat_n('x', PADDING));
        out.push_str("\"}");
        Ok(out)
    }
}

cosell_mapping::export_mapping!(OversizedOutput);
