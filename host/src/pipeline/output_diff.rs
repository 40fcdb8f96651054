//! How two mapping outputs differ, in a form a person reads: the JSON pointers of the values
//! that changed and a unified diff of the two documents pretty-printed.
//!
//! One comparison for every place that puts a step's output beside another document: a
//! fixture's expected output (`cosell mapping test --fixtures`), a shadow version's output
//! beside the active version's, and a replayed record beside what the host wrote. Documents
//! are compared as parsed JSON, so key order and whitespace never count as a difference;
//! objects print with sorted keys (serde_json's map is ordered), so the text diff shows only
//! what changed.

use serde::Serialize;
use serde_json::Value;

/// Lines of unchanged context around each change in [`OutputDiff::text`].
const CONTEXT_LINES: usize = 3;

/// How `actual` differs from `expected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputDiff {
    /// JSON pointers (RFC 6901) of the values added, removed or changed, in document order.
    /// A changed array is one entry unless both arrays have the same length.
    pub changed: Vec<String>,
    /// A unified diff of the two documents, pretty-printed, `-` for `expected` and `+` for
    /// `actual`.
    pub text: String,
}

/// The difference between two documents, or `None` when they are the same JSON value.
pub fn diff(expected: &Value, actual: &Value) -> Option<OutputDiff> {
    if expected == actual {
        return None;
    }
    let mut changed = Vec::new();
    changed_paths(expected, actual, &mut String::new(), &mut changed);
    let (before, after) = (pretty(expected), pretty(actual));
    let text = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(CONTEXT_LINES)
        .header("expected", "actual")
        .to_string();
    Some(OutputDiff { changed, text })
}

/// [`diff`] of two JSON texts; a text that is not JSON is compared as a JSON string, so the
/// difference still shows.
pub fn diff_text(expected: &str, actual: &str) -> Option<OutputDiff> {
    let parse =
        |text: &str| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    diff(&parse(expected), &parse(actual))
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value always serialises");
    text.push('\n');
    text
}

fn changed_paths(expected: &Value, actual: &Value, path: &mut String, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => changed_paths(x, y, path, out),
                    _ => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("/{index}"));
                changed_paths(x, y, path, out);
                path.truncate(len);
            }
        }
        (x, y) if x == y => {}
        _ => out.push(path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_documents_have_no_diff_whatever_their_key_order() {
        assert_eq!(
            diff_text(r#"{"a":1,"b":[1,2]}"#, r#"{ "b": [1, 2], "a": 1 }"#),
            None
        );
    }

    #[test]
    fn names_every_changed_value_by_its_pointer() {
        let expected = json!({"name": "A", "keep": 1, "list": [1, 2], "gone": true, "a/b": 1,
            "w": 0, "x": 0, "y": 0, "z": 0});
        let actual = json!({"name": "B", "keep": 1, "list": [1, 3], "new": null, "a/b": 2,
            "w": 0, "x": 0, "y": 0, "z": 0});
        let found = diff(&expected, &actual).unwrap();
        assert_eq!(
            found.changed,
            ["/a~1b", "/gone", "/list/1", "/name", "/new"]
        );
        assert!(found.text.contains("-  \"name\": \"A\","), "{}", found.text);
        assert!(found.text.contains("+  \"name\": \"B\","), "{}", found.text);
        assert!(
            !found.text.contains("\"z\""),
            "unchanged lines far from a change are left out:\n{}",
            found.text
        );
    }

    #[test]
    fn a_resized_array_is_one_change() {
        let found = diff(&json!({"l": [1]}), &json!({"l": [1, 2]})).unwrap();
        assert_eq!(found.changed, ["/l"]);
    }

    #[test]
    fn text_that_is_not_json_still_differs() {
        assert!(diff_text("not json", "{}").is_some());
    }
}
