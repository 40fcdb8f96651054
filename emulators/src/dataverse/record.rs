//! A row and the pure rules on its values that everything above the store shares: the row
//! itself ([`Record`], its version and weak etag), how a stored value compares with a key or
//! `$filter` literal ([`loose_eq`]), and the names a column is read under (a lookup as
//! `_<name>_value`, [`read_name`] and back, [`column_of_read_name`]).
//!
//! Below the store on purpose: the store is built on its equality indexes, and those indexes
//! and the `$filter` they stand in for read rows through these rules; were the rules in the
//! store, the store and its indexes would import each other.

use super::schema::{ColumnKind, EntityDef};
use serde_json::{Map, Value};
use uuid::Uuid;

/// One row.
#[derive(Debug, Clone)]
pub struct Record {
    /// Column logical name → value. Lookups are stored as `{"id": …, "entity": …}`.
    pub values: Map<String, Value>,
    /// The row version (the etag's number); changes on every write.
    pub version: u64,
}

impl Record {
    /// The weak etag, `W/"<version>"`.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// Compares a stored value with a key or filter literal (GUIDs case-insensitively).
pub fn loose_eq(stored: &Value, literal: &Value) -> bool {
    match (stored, literal) {
        (Value::String(a), Value::String(b)) => {
            a == b || (Uuid::parse_str(a).is_ok() && a.eq_ignore_ascii_case(b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Object(o), Value::String(b)) => {
            o.get("id")
                .and_then(Value::as_str)
                .map(|a| a.eq_ignore_ascii_case(b))
                == Some(true)
        }
        (a, b) => a == b,
    }
}

/// Names a column is read and selected under: lookups become `_<name>_value`.
pub fn read_name(def: &EntityDef, column: &str) -> String {
    match def.column(column).map(|c| &c.kind) {
        Some(ColumnKind::Lookup { .. }) => format!("_{column}_value"),
        _ => column.to_owned(),
    }
}

/// The column behind a read name (`_customerid_value` → `customerid`).
pub fn column_of_read_name<'a>(def: &EntityDef, name: &'a str) -> Option<&'a str> {
    if let Some(inner) = name
        .strip_prefix('_')
        .and_then(|n| n.strip_suffix("_value"))
        && matches!(
            def.column(inner).map(|c| &c.kind),
            Some(ColumnKind::Lookup { .. })
        )
    {
        return Some(inner);
    }
    match def.column(name).map(|c| &c.kind) {
        Some(ColumnKind::Lookup { .. }) | None => None,
        Some(_) => Some(name),
    }
}
