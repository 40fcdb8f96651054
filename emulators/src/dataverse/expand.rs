//! `$expand` of navigation properties on GET (§4.4, and the read shape docs/mapping.md uses:
//! `$expand=customerid_account($expand=contact_customer_accounts),parentcontactid,transactioncurrencyid`).
//!
//! Single-valued navigation properties are the lookups: `<column>` for a lookup with one target
//! table, `<column>_<table>` for a polymorphic one (`customerid_account`, `customerid_contact`);
//! the expanded value is the related row (or `null`). Collection-valued ones are the few
//! one-to-many relationships listed in [`COLLECTIONS`] (e.g. `contact_customer_accounts`: the
//! contacts whose `parentcustomerid` is the account). Nested options: `$select` and `$expand`,
//! separated by `;`. Choice: other relationship names answer 400, as an unknown navigation
//! property does in the real service.

use super::api::{ApiResult, bad_request};
use super::query::{parse_select, unknown_column};
use super::record::Record;
use super::records::{Store, to_json};
use super::schema::{ColumnKind, EntityDef};
use serde_json::Value;

/// (table, navigation property, related table, lookup column of the related table).
pub const COLLECTIONS: &[(&str, &str, &str, &str)] = &[
    (
        "account",
        "contact_customer_accounts",
        "contact",
        "parentcustomerid",
    ),
    (
        "account",
        "opportunity_customer_accounts",
        "opportunity",
        "customerid",
    ),
    (
        "account",
        "opportunity_parent_account",
        "opportunity",
        "parentaccountid",
    ),
    ("account", "lead_customer_accounts", "lead", "customerid"),
    (
        "contact",
        "contact_customer_contacts",
        "contact",
        "parentcustomerid",
    ),
    (
        "contact",
        "opportunity_customer_contacts",
        "opportunity",
        "customerid",
    ),
    (
        "contact",
        "opportunity_parent_contact",
        "opportunity",
        "parentcontactid",
    ),
];

/// One `$expand` item.
#[derive(Debug, Clone)]
pub struct Expand {
    pub navigation: String,
    /// The related table.
    pub target: String,
    /// `Some(column)`: a collection, related rows whose `column` points here.
    pub collection_column: Option<String>,
    pub select: Option<Vec<String>>,
    pub expand: Vec<Expand>,
}

/// Splits on `sep` outside parentheses.
fn split_top(input: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(input[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(input[start..].trim());
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// Parses a `$expand` value against `def`.
pub fn parse(store: &Store, def: &EntityDef, input: &str) -> ApiResult<Vec<Expand>> {
    split_top(input, ',')
        .into_iter()
        .map(|item| {
            let (navigation, options) = match item.find('(') {
                Some(open) if item.ends_with(')') => {
                    (item[..open].trim(), &item[open + 1..item.len() - 1])
                }
                _ => (item, ""),
            };
            let (target, collection_column) = resolve(def, navigation)?;
            let target_def = store.def(&target).clone();
            let mut expand = Expand {
                navigation: navigation.to_owned(),
                target,
                collection_column,
                select: None,
                expand: Vec::new(),
            };
            for option in split_top(options, ';') {
                match option.split_once('=') {
                    Some(("$select", v)) => expand.select = Some(parse_select(&target_def, v)?),
                    Some(("$expand", v)) => expand.expand = parse(store, &target_def, v)?,
                    _ => {
                        return Err(bad_request(
                            "0x80060888",
                            format!("The $expand option '{option}' is not supported."),
                        ));
                    }
                }
            }
            Ok(expand)
        })
        .collect()
}

fn resolve(def: &EntityDef, navigation: &str) -> ApiResult<(String, Option<String>)> {
    if let Some((_, _, related, column)) = COLLECTIONS
        .iter()
        .find(|(table, nav, _, _)| *table == def.logical_name && *nav == navigation)
    {
        return Ok(((*related).to_owned(), Some((*column).to_owned())));
    }
    let lookup = |column: &str| match def.column(column).map(|c| &c.kind) {
        Some(ColumnKind::Lookup { targets }) => Some(targets.clone()),
        _ => None,
    };
    if let Some(targets) = lookup(navigation)
        && targets.len() == 1
    {
        return Ok((targets[0].clone(), None));
    }
    if let Some((column, table)) = navigation.rsplit_once('_')
        && let Some(targets) = lookup(column)
        && targets.iter().any(|t| t == table)
    {
        return Ok((table.to_owned(), None));
    }
    Err(unknown_column(def, navigation))
}

fn lookup_column(def: &EntityDef, expand: &Expand) -> String {
    if def.column(&expand.navigation).is_some() {
        expand.navigation.clone()
    } else {
        expand
            .navigation
            .rsplit_once('_')
            .map(|(c, _)| c.to_owned())
            .unwrap_or_default()
    }
}

/// Adds the expanded properties of `record` (of table `def`) to its JSON `out`.
pub fn apply(store: &Store, def: &EntityDef, record: &Record, out: &mut Value, items: &[Expand]) {
    for item in items {
        let target_def = store.def(&item.target);
        let render = |related: &Record| {
            let mut json = to_json(target_def, related, item.select.as_deref(), false);
            apply(store, target_def, related, &mut json, &item.expand);
            json
        };
        let id = record.values.get(&def.primary_id).and_then(Value::as_str);
        let value = match &item.collection_column {
            Some(column) => {
                let table = &store.tables[&item.target];
                let refers = |r: &&Record| {
                    r.values
                        .get(column)
                        .and_then(|v| v.get("id"))
                        .and_then(Value::as_str)
                        == id
                };
                // The lookup's equality index holds every row that refers to this one (in
                // table order), and a few more that `refers` leaves out.
                let lookup = matches!(
                    target_def.column(column).map(|c| &c.kind),
                    Some(ColumnKind::Lookup { .. })
                );
                let indexed = id.filter(|_| lookup).and_then(|id| {
                    let literal = Value::String(id.to_owned());
                    store.equal_candidates(target_def, &format!("_{column}_value"), &literal)
                });
                let rows: Vec<&Record> = match indexed {
                    Some(ids) => ids
                        .iter()
                        .filter_map(|i| table.get(i))
                        .filter(refers)
                        .collect(),
                    None => table.values().filter(refers).collect(),
                };
                Value::Array(rows.into_iter().map(render).collect())
            }
            None => record
                .values
                .get(&lookup_column(def, item))
                .filter(|v| v.get("entity").and_then(Value::as_str) == Some(&item.target))
                .and_then(|v| v.get("id")?.as_str())
                .and_then(|id| uuid::Uuid::parse_str(id).ok())
                .and_then(|id| store.get(&item.target, &id))
                .map(render)
                .unwrap_or(Value::Null),
        };
        out[&item.navigation] = value;
    }
}
