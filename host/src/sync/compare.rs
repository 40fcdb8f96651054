//! Comparing documents: "does the CRM already hold this value?" and "which referral fields
//! does this output change?" (a JSON Patch).
//!
//! Why a subset comparison: mapping outputs name lookups by a few fields
//! (`{"isocurrencycode": "EUR"}`) while the current record has the whole related row, and
//! numbers come back from Dataverse as `10000.0` for `10000`.

use serde_json::{Map, Value, json};

/// Whether `current` already holds `wanted`: equal scalars (numbers by value, strings
/// ignoring surrounding whitespace), objects whose every wanted member is held, arrays of the
/// same length held element by element.
pub fn holds(current: &Value, wanted: &Value) -> bool {
    match (current, wanted) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a.trim() == b.trim(),
        (Value::Object(a), Value::Object(b)) => b
            .iter()
            .all(|(k, v)| holds(a.get(k).unwrap_or(&Value::Null), v)),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| holds(x, y))
        }
        (a, b) => a == b,
    }
}

/// The JSON Patch (`replace`/`add` only, as Partner Center takes) that turns `current` into
/// `wanted`, descending into objects and replacing arrays whole. Members `wanted` lacks are
/// left alone (Partner Center's PATCH has no `remove`).
pub fn patch_ops(current: &Value, wanted: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    if let (Value::Object(c), Value::Object(w)) = (current, wanted) {
        diff_objects("", c, w, &mut ops);
    }
    ops
}

fn diff_objects(
    prefix: &str,
    current: &Map<String, Value>,
    wanted: &Map<String, Value>,
    ops: &mut Vec<Value>,
) {
    for (key, value) in wanted {
        let path = format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"));
        match current.get(key) {
            None | Some(Value::Null) if value.is_null() => {}
            None => ops.push(json!({"op": "add", "path": path, "value": value})),
            Some(Value::Object(c)) if value.is_object() => {
                diff_objects(&path, c, value.as_object().expect("checked"), ops)
            }
            Some(existing) if equal(existing, value) => {}
            Some(_) => ops.push(json!({"op": "replace", "path": path, "value": value})),
        }
    }
}

/// Exact equality, except numbers compare by value: change detection.
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// Applies `replace`/`add` operations to `doc` (creating missing parent objects), as the
/// receiving side would.
pub fn apply_ops(doc: &mut Value, ops: &[Value]) {
    for op in ops {
        let (Some(path), Some(value)) = (op["path"].as_str(), op.get("value")) else {
            continue;
        };
        let mut target = &mut *doc;
        let segments: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        let Some((last, parents)) = segments.split_last() else {
            continue;
        };
        for segment in parents {
            if !target.get(segment).is_some_and(Value::is_object) {
                target[segment.as_str()] = Value::Object(Map::new());
            }
            target = &mut target[segment.as_str()];
        }
        if target.is_object() {
            target[last.as_str()] = value.clone();
        }
    }
}

/// The value at a JSON Pointer, `Null` when absent.
pub fn at<'a>(doc: &'a Value, pointer: &str) -> &'a Value {
    doc.pointer(pointer).unwrap_or(&Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_by_code_is_held_by_the_whole_row_and_numbers_by_value() {
        let current = json!({"estimatedvalue": 10000.0, "transactioncurrencyid": {"isocurrencycode": "EUR", "currencyname": "Euro"}});
        assert!(holds(&current["estimatedvalue"], &json!(10000)));
        assert!(holds(
            &current["transactioncurrencyid"],
            &json!({"isocurrencycode": "EUR"})
        ));
        assert!(!holds(
            &current["transactioncurrencyid"],
            &json!({"isocurrencycode": "USD"})
        ));
        assert!(!holds(&Value::Null, &json!("x")));
    }

    #[test]
    fn patches_name_only_changed_leaves_and_replace_arrays_whole() {
        let current = json!({"name": "A", "details": {"dealValue": 10, "notes": "n"}, "team": [1]});
        let wanted = json!({"name": "A", "details": {"dealValue": 12.0, "notes": "n", "currency": "EUR"}, "team": [1, 2]});
        let ops = patch_ops(&current, &wanted);
        assert_eq!(
            ops,
            vec![
                json!({"op": "add", "path": "/details/currency", "value": "EUR"}),
                json!({"op": "replace", "path": "/details/dealValue", "value": 12.0}),
                json!({"op": "replace", "path": "/team", "value": [1, 2]}),
            ]
        );
        assert!(patch_ops(&current, &current).is_empty());
        let mut applied = current.clone();
        apply_ops(&mut applied, &ops);
        assert!(patch_ops(&applied, &wanted).is_empty());
    }
}
