//! JSON Patch (RFC 6902) as the Referrals API accepts it on PATCH (reference §1.4): only the
//! `replace` and `add` operations; anything else is a 400.
//!
//! Where the facts stop: the docs' own samples `replace` members that a referral may not have
//! yet (e.g. `/details/notes`), so `replace` of a missing object member acts as `add` here
//! (the parent must exist). `add` to an array takes an index or `-` (append), as in the RFC.

use serde::Deserialize;
use serde_json::Value;

/// One operation of a patch document.
#[derive(Debug, Clone, Deserialize)]
pub struct PatchOp {
    pub op: String,
    pub path: String,
    #[serde(default)]
    pub value: Value,
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Splits a JSON Pointer into its unescaped tokens (`""` is the whole document).
pub fn pointer_tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!(
            "'{path}' is not a JSON Pointer (it must start with '/')"
        ));
    };
    Ok(rest.split('/').map(unescape).collect())
}

/// Applies `ops` to `doc` in order; on error `doc` may be partly changed (apply to a copy).
pub fn apply(doc: &mut Value, ops: &[PatchOp]) -> Result<(), String> {
    for op in ops {
        let tokens = pointer_tokens(&op.path)?;
        let replace = match op.op.as_str() {
            "replace" => true,
            "add" => false,
            other => {
                return Err(format!(
                    "the '{other}' operation is not supported: only 'replace' and 'add' are"
                ));
            }
        };
        let Some((last, parents)) = tokens.split_last() else {
            return Err("a patch operation cannot replace the whole referral".into());
        };
        let mut parent = &mut *doc;
        for token in parents {
            parent = match parent {
                Value::Object(map) => map.get_mut(token),
                Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            }
            .ok_or_else(|| format!("the path '{}' does not exist", op.path))?;
        }
        match parent {
            Value::Object(map) => {
                map.insert(last.clone(), op.value.clone());
            }
            Value::Array(items) => {
                if last == "-" && !replace {
                    items.push(op.value.clone());
                } else {
                    let index: usize = last
                        .parse()
                        .map_err(|_| format!("'{last}' is not an array index in '{}'", op.path))?;
                    if replace && index < items.len() {
                        items[index] = op.value.clone();
                    } else if !replace && index <= items.len() {
                        items.insert(index, op.value.clone());
                    } else {
                        return Err(format!("the index in '{}' is out of range", op.path));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "the parent of '{}' is not an object or array",
                    op.path
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: Value) -> Vec<PatchOp> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn replace_and_add_work_and_other_ops_are_refused() {
        let mut doc = json!({"status": "New", "details": {}, "team": [{"email": "a@x"}]});
        apply(
            &mut doc,
            &ops(json!([
                {"op": "replace", "path": "/status", "value": "Active"},
                {"op": "replace", "path": "/details/notes", "value": "n"},
                {"op": "add", "path": "/team/-", "value": {"email": "b@x"}},
                {"op": "add", "path": "/team/0", "value": {"email": "c@x"}},
            ])),
        )
        .unwrap();
        assert_eq!(doc["status"], "Active");
        assert_eq!(doc["details"]["notes"], "n");
        assert_eq!(doc["team"][0]["email"], "c@x");
        assert_eq!(doc["team"][2]["email"], "b@x");
        let err = apply(&mut doc, &ops(json!([{"op": "remove", "path": "/status"}])));
        assert!(err.unwrap_err().contains("remove"));
        let err = apply(
            &mut doc,
            &ops(json!([{"op": "add", "path": "/a/b", "value": 1}])),
        );
        assert!(err.is_err());
    }
}
