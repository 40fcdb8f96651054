//! The record store: rows per table, the row version behind every weak `@odata.etag`
//! (`W/"<version>"`, §4.5), writes checked against the schema (undefined columns rejected),
//! lookups set with `@odata.bind` and read back as `_<name>_value` (§4.4), alternate keys
//! (§4.6), the log of deletions change tracking needs (§4.9), and the webhook events waiting
//! for their write to commit (§5).
//!
//! A `$batch` change set journals the rows it writes and undoes them if it fails
//! ([`Store::begin`], [`Store::rollback`]); a single request validates everything before it
//! changes anything.
//!
//! Choices where the reference stops: error codes and wording for an undefined property
//! (`0x80060888`, "The property 'x' does not exist on type 'Microsoft.Dynamics.CRM.y'…"), an
//! out-of-range value (`0x80044331`) and a missing record (`0x80040217`, "x With Id = … Does Not
//! Exist") follow what the real service answers as far as publicly seen; deleting a record does
//! not cascade to lookups that point at it.

use super::api::{ApiResponse, Key, bad_request, not_found, parse_key};
use super::charge::Operations;
use super::index::EqIndexes;
use super::record::{Record, column_of_read_name, loose_eq, read_name};
use super::schema::{ColumnKind, EntityDef, Schema};
use crate::common::odata;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// A deleted row, kept for change tracking.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub entity: String,
    pub id: Uuid,
    pub version: u64,
}

/// A write that webhooks may have to announce, resolved when the write commits.
#[derive(Debug, Clone)]
pub struct WriteEvent {
    pub message: String,
    pub entity: String,
    pub id: Uuid,
    /// The columns the write set (stored form), including the primary id.
    pub attributes: Map<String, Value>,
    /// The row's version after a create or update (its `versionnumber`), sent as the
    /// `RowVersion` of the delivered `Target`; `None` for deletes and close actions.
    pub row_version: Option<u64>,
}

/// Every table's rows plus the schema.
#[derive(Debug, Clone)]
pub struct Store {
    pub schema: Schema,
    pub tables: HashMap<String, BTreeMap<Uuid, Record>>,
    /// The last row version handed out (the org-wide change counter).
    pub version: u64,
    pub deleted: Vec<Deleted>,
    /// Writes not yet handed to the webhook deliverer.
    pub pending: Vec<WriteEvent>,
    /// While a change set runs: the rows as they were before each write, to undo it.
    journal: Option<Journal>,
    /// The rows holding each alternate-key value: (table, key number) → key values → rows.
    /// Kept by every write, delete and rollback, so the uniqueness check of a write is a
    /// lookup, not a scan of the table (a scan made bulk loads quadratic: 95% of a 20,000-row
    /// `$batch` load was spent in it).
    key_index: HashMap<(String, usize), HashMap<String, BTreeSet<Uuid>>>,
    /// Equality indexes for `$filter` and alternate-key addressing (built on first use, so
    /// behind a `RefCell`: a read through `&self` may build one).
    eq_index: RefCell<EqIndexes>,
    /// Operations performed since the last [`Store::take_operations`] (the execution-time
    /// charge of a request).
    pub operations: Operations,
}

/// What [`Store::rollback`] needs to put the store back as it was at [`Store::begin`].
#[derive(Debug, Clone)]
struct Journal {
    version: u64,
    deleted: usize,
    pending: usize,
    schema: Schema,
    rows: Vec<(String, Uuid, Option<Record>)>,
}

fn unknown_property(def: &EntityDef, name: &str) -> ApiResponse {
    bad_request(
        "0x80060888",
        format!(
            "The property '{name}' does not exist on type '{}'. Make sure to only use property names that are defined by the type.",
            def.type_name()
        ),
    )
}

