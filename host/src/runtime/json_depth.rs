//! The nesting depth of JSON a guest returns, checked once where the output leaves the guest.
//!
//! serde_json's `Value` parser gives up at 128 levels, and the host's own readers of a
//! document (the diff, the fingerprint, dropping a `Value`) recurse once per level. An output
//! nested 10,000 deep is only 20 KB and valid JSON, so the size cap does not stop it. Checking
//! the depth at the boundary, iteratively, means every later reader can trust it: nothing
//! downstream has to guard against it again, and no guest output can make a handler fail on
//! a parse the runtime said was fine.

/// The deepest nesting of arrays and objects accepted in a guest's output. Records of both
/// services nest a handful of levels; 64 leaves room for any mapping while staying well under
/// serde_json's 128, so a document may still be wrapped (the preview's answer) and parsed.
pub const MAX_DEPTH: usize = 64;

/// Checks that `json` nests arrays and objects at most `max` levels deep; `Err` carries the
/// depth reached when it went over. Strings (with their escapes) are skipped, so brackets
/// inside them do not count. It does not validate the JSON: run a parser afterwards.
pub fn within(json: &str, max: usize) -> Result<(), usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_is_counted_across_arrays_and_objects() {
        assert_eq!(within("{}", 1), Ok(()));
        assert_eq!(within(r#"{"a":[{"b":1}]}"#, 3), Ok(()));
        assert_eq!(within(r#"{"a":[{"b":1}]}"#, 2), Err(3));
        assert_eq!(within(&nested(MAX_DEPTH), MAX_DEPTH), Ok(()));
        assert_eq!(within(&nested(10_000), MAX_DEPTH), Err(MAX_DEPTH + 1));
        // Siblings do not add up.
        assert_eq!(within("[[],[],[[]]]", 3), Ok(()));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(r#"{{"a":"{}","b":"\"[[[","c":"\\"}}"#, "[".repeat(500));
        assert_eq!(within(&text, 1), Ok(()));
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    }

    #[test]
    fn whatever_passes_parses_into_a_value() {
        // The promise downstream code relies on: within the limit, serde_json's recursive
        // parser accepts it, even wrapped in one more object.
        let text = format!(r#"{{"document":{}}}"#, nested(MAX_DEPTH));
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
    }
}
