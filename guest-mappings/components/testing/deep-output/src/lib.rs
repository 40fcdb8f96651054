//! Test guest `deep-output`: for a record carrying the marker `DEEP-OUTPUT` anywhere (a
//! referral's name, say), `map` returns a small but deeply nested, valid JSON object,
//! `{"deep":[[[…]]]}` with 10,000 levels of arrays, for the host's output depth limit. A JSON
//! parser that recurses per level (serde_json's `Value`, most tree walkers) would refuse it or
//! overflow its stack; the host must refuse it once, where the output leaves the guest.
//!
//! `{"depth": N}` in the input asks for N levels instead (read without a JSON parser, so the
//! guest itself never depends on one). Any other record gets `{"deep":[]}`, so the guest passes
//! a deploy's sample run and can be made active.

use cosell_mapping::{Context, Mapping, MappingError};

/// Levels of nesting for a marked record that does not say how many.
const DEFAULT_DEPTH: usize = 10_000;
/// What a record carries to get the deep output.
const MARKER: &str = "DEEP-OUTPUT";

struct DeepOutput;

impl Mapping for DeepOutput {
    fn map(_: Context, input: String, _: Option<String>) -> Result<String, MappingError> {
        let depth = requested_depth(&input).unwrap_or(if input.contains(MARKER) {
            DEFAULT_DEPTH
        } else {
            1
        });
        let mut out = String::with_capacity(2 * depth + 16);
        out.push_str("{\"deep\":");
        out.extend(core::iter::repeat_n('[', depth));
        out.extend(core::iter::repeat_n(']', depth));
        out.push('}');
        Ok(out)
    }
}

/// The number after `"depth":` in the input, if there is one.
fn requested_depth(input: &str) -> Option<usize> {
    let rest = &input[input.find("\"depth\"")? + "\"depth\"".len()..];
    let digits = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

cosell_mapping::export_mapping!(DeepOutput);
