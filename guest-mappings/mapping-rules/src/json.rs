//! Reading fields of untyped JSON documents, with errors that name the field.

use serde_json::{Map, Value};

use crate::MappingError;

/// Which document a field comes from; used to word error messages.
#[derive(Debug, Clone, Copy)]
pub enum Doc {
    /// The referral being mapped (or the current referral).
    Referral,
    /// The opportunity being mapped (or the current opportunity).
    Opportunity,
}

impl Doc {
    /// `referral field "a.b"` or `opportunity column "a.b"`.
    pub fn describe(self, path: &[&str]) -> String {
        let kind = match self {
            Doc::Referral => "referral field",
            Doc::Opportunity => "opportunity column",
        };
        format!("{kind} \"{}\"", path.join("."))
    }
}

/// Parses a document that must be a JSON object; malformed JSON is a `Reject` carrying serde's
/// message.
pub fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>, MappingError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(not_an_object(what)),
        Err(e) => Err(not_json(what, &e)),
    }
}

/// The `Reject` for a document that is JSON but not an object.
pub fn not_an_object(what: &str) -> MappingError {
    MappingError::Reject(format!("{what} must be a JSON object"))
}

/// The `Reject` for a document that is not JSON, with serde's message (it says where).
pub fn not_json(what: &str, e: &serde_json::Error) -> MappingError {
    MappingError::Reject(format!("{what} is not valid JSON: {e}"))
}

/// The `Reject` for a field that must be a string but holds `found`.
pub fn not_a_string(doc: Doc, path: &[&str], found: &Value) -> MappingError {
    MappingError::Reject(format!(
        "{} must be a string, found {}",
        doc.describe(path),
        kind(found)
    ))
}

/// The `Reject` for a required field that is absent or blank.
pub fn missing(doc: Doc, path: &[&str]) -> MappingError {
    MappingError::Reject(format!("{} is required", doc.describe(path)))
}

/// A string trimmed, `None` when that leaves nothing.
pub fn trimmed(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

/// The output document as JSON text, written into a buffer of `capacity` bytes up front (the
/// caller's estimate of the output size) instead of one grown from empty.
pub fn to_text(out: &Map<String, Value>, capacity: usize) -> Result<String, MappingError> {
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, out).map_err(|e| MappingError::Fail(e.to_string()))?;
    // serde_json writes only UTF-8.
    String::from_utf8(buf).map_err(|e| MappingError::Fail(e.to_string()))
}

/// The value at `path`; `null` counts as absent.
pub fn get<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = obj;
    for key in parents {
        cur = cur.get(*key)?.as_object()?;
    }
    cur.get(*last).filter(|v| !v.is_null())
}

/// The object at `path`, if there is one.
pub fn object<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(obj, path).and_then(Value::as_object)
}

/// The trimmed, non-empty string at `path`; a value of another type is a `Reject`.
pub fn string<'a>(
    obj: &'a Map<String, Value>,
    path: &[&str],
    doc: Doc,
) -> Result<Option<&'a str>, MappingError> {
    match get(obj, path) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(trimmed(s)),
        Some(other) => Err(not_a_string(doc, path, other)),
    }
}

/// Like [`string`] but absent is a `Reject` naming the field.
pub fn required<'a>(
    obj: &'a Map<String, Value>,
    path: &[&str],
    doc: Doc,
) -> Result<&'a str, MappingError> {
    string(obj, path, doc)?.ok_or_else(|| missing(doc, path))
}

/// An integer at `path` (a JSON integer or a string holding one); other values are a `Reject`.
pub fn integer(
    obj: &Map<String, Value>,
    path: &[&str],
    doc: Doc,
) -> Result<Option<i64>, MappingError> {
    integer_of(get(obj, path), path, doc)
}

/// [`integer`] of a value already looked up (`None` when absent or `null`).
pub fn integer_of(
    value: Option<&Value>,
    path: &[&str],
    doc: Doc,
) -> Result<Option<i64>, MappingError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| {
        MappingError::Reject(format!(
            "{} must be an integer, found {value}",
            doc.describe(path)
        ))
    })
}

/// Removes and returns the value at `path` (`null` included), if there is one.
pub fn take(obj: &mut Map<String, Value>, path: &[&str]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = obj;
    for key in parents {
        cur = cur.get_mut(*key)?.as_object_mut()?;
    }
    cur.remove(*last)
}

/// Sets `path`, creating (or replacing non-object) parents.
pub fn set(obj: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for key in parents {
        let slot = cur
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        cur = slot.as_object_mut().expect("just made an object");
    }
    cur.insert((*last).to_owned(), value);
}

/// Equality that compares numbers by value (`5` equals `5.0`).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether writing `new` over `old` would change nothing: objects are compared key by key on
/// the keys of `new` only (an expanded lookup may hold more columns than the mapping writes).
pub fn contained(new: &Value, old: Option<&Value>) -> bool {
    match (new, old) {
        (Value::Object(n), Some(Value::Object(o))) => n
            .iter()
            .all(|(k, v)| contained(v, o.get(k).filter(|w| !w.is_null()))),
        (Value::Null, None) => true,
        (_, Some(o)) => same(new, o),
        (_, None) => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
