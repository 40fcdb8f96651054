//! Test guest `deep-output`: `map` returns a small but deeply nested, valid JSON object,
//! `{"deep":[[[…]]]}` with 10,000 levels of arrays, for the host's output depth limit. A JSON
//! parser that recurses per level (serde_json's `Value`, most tree walkers) would refuse it or
//! overflow its stack; the host must refuse it once, where the output leaves the guest.
//!
//! The input may ask for another depth with `{"depth": N}` (read without a JSON parser, so
//! the guest itself never depends on one).

use guest_glue::{Context, Mapping, MappingError};

/// Levels of nesting when the input does not say.
const DEFAULT_DEPTH: usize = 10_000;

struct DeepOutput;

impl Mapping for DeepOutput {
    fn map(_: Context, input: String, _: Option<String>) -> Result<String, MappingError> {
        let depth = requested_depth(&input).unwrap_or(DEFAULT_DEPTH);
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

guest_glue::export_mapping!(DeepOutput);
