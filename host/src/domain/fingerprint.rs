//! Content fingerprints of records, for echo suppression.
//!
//! A fingerprint is a SHA-256 over the record's canonical JSON (members sorted) without what
//! changes on every write or what only cosell writes for the seller to read: OData
//! annotations, eTags, modification stamps and version numbers, the Audit column, and the
//! success/failure mark at the end of the name. So cosell's own write-back, and Dataverse
//! firing on an update that changed nothing, give the fingerprint already recorded: the
//! event is recognised as an echo without running a mapping or writing anything.
//!
//! The canonical text is written straight into the hash as the record is walked, leaving out
//! what the fingerprint leaves out: no copy of the record and no string of it is made (a
//! fingerprint is taken several times per change, of documents of a few KB).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{self, Write};

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
    let volatile = Volatile {
        audit_column: "",
        marks: ["", ""],
    };
    digest(doc, &volatile, |_| false)
}

/// The fingerprint of an opportunity.
pub fn opportunity(doc: &Value, volatile: &Volatile<'_>) -> String {
    digest(doc, volatile, |_| false)
}

/// The fingerprint of an opportunity without `columns` and what a write of them changes
/// (the lookup's `_<column>_value`, and for the customer also the primary contact): two reads
/// with the same value were the same apart from those columns.
pub fn opportunity_except(doc: &Value, volatile: &Volatile<'_>, columns: &[&str]) -> String {
    let customer = columns.contains(&"customerid_account");
    digest(doc, volatile, |member| {
        let lookup = member
            .strip_prefix('_')
            .and_then(|m| m.strip_suffix("_value"));
        columns.contains(&member)
            || lookup.is_some_and(|column| columns.contains(&column))
            || (customer && CUSTOMER_RELATED.contains(&member))
    })
}

/// What a write of the customer (`customerid_account`) changes besides it.
const CUSTOMER_RELATED: [&str; 4] = [
    "customerid_contact",
    "_customerid_value",
    "parentcontactid",
    "_parentcontactid_value",
];

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

/// Whether member `key` of any object is part of the fingerprint.
fn kept(key: &str, volatile: &Volatile<'_>) -> bool {
    !key.contains('@')
        && !VOLATILE_MEMBERS.contains(&key)
        && (volatile.audit_column.is_empty() || key != volatile.audit_column)
}

/// SHA-256 of `doc`'s canonical text without what [`kept`] leaves out, nor the top-level
/// members `left_out` names, and with every `name` unmarked.
fn digest(doc: &Value, volatile: &Volatile<'_>, left_out: impl Fn(&str) -> bool) -> String {
    let mut hash = Hashing(Sha256::new());
    // Writing into a hash cannot fail.
    write_canonical(&mut hash, doc, volatile, &left_out).expect("hashing");
    hex::encode(hash.0.finalize())
}

/// Writes `value` as serde_json writes it compactly (its maps are sorted: no
/// `preserve_order`, so the text is canonical), leaving out what the fingerprint leaves out.
fn write_canonical(
    out: &mut Hashing,
    value: &Value,
    volatile: &Volatile<'_>,
    left_out: &dyn Fn(&str) -> bool,
) -> io::Result<()> {
    match value {
        Value::Object(map) => {
            out.write_all(b"{")?;
            let members = map
                .iter()
                .filter(|(k, _)| kept(k, volatile) && !left_out(k));
            for (n, (key, member)) in members.enumerate() {
                if n > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, key)?;
                out.write_all(b":")?;
                match (key.as_str(), member) {
                    ("name", Value::String(name)) => {
                        serde_json::to_writer(&mut *out, unmarked(name, &volatile.marks))?
                    }
                    _ => write_canonical(out, member, volatile, &|_| false)?,
                }
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(out, item, volatile, &|_| false)?;
            }
            out.write_all(b"]")
        }
        scalar => Ok(serde_json::to_writer(&mut *out, scalar)?),
    }
}

/// A SHA-256 written to as a stream.
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

    /// The fingerprint as it was first written (a stripped copy of the record, serialised,
    /// hashed): the links in every store hold fingerprints made this way.
    fn as_first_written(doc: &Value, volatile: &Volatile<'_>, columns: &[&str]) -> String {
        fn strip(doc: &Value, volatile: &Volatile<'_>) -> Value {
            match doc {
                Value::Object(map) => Value::Object(
                    map.iter()
                        .filter(|(k, _)| kept(k, volatile))
                        .map(|(k, v)| match (k.as_str(), v) {
                            ("name", Value::String(name)) => (
                                k.clone(),
                                Value::String(unmarked(name, &volatile.marks).to_owned()),
                            ),
                            _ => (k.clone(), strip(v, volatile)),
                        })
                        .collect(),
                ),
                Value::Array(items) => {
                    Value::Array(items.iter().map(|v| strip(v, volatile)).collect())
                }
                other => other.clone(),
            }
        }
        let mut doc = strip(doc, volatile);
        if let Value::Object(map) = &mut doc {
            for column in columns {
                map.remove(*column);
                map.remove(&format!("_{column}_value"));
                if *column == "customerid_account" {
                    for related in CUSTOMER_RELATED {
                        map.remove(related);
                    }
                }
            }
        }
        hex::encode(Sha256::digest(doc.to_string().as_bytes()))
    }

    #[test]
    fn fingerprints_are_those_the_stores_already_hold() {
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-mappings/fixtures");
        let mut docs = vec![json!({
            "name": "Deal \"quoted\" ✖", "n": [1.5, -2, 1e300, null, true, {"a@odata.x": 1, "b": "\u{1}é"}],
            "empty": {}, "none": [], "_customerid_value": "c", "customerid_account": {"name": "Acme ✔"},
            "cosell_audit": "x", "versionnumber": 7, "nested": {"modifiedon": "t", "name": "Inner ✔"}
        })];
        for direction in ["partner-center-to-crm", "crm-to-partner-center"] {
            for case in std::fs::read_dir(fixtures.join(direction)).unwrap() {
                for file in ["input.json", "current.json", "expected.json"] {
                    if let Ok(text) =
                        std::fs::read_to_string(case.as_ref().unwrap().path().join(file))
                    {
                        docs.push(serde_json::from_str(&text).unwrap());
                    }
                }
            }
        }
        assert!(docs.len() > 20, "the fixtures were read: {}", docs.len());
        let volatile = Volatile {
            audit_column: "cosell_audit",
            marks: ["✔", "✖"],
        };
        let none = Volatile {
            audit_column: "",
            marks: ["", ""],
        };
        for doc in &docs {
            assert_eq!(referral(doc), as_first_written(doc, &none, &[]), "{doc}");
            assert_eq!(
                opportunity(doc, &volatile),
                as_first_written(doc, &volatile, &[])
            );
            for columns in [
                &["estimatedvalue", "name"][..],
                &["customerid_account"],
                &["parentcontactid", "transactioncurrencyid"],
            ] {
                assert_eq!(
                    opportunity_except(doc, &volatile, columns),
                    as_first_written(doc, &volatile, columns),
                    "{columns:?} of {doc}"
                );
            }
        }
    }
}