/// Today's date-time in the form the service returns.
pub fn timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Store {
    /// An empty store over `schema`, with the base currencies.
    pub fn new(schema: Schema) -> Self {
        let tables = schema
            .entities
            .keys()
            .map(|k| (k.clone(), BTreeMap::new()))
            .collect();
        Self {
            schema,
            tables,
            version: 1_000_000,
            deleted: Vec::new(),
            pending: Vec::new(),
            journal: None,
            key_index: HashMap::new(),
            eq_index: RefCell::default(),
            operations: Operations::default(),
        }
    }

    /// The operations performed since the last call, and a fresh count.
    pub fn take_operations(&mut self) -> Operations {
        std::mem::take(&mut self.operations)
    }

    /// The rows of `def`'s table whose column `name` (a read name: `_x_value` for a lookup)
    /// may equal `literal` as `$filter`'s `eq` compares (a superset of the rows equal in any
    /// stricter sense), in id order; `None` when the indexes are off.
    pub fn equal_candidates(
        &self,
        def: &EntityDef,
        name: &str,
        literal: &Value,
    ) -> Option<BTreeSet<Uuid>> {
        let rows = self.tables.get(&def.logical_name)?;
        self.eq_index.borrow_mut().equal(def, rows, name, literal)
    }

    /// Turns the equality indexes on (the default) or off (every query scans the table).
    pub fn set_eq_index(&mut self, enabled: bool) {
        self.eq_index.get_mut().set_enabled(enabled);
    }

    /// The rows of `def`'s table that may match `filter` (in id order), from the equality
    /// indexes, or `None` when the indexes cannot narrow it down (scan the table).
    pub fn filter_candidates(
        &self,
        def: &EntityDef,
        filter: &odata::Expr,
    ) -> Option<BTreeSet<Uuid>> {
        let rows = self.tables.get(&def.logical_name)?;
        self.eq_index.borrow_mut().candidates(def, rows, filter)
    }

    /// The index entry of alternate key `key` in `values`: `None` when a column of the key is
    /// missing or null (such a row is not constrained).
    fn key_value(key: &[String], values: &Map<String, Value>) -> Option<String> {
        let parts: Option<Vec<&Value>> = key
            .iter()
            .map(|c| values.get(c).filter(|v| !v.is_null()))
            .collect();
        parts.map(|p| serde_json::to_string(&p).unwrap_or_default())
    }

    /// Adds (`present`) or removes row `id` of `def`'s table with `values` in `key_index`.
    fn index_keys(
        def: &EntityDef,
        key_index: &mut HashMap<(String, usize), HashMap<String, BTreeSet<Uuid>>>,
        id: Uuid,
        values: &Map<String, Value>,
        present: bool,
    ) {
        let entity = &def.logical_name;
        for (n, key) in def.alternate_keys.iter().enumerate() {
            let Some(value) = Self::key_value(key, values) else {
                continue;
            };
            let rows = key_index
                .entry((entity.to_owned(), n))
                .or_default()
                .entry(value.clone())
                .or_default();
            if present {
                rows.insert(id);
            } else {
                rows.remove(&id);
                if rows.is_empty()
                    && let Some(index) = key_index.get_mut(&(entity.to_owned(), n))
                {
                    index.remove(&value);
                }
            }
        }
    }

    /// Defines an alternate key on `entity` and indexes its rows; refused (and not defined)
    /// when two rows already share a value of it, as Dataverse fails to build such a key.
    pub fn add_alternate_key(&mut self, entity: &str, columns: Vec<String>) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for record in self.tables.get(entity).into_iter().flat_map(|t| t.values()) {
            if let Some(value) = Self::key_value(&columns, &record.values)
                && !seen.insert(value.clone())
            {
                return Err(format!(
                    "The key cannot be created: several records of '{entity}' share the value {value}."
                ));
            }
        }
        self.schema.add_alternate_key(entity, columns)?;
        // Rebuilt for every key of the table: simpler than indexing the new one alone.
        self.key_index.retain(|(table, _), _| table != entity);
        let def = &self.schema.entities[entity];
        for (id, record) in self.tables.get(entity).into_iter().flatten() {
            Self::index_keys(def, &mut self.key_index, *id, &record.values, true);
        }
        Ok(())
    }

    /// Files (`present`) or unfiles row `id` of `entity`, as it is now, in the key index and
    /// the equality indexes. Call with `false` before a row changes and `true` after.
    fn reindex(&mut self, entity: &str, id: &Uuid, present: bool) {
        let Some(def) = self.schema.entities.get(entity) else {
            return;
        };
        let Some(record) = self.tables.get(entity).and_then(|t| t.get(id)) else {
            return;
        };
        Self::index_keys(def, &mut self.key_index, *id, &record.values, present);
        self.eq_index
            .get_mut()
            .update(def, *id, &record.values, present);
    }

    /// Starts a change set: writes from now on can be undone with [`Store::rollback`].
    /// (Cheaper than cloning the store: only the rows written are kept.)
    pub fn begin(&mut self) {
        self.journal = Some(Journal {
            version: self.version,
            deleted: self.deleted.len(),
            pending: self.pending.len(),
            schema: self.schema.clone(),
            rows: Vec::new(),
        });
    }

    /// Whether a change set is open (a `$batch` change set, a bulk message).
    pub fn in_change_set(&self) -> bool {
        self.journal.is_some()
    }

    /// Ends a change set, keeping its writes.
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Ends a change set, undoing its writes (rows, versions, deletions, webhook events,
    /// columns).
    pub fn rollback(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for (entity, id, before) in journal.rows.into_iter().rev() {
            self.reindex(&entity, &id, false);
            let table = self.tables.entry(entity.clone()).or_default();
            match before {
                Some(record) => {
                    table.insert(id, record);
                }
                None => {
                    table.remove(&id);
                }
            }
            self.reindex(&entity, &id, true);
        }
        self.version = journal.version;
        self.deleted.truncate(journal.deleted);
        self.pending.truncate(journal.pending);
        self.schema = journal.schema;
        // The change set may have added columns whose indexes no longer mean anything.
        self.eq_index.get_mut().clear();
    }

    fn remember(&mut self, entity: &str, id: &Uuid) {
        if self.journal.is_some() {
            let before = self.get(entity, id).cloned();
            if let Some(journal) = self.journal.as_mut() {
                journal.rows.push((entity.to_owned(), *id, before));
            }
        }
    }

    /// The next row version.
    pub fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// The table `entity`'s definition. Panics on unknown table (callers resolve it first).
    pub fn def(&self, entity: &str) -> &EntityDef {
        &self.schema.entities[entity]
    }

    /// The row `id` of `entity`.
    pub fn get(&self, entity: &str, id: &Uuid) -> Option<&Record> {
        self.tables.get(entity)?.get(id)
    }

    /// Resolves a URL key to a row id: `Ok(Some)` exists, `Ok(None)` no such row (the key's
    /// own id is then in `Key::Id`), `Err` the key is not valid for the table.
    pub fn resolve(&self, entity: &str, key: &Key) -> Result<Option<Uuid>, ApiResponse> {
        let def = self.def(entity);
        match key {
            Key::Id(id) => Ok(self.get(entity, id).map(|_| *id)),
            Key::Alternate(parts) => {
                if parts.len() == 1 && parts[0].0 == def.primary_id {
                    let id = parts[0].1.as_str().and_then(|s| Uuid::parse_str(s).ok());
                    return Ok(id.filter(|id| self.get(entity, id).is_some()));
                }
                let mut names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
                names.sort_unstable();
                let defined = def.alternate_keys.iter().any(|key| {
                    let mut k: Vec<&str> = key.iter().map(String::as_str).collect();
                    k.sort_unstable();
                    k == names
                });
                if !defined || names.iter().any(|n| def.column(n).is_none()) {
                    return Err(bad_request(
                        "0x80060888",
                        format!(
                            "The key attribute(s) '{}' do not form an alternate key defined on entity '{}'.",
                            names.join(","),
                            def.logical_name
                        ),
                    ));
                }
                let table = &self.tables[entity];
                let found = |r: &Record| {
                    parts
                        .iter()
                        .all(|(n, v)| r.values.get(n).map(|x| loose_eq(x, v)).unwrap_or(false))
                };
                // The equality index of a key column that is not a lookup holds every row
                // `loose_eq` could match (and more: it ignores case), in table order.
                let indexed = parts.iter().find_map(|(n, v)| {
                    let lookup = matches!(
                        def.column(n).map(|c| &c.kind),
                        Some(ColumnKind::Lookup { .. })
                    );
                    (!lookup)
                        .then(|| self.equal_candidates(def, n, v))
                        .flatten()
                });
                Ok(match indexed {
                    Some(ids) => ids.into_iter().find(|id| table.get(id).is_some_and(&found)),
                    None => table.iter().find(|(_, r)| found(r)).map(|(id, _)| *id),
                })
            }
        }
    }

    /// Resolves an `@odata.bind` value (`/accounts(<id>)`, absolute URL or alternate key).
    fn resolve_bind(&self, value: &Value) -> Result<(String, Uuid), ApiResponse> {
        let text = value
            .as_str()
            .ok_or_else(|| bad_request("0x80060888", "An @odata.bind value must be a URL."))?;
        let text = text.rsplit("/api/data/v9.2/").next().unwrap_or(text);
        let text = text.trim_start_matches('/');
        let open = text
            .find('(')
            .filter(|_| text.ends_with(')'))
            .ok_or_else(|| bad_request("0x80060888", format!("Bad @odata.bind URL '{text}'.")))?;
        let set = &text[..open];
        let def = self.schema.by_set(set).ok_or_else(|| {
            bad_request(
                "0x80060888",
                format!("Resource not found for the segment '{set}'."),
            )
        })?;
        let key = parse_key(&text[open + 1..text.len() - 1])?;
        match self.resolve(&def.logical_name, &key)? {
            Some(id) => Ok((def.logical_name.clone(), id)),
            None => Err(match key {
                Key::Id(id) => not_found(&def.logical_name, &id),
                Key::Alternate(_) => ApiResponse::error(
                    StatusCode::NOT_FOUND,
                    "0x80040217",
                    format!(
                        "A record with the specified key values does not exist in {} entity",
                        def.logical_name
                    ),
                ),
            }),
        }
    }

    /// Checks a JSON body against `entity`'s columns and turns it into stored values.
    pub fn convert(&self, entity: &str, body: &Value) -> Result<Map<String, Value>, ApiResponse> {
        let def = self.def(entity);
        let object = body
            .as_object()
            .ok_or_else(|| bad_request("0x80060888", "The request body must be a JSON object."))?;
        let mut out = Map::new();
        for (name, value) in object {
            if let Some(nav) = name.strip_suffix("@odata.bind") {
                let (column, target) = match def.column(nav) {
                    Some(c) => match &c.kind {
                        ColumnKind::Lookup { targets } if targets.len() == 1 => {
                            (c, targets[0].clone())
                        }
                        _ => return Err(unknown_property(def, nav)),
                    },
                    None => {
                        let found = nav.rsplit_once('_').and_then(|(col, target)| {
                            let c = def.column(col)?;
                            match &c.kind {
                                ColumnKind::Lookup { targets }
                                    if targets.iter().any(|t| t == target) =>
                                {
                                    Some((c, target.to_owned()))
                                }
                                _ => None,
                            }
                        });
                        found.ok_or_else(|| {
                            bad_request(
                                "0x80060888",
                                format!(
                                    "An undeclared property '{nav}' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values."
                                ),
                            )
                        })?
                    }
                };
                if value.is_null() {
                    out.insert(column.logical_name.clone(), Value::Null);
                    continue;
                }
                let (bound_entity, id) = self.resolve_bind(value)?;
                if bound_entity != target {
                    return Err(bad_request(
                        "0x80060888",
                        format!("The @odata.bind of '{nav}' must point at a {target} record."),
                    ));
                }
                out.insert(
                    column.logical_name.clone(),
                    json!({"id": id, "entity": target}),
                );
                continue;
            }
            if name.contains('@') {
                continue; // instance annotations are ignored on write
            }
            let column = def
                .column(name)
                .ok_or_else(|| unknown_property(def, name))?;
            let range = |what: &str| {
                bad_request(
                    "0x80044331",
                    format!(
                        "A validation error occurred. The value of '{name}' on record of type '{entity}' is outside the valid range. {what}"
                    ),
                )
            };
            let type_error = |expected: &str| {
                bad_request(
                    "0x80060888",
                    format!(
                        "Cannot convert the literal '{value}' to the expected type '{expected}'."
                    ),
                )
            };
            if value.is_null() {
                if matches!(column.kind, ColumnKind::PrimaryKey | ColumnKind::ReadOnly) {
                    return Err(range("It is read-only."));
                }
                out.insert(name.clone(), Value::Null);
                continue;
            }
            let stored = match &column.kind {
                ColumnKind::PrimaryKey | ColumnKind::Uniqueidentifier => {
                    let id = value
                        .as_str()
                        .and_then(|s| Uuid::parse_str(s).ok())
                        .ok_or_else(|| type_error("Edm.Guid"))?;
                    json!(id)
                }
                ColumnKind::String { max_length } | ColumnKind::Memo { max_length } => {
                    let s = value.as_str().ok_or_else(|| type_error("Edm.String"))?;
                    if s.chars().count() > *max_length {
                        return Err(range(&format!("Its length exceeds {max_length}.")));
                    }
                    value.clone()
                }
                ColumnKind::Boolean => {
                    value.as_bool().ok_or_else(|| type_error("Edm.Boolean"))?;
                    value.clone()
                }
                ColumnKind::Integer | ColumnKind::State | ColumnKind::Status => {
                    value.as_i64().ok_or_else(|| type_error("Edm.Int32"))?;
                    value.clone()
                }
                ColumnKind::Decimal | ColumnKind::Money => {
                    let n = match value {
                        Value::Number(_) => value.as_f64(),
                        Value::String(s) => s.parse::<f64>().ok(),
                        _ => None,
                    }
                    .ok_or_else(|| type_error("Edm.Decimal"))?;
                    serde_json::Number::from_f64(n)
                        .map(|x| {
                            if n.fract() == 0.0 && n.abs() < 1e15 {
                                json!(n as i64)
                            } else {
                                Value::Number(x)
                            }
                        })
                        .ok_or_else(|| type_error("Edm.Decimal"))?
                }
                ColumnKind::DateOnly => {
                    let s = value.as_str().ok_or_else(|| type_error("Edm.Date"))?;
                    let date =
                        chrono::NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                            .map_err(|_| type_error("Edm.Date"))?;
                    json!(date.format("%Y-%m-%d").to_string())
                }
                ColumnKind::DateTime => {
                    let s = value
                        .as_str()
                        .ok_or_else(|| type_error("Edm.DateTimeOffset"))?;
                    let t = chrono::DateTime::parse_from_rfc3339(s)
                        .map_err(|_| type_error("Edm.DateTimeOffset"))?;
                    json!(timestamp(t.with_timezone(&chrono::Utc)))
                }
                ColumnKind::Picklist { options } => {
                    let n = value.as_i64().ok_or_else(|| type_error("Edm.Int32"))?;
                    if !super::schema::allows(options, n) {
                        return Err(range(&format!("{n} is not a valid option.")));
                    }
                    value.clone()
                }
                ColumnKind::MultiSelect { options } => {
                    let s = value.as_str().ok_or_else(|| type_error("Edm.String"))?;
                    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
                        let n: i64 = part.trim().parse().map_err(|_| type_error("Edm.String"))?;
                        if !super::schema::allows(options, n) {
                            return Err(range(&format!("{n} is not a valid option.")));
                        }
                    }
                    value.clone()
                }
                ColumnKind::Lookup { .. } => {
                    return Err(bad_request(
                        "0x80060888",
                        format!(
                            "The property '{name}' is a lookup: set it with '{name}@odata.bind' (or '{name}_<table>@odata.bind')."
                        ),
                    ));
                }
                ColumnKind::ReadOnly => {
                    return Err(range("It is read-only."));
                }
            };
            out.insert(name.clone(), stored);
        }
        Ok(out)
    }

    /// Checks that `values` (the whole row after a write) do not repeat another row's
    /// alternate key: 412 DuplicateRecord otherwise.
    pub fn check_unique(
        &self,
        entity: &str,
        id: &Uuid,
        values: &Map<String, Value>,
    ) -> Result<(), ApiResponse> {
        let def = self.def(entity);
        for (n, key) in def.alternate_keys.iter().enumerate() {
            let Some(mine) = Self::key_value(key, values) else {
                continue;
            };
            let clash = self
                .key_index
                .get(&(entity.to_owned(), n))
                .and_then(|index| index.get(&mine))
                .is_some_and(|rows| rows.iter().any(|other| other != id));
            if clash {
                return Err(ApiResponse::error(
                    StatusCode::PRECONDITION_FAILED,
                    "0x80040237",
                    format!(
                        "A record that has the attribute values {} already exists. The entity key requires that this set of attributes contains unique values. Select unique values and try again.",
                        key.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Writes `values` into row `id` (creating it when `create`), bumping its version and
    /// queueing the webhook event. Values must come from [`Store::convert`].
    pub fn write(
        &mut self,
        entity: &str,
        id: Uuid,
        mut values: Map<String, Value>,
        create: bool,
        now: &str,
    ) -> u64 {
        if create {
            self.operations.creates += 1;
        } else {
            self.operations.updates += 1;
        }
        let version = self.next_version();
        let primary = self.def(entity).primary_id.clone();
        values.remove(&primary);
        values.insert("modifiedon".into(), json!(now));
        self.remember(entity, &id);
        self.reindex(entity, &id, false);
        let table = self.tables.get_mut(entity).expect("table exists");
        let record = table.entry(id).or_insert_with(|| Record {
            values: Map::new(),
            version,
        });
        record.version = version;
        if create {
            record.values.insert("createdon".into(), json!(now));
            record.values.insert(primary.clone(), json!(id));
        }
        for (k, v) in &values {
            record.values.insert(k.clone(), v.clone());
        }
        record.values.insert("versionnumber".into(), json!(version));
        if record.values.contains_key("firstname") || record.values.contains_key("lastname") {
            let full = [
                record.values.get("firstname"),
                record.values.get("lastname"),
            ]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ");
            record.values.insert("fullname".into(), json!(full));
        }
        self.reindex(entity, &id, true);
        let mut attributes = values;
        attributes.remove("modifiedon");
        attributes.insert(primary, json!(id));
        self.pending.push(WriteEvent {
            message: if create { "Create" } else { "Update" }.into(),
            entity: entity.to_owned(),
            id,
            attributes,
            row_version: Some(version),
        });
        version
    }

    /// Deletes row `id`, remembering it for change tracking.
    pub fn delete(&mut self, entity: &str, id: &Uuid) -> bool {
        self.remember(entity, id);
        self.reindex(entity, id, false);
        if self
            .tables
            .get_mut(entity)
            .and_then(|t| t.remove(id))
            .is_none()
        {
            return false;
        }
        self.operations.deletes += 1;
        let version = self.next_version();
        self.deleted.push(Deleted {
            entity: entity.to_owned(),
            id: *id,
            version,
        });
        let primary = self.def(entity).primary_id.clone();
        let mut attributes = Map::new();
        attributes.insert(primary, json!(id));
        self.pending.push(WriteEvent {
            message: "Delete".into(),
            entity: entity.to_owned(),
            id: *id,
            attributes,
            row_version: None,
        });
        true
    }
}

/// Adds `_x_value@OData.Community.Display.V1.FormattedValue` (the related row's primary name)
/// to the lookups of a row's JSON, as `Prefer: odata.include-annotations="*"` asks.
pub fn format_lookups(store: &Store, def: &EntityDef, record: &Record, out: &mut Value) {
    for (column, value) in &record.values {
        let Value::Object(lookup) = value else {
            continue;
        };
        let name = read_name(def, column);
        if out.get(&name).is_none() {
            continue;
        }
        let (Some(entity), Some(id)) = (
            lookup.get("entity").and_then(Value::as_str),
            lookup
                .get("id")
                .and_then(Value::as_str)
                .and_then(|i| Uuid::parse_str(i).ok()),
        ) else {
            continue;
        };
        let Some(target) = store.schema.entities.get(entity) else {
            continue;
        };
        if let Some(label) = store
            .get(entity, &id)
            .and_then(|r| r.values.get(&target.primary_name))
        {
            out[format!("{name}@OData.Community.Display.V1.FormattedValue")] = label.clone();
        }
    }
}

/// The JSON of a row as the Web API returns it: `@odata.etag`, the selected (or all) columns,
/// lookups as `_x_value` (with `@Microsoft.Dynamics.CRM.lookuplogicalname` when annotations
/// were asked for). `authvalue` of service endpoints is never returned (§5.1).
pub fn to_json(
    def: &EntityDef,
    record: &Record,
    select: Option<&[String]>,
    annotations: bool,
) -> Value {
    let mut out = Map::new();
    out.insert("@odata.etag".into(), json!(record.etag()));
    let columns: Vec<&str> = match select {
        Some(cols) => cols
            .iter()
            .filter_map(|c| column_of_read_name(def, c))
            .chain([def.primary_id.as_str()])
            .collect(),
        None => def.columns.keys().map(String::as_str).collect(),
    };
    for column in columns {
        if column == "authvalue" {
            continue;
        }
        let value = record.values.get(column).cloned().unwrap_or(Value::Null);
        let name = read_name(def, column);
        match value {
            Value::Object(o) => {
                if annotations {
                    out.insert(
                        format!("{name}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                        o.get("entity").cloned().unwrap_or(Value::Null),
                    );
                }
                out.insert(name, o.get("id").cloned().unwrap_or(Value::Null));
            }
            other => {
                out.insert(name, other);
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "cosell_referralidentifier";

    fn row(key: &str) -> Map<String, Value> {
        let mut values = Map::new();
        values.insert("name".into(), json!("x"));
        values.insert(KEY.into(), json!(key));
        values
    }

    fn add_key_column(store: &mut Store) {
        let column = json!({"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                            "AttributeType": "String", "SchemaName": "cosell_ReferralIdentifier", "MaxLength": 100});
        store.schema.add_attribute("opportunity", &column).unwrap();
    }

    #[test]
    fn a_key_over_rows_that_share_a_value_is_refused_and_a_key_is_defined_once() {
        let mut store = Store::new(super::super::schema::Schema::builtin());
        add_key_column(&mut store);
        store.write("opportunity", Uuid::new_v4(), row("R1"), true, "now");
        store.write("opportunity", Uuid::new_v4(), row("R1"), true, "now");
        assert!(
            store
                .add_alternate_key("opportunity", vec![KEY.into()])
                .is_err()
        );
        assert!(
            store.schema.entities["opportunity"]
                .alternate_keys
                .is_empty()
        );
        let mut store = Store::new(super::super::schema::Schema::builtin());
        add_key_column(&mut store);
        store.write("opportunity", Uuid::new_v4(), row("R1"), true, "now");
        store
            .add_alternate_key("opportunity", vec![KEY.into()])
            .unwrap();
        assert!(
            taken(&store, &Uuid::new_v4(), "R1"),
            "existing rows are indexed"
        );
        assert!(
            store
                .add_alternate_key("opportunity", vec![KEY.into()])
                .is_err()
        );
        assert!(
            store
                .add_alternate_key("opportunity", vec!["nope".into()])
                .is_err()
        );
    }

    fn taken(store: &Store, id: &Uuid, key: &str) -> bool {
        store.check_unique("opportunity", id, &row(key)).is_err()
    }

    #[test]
    fn an_alternate_key_stays_unique_through_writes_deletes_and_rollbacks() {
        let mut store = Store::new(super::super::schema::Schema::builtin());
        add_key_column(&mut store);
        store
            .add_alternate_key("opportunity", vec![KEY.into()])
            .unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        store.write("opportunity", a, row("R1"), true, "now");
        assert!(taken(&store, &b, "R1"), "another row cannot take R1");
        assert!(!taken(&store, &a, "R1"), "the row itself may keep it");
        // Changing A's key frees the old value and takes the new one.
        store.write("opportunity", a, row("R2"), false, "now");
        assert!(!taken(&store, &b, "R1"));
        assert!(taken(&store, &b, "R2"));
        // A change set that creates B with R1 and is rolled back leaves R1 free.
        store.begin();
        store.write("opportunity", b, row("R1"), true, "now");
        assert!(taken(&store, &Uuid::new_v4(), "R1"));
        store.rollback();
        assert!(!taken(&store, &Uuid::new_v4(), "R1"));
        // A rolled-back change of A's key gives A its old key back.
        store.begin();
        store.write("opportunity", a, row("R3"), false, "now");
        store.rollback();
        assert!(taken(&store, &b, "R2") && !taken(&store, &b, "R3"));
        // A deleted row no longer holds its key.
        assert!(store.delete("opportunity", &a));
        assert!(!taken(&store, &b, "R2"));
    }
}
