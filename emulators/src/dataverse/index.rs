//! Equality indexes of the record store: per table and per column (as `$filter` names it, so
//! a lookup is indexed under `_x_value`), the rows holding each value. A `$filter` that is an
//! `eq` on a column, or an `and`/`or` built on such comparisons, reads its candidate rows from
//! the index instead of scanning the table; the caller still evaluates the whole filter on
//! each candidate, so the index only has to be a superset of the answer, never exact.
//!
//! Why: the sync engine looks opportunities up by referral identifier and accounts by name on
//! every change; as linear scans those queries cost the emulator more CPU than the host it is
//! serving once the tables hold tens of thousands of rows.
//!
//! An index is built the first time a query needs it and from then on kept true by every
//! write, delete and rollback of the store ([`EqIndexes::update`]). Keys follow the
//! emulator's `eq`: text compares ASCII-case-insensitively, numbers by value, a missing
//! column as `null`; a value of another shape (an object or array) is kept in a set that is
//! always a candidate.

use super::query;
use super::record::Record;
use super::schema::EntityDef;
use crate::common::odata::{CmpOp, Expr};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// What an indexed value is filed under: two values the emulator's `eq` finds equal have the
/// same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IndexKey {
    Null,
    Bool(bool),
    /// The value as an `f64`'s bits (`eq` compares numbers as `f64`; `-0` is filed as `0`).
    Number(u64),
    /// The text in ASCII lower case (`eq` ignores ASCII case).
    Text(String),
}

/// The key of `value`, or `None` when it has no key (objects, arrays, numbers beyond `f64`).
fn key_of(value: &Value) -> Option<IndexKey> {
    Some(match value {
        Value::Null => IndexKey::Null,
        Value::Bool(b) => IndexKey::Bool(*b),
        Value::Number(n) => {
            let f = n.as_f64()?;
            IndexKey::Number(if f == 0.0 { 0.0f64 } else { f }.to_bits())
        }
        Value::String(s) => IndexKey::Text(s.to_ascii_lowercase()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// One column's index.
#[derive(Debug, Clone, Default)]
struct ColumnIndex {
    by_key: HashMap<IndexKey, BTreeSet<Uuid>>,
    /// Rows whose value has no key: a candidate of every lookup.
    unkeyed: BTreeSet<Uuid>,
}

impl ColumnIndex {
    fn set(
        &mut self,
        def: &EntityDef,
        name: &str,
        id: Uuid,
        values: &Map<String, Value>,
        on: bool,
    ) {
        let value = query::field(def, values, name).unwrap_or(&Value::Null);
        match key_of(value) {
            Some(key) if on => {
                self.by_key.entry(key).or_default().insert(id);
            }
            Some(key) => {
                if let Some(rows) = self.by_key.get_mut(&key) {
                    rows.remove(&id);
                    if rows.is_empty() {
                        self.by_key.remove(&key);
                    }
                }
            }
            None if on => {
                self.unkeyed.insert(id);
            }
            None => {
                self.unkeyed.remove(&id);
            }
        }
    }

    /// The rows whose value may equal `literal`, in id order (the order of a table scan).
    fn lookup(&self, literal: &Value) -> BTreeSet<Uuid> {
        let mut rows = key_of(literal)
            .and_then(|k| self.by_key.get(&k))
            .cloned()
            .unwrap_or_default();
        rows.extend(self.unkeyed.iter().copied());
        rows
    }
}

/// Every equality index of the store: table → column read name → index.
#[derive(Debug, Clone)]
pub struct EqIndexes {
    tables: HashMap<String, HashMap<String, ColumnIndex>>,
    /// Off: queries scan (the tests compare both ways).
    enabled: bool,
}

impl Default for EqIndexes {
    fn default() -> Self {
        Self {
            tables: HashMap::new(),
            enabled: true,
        }
    }
}

impl EqIndexes {
    /// Turns the indexes on or off (off drops them; queries then scan every row).
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
        self.tables.clear();
    }

    /// Drops every index (they are rebuilt when next needed): for changes that are simpler to
    /// forget than to follow, such as a rolled-back change set.
    pub fn clear(&mut self) {
        self.tables.clear();
    }

    /// Files (`on`) or unfiles row `id` of `def`'s table, whose values are `values`, in every
    /// index of that table. Call with the old values before a row changes and with the new
    /// ones after.
    pub fn update(&mut self, def: &EntityDef, id: Uuid, values: &Map<String, Value>, on: bool) {
        if let Some(columns) = self.tables.get_mut(&def.logical_name) {
            for (name, index) in columns.iter_mut() {
                index.set(def, name, id, values, on);
            }
        }
    }

    /// The rows of `rows` (the table of `def`) that may match `filter`, in id order, or `None`
    /// when the filter has no `eq` the index can answer (the caller scans).
    pub fn candidates(
        &mut self,
        def: &EntityDef,
        rows: &BTreeMap<Uuid, Record>,
        filter: &Expr,
    ) -> Option<BTreeSet<Uuid>> {
        if !self.enabled {
            return None;
        }
        match filter {
            Expr::Compare(left, CmpOp::Eq, right) => {
                self.equal(def, rows, query::column(left)?, &query::value_of(right)?)
            }
            Expr::And(a, b) => match (self.candidates(def, rows, a), self.candidates(def, rows, b))
            {
                (Some(x), Some(y)) => Some(x.intersection(&y).copied().collect()),
                (x, y) => x.or(y),
            },
            Expr::Or(a, b) => {
                let mut x = self.candidates(def, rows, a)?;
                x.extend(self.candidates(def, rows, b)?);
                Some(x)
            }
            _ => None,
        }
    }

    /// The rows of `rows` (the table of `def`) whose column `name` (a read name) may equal
    /// `literal`, in id order; `None` when the indexes are off.
    pub fn equal(
        &mut self,
        def: &EntityDef,
        rows: &BTreeMap<Uuid, Record>,
        name: &str,
        literal: &Value,
    ) -> Option<BTreeSet<Uuid>> {
        self.enabled
            .then(|| self.column(def, rows, name).lookup(literal))
    }

    /// The index of column `name` (a read name) of `def`'s table, built from `rows` if new.
    fn column(
        &mut self,
        def: &EntityDef,
        rows: &BTreeMap<Uuid, Record>,
        name: &str,
    ) -> &ColumnIndex {
        self.tables
            .entry(def.logical_name.clone())
            .or_default()
            .entry(name.to_owned())
            .or_insert_with(|| {
                let mut index = ColumnIndex::default();
                for (id, record) in rows {
                    index.set(def, name, *id, &record.values, true);
                }
                index
            })
    }
}
