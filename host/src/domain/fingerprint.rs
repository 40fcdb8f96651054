//! Content fingerprints of records, for echo suppression.
//!
//! A fingerprint is a SHA-256 over the record's canonical JSON (members sorted) without what
//! changes on every write or what only cosell writes for the seller to read: OData
//! annotations, eTags, modification stamps and version numbers, the Audit column, and the
//! success/failure mark at the end of the name. So cosell's own write-back, and Dataverse
//! firing on an update that changed nothing, give the fingerprint already recorded: the
//! event is recognised as an echo without running a mapping or writing anything.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// What to leave out of an opportunity's fingerprint.
pub struct Volatile<'a> {
    /// The Audit column.
    pub audit_column: &'a str,
    /// The success and failure marks.
    pub marks: [&'a str; 2],
}

/// [`Volatile`] owned, for what outlives the configuration it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolatileColumns {
    /// The Audit column.
    pub audit_column: String,
    /// The success and failure marks.
    pub marks: [String; 2],
}

impl VolatileColumns {
    /// What to leave out, borrowed.
    pub fn borrow(&self) -> Volatile<'_> {
        Volatile {
            audit_column: &self.audit_column,
            marks: [&self.marks[0], &self.marks[1]],
        }
    }
}

impl Volatile<'_> {
    /// The same, owned.
    pub fn to_columns(&self) -> VolatileColumns {
        VolatileColumns {
            audit_column: self.audit_column.to_owned(),
            marks: self.marks.map(str::to_owned),
        }
    }
}

const VOLATILE_MEMBERS: [&str; 8] = [
    "eTag",
    "updatedDateTime",
    "modifiedon",
    "versionnumber",
    "links",
    "_modifiedby_value",
    "modifiedby",
    "timezoneruleversionnumber",
];

/// The fingerprint of a referral.
pub fn referral(doc: &Value) -> String {
    digest(&strip(
        doc,
        &Volatile {
            audit_column: "",
            marks: ["", ""],
        },
    ))
}

/// The fingerprint of an opportunity.
pub fn opportunity(doc: &Value, volatile: &Volatile<'_>) -> String {
    digest(&strip(doc, volatile))
}

/// The fingerprint of an opportunity without `columns` and what a write of them changes
/// (the lookup's `_<column>_value`, and for the customer also the primary contact): two reads
/// with the same value were the same apart from those columns.
pub fn opportunity_except(doc: &Value, volatile: &Volatile<'_>, columns: &[&str]) -> String {
    let mut doc = strip(doc, volatile);
    if let Value::Object(map) = &mut doc {
        for column in columns {
            map.remove(*column);
            map.remove(&format!("_{column}_value"));
            if *column == "customerid_account" {
                for related in [
                    "customerid_contact",
                    "_customerid_value",
                    "parentcontactid",
                    "_parentcontactid_value",
                ] {
                    map.remove(related);
                }
            }
        }
    }
    digest(&doc)
}

/// `name` without a trailing success or failure mark.
pub fn unmarked<'a>(name: &'a str, marks: &[&str; 2]) -> &'a str {
    let mut name = name.trim_end();
    for mark in marks.iter().filter(|m| !m.is_empty()) {
        if let Some(rest) = name.strip_suffix(mark) {
            name = rest.trim_end();
        }
    }
    name
}

fn strip(doc: &Value, volatile: &Volatile<'_>) -> Value {
    match doc {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    !k.contains('@')
                        && !VOLATILE_MEMBERS.contains(&k.as_str())
                        && (volatile.audit_column.is_empty() || k.as_str() != volatile.audit_column)
                })
                .map(|(k, v)| match (k.as_str(), v) {
                    ("name", Value::String(name)) => (
                        k.clone(),
                        Value::String(unmarked(name, &volatile.marks).to_owned()),
                    ),
                    _ => (k.clone(), strip(v, volatile)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| strip(v, volatile)).collect()),
        other => other.clone(),
    }
}

fn digest(value: &Value) -> String {
    // serde_json's maps are sorted (no preserve_order), so the text is canonical.
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cosell_write_backs_and_stamps_do_not_change_the_fingerprint() {
        let volatile = Volatile {
            audit_column: "cosell_audit",
            marks: ["✔", "✖"],
        };
        let before = json!({"name": "Deal", "estimatedvalue": 5, "modifiedon": "1", "@odata.etag": "W/\"1\""});
        let after = json!({"name": "Deal ✔", "estimatedvalue": 5, "modifiedon": "2", "@odata.etag": "W/\"2\"", "cosell_audit": "line"});
        assert_eq!(
            opportunity(&before, &volatile),
            opportunity(&after, &volatile)
        );
        let changed = json!({"name": "Deal ✔", "estimatedvalue": 6});
        assert_ne!(
            opportunity(&before, &volatile),
            opportunity(&changed, &volatile)
        );
        assert_eq!(unmarked("Deal ✔ ", &["✔", "✖"]), "Deal");
    }
}
