//! Per-field conflict rules: when both sides changed a field since the last sync, who wins.
//!
//! "Changed since the last sync" compares the field with the snapshot kept in the link when
//! the pair was last in sync, on both sides: the value about to be written must differ from
//! the snapshot (its side changed it) and so must the value it would replace (the other side
//! changed it too) for a conflict. A field only one side changed always flows to the other
//! side, and is never reverted by a run from the side that did not change it;
//! the rules (`[sync.conflicts]`, [`Owner`]) decide only real conflicts. `most-recent` compares
//! the referral's `updatedDateTime` with the opportunity's `modifiedon`. Without a snapshot
//! (the first sync of a pair) there is no conflict: the side that triggered the sync wins.

use super::compare::{at, equal, holds};
use crate::config::{ConflictConfig, Owner};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// A field that both sides changed, and who won it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The field: a Dataverse column (Partner Center → CRM) or a JSON Patch path of the
    /// referral (CRM → Partner Center).
    pub field: String,
    /// The side whose value was kept: `partner-center` or `crm`.
    pub winner: &'static str,
}

fn modified(doc: &Value, member: &str) -> Option<DateTime<Utc>> {
    doc.get(member)?
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Whether the Partner Center value wins a conflict on `field`.
fn partner_center_wins(
    rules: &ConflictConfig,
    field: &str,
    referral: &Value,
    opportunity: &Value,
) -> bool {
    match rules.owner(field) {
        Owner::PartnerCenter => true,
        Owner::Crm => false,
        Owner::MostRecent => {
            match (
                modified(referral, "updatedDateTime"),
                modified(opportunity, "modifiedon"),
            ) {
                (Some(pc), Some(crm)) => pc >= crm,
                // Without both stamps the change being processed wins.
                _ => true,
            }
        }
    }
}

/// Filters the columns a Partner Center → CRM run wants to write: drops what the opportunity
/// already holds, and conflicts the CRM wins. `unchanged_name` says whether the name differs
/// only by a sync mark. Returns the columns to write and the conflicts seen.
pub fn columns_to_write(
    rules: &ConflictConfig,
    output: Map<String, Value>,
    referral: &Value,
    current: &Value,
    snapshot: Option<&Value>,
    unchanged_name: impl Fn(&str, &str) -> bool,
) -> (Map<String, Value>, Vec<Conflict>) {
    let mut write = Map::new();
    let mut conflicts = Vec::new();
    for (column, value) in output {
        let held = at(current, &format!("/{column}"));
        let same_name = column == "name"
            && matches!((held, &value), (Value::String(a), Value::String(b)) if unchanged_name(a, b));
        if holds(held, &value) || same_name {
            continue;
        }
        let synced = snapshot.map(|s| at(s, &format!("/{column}")));
        // Partner Center did not change this field since the last sync: nothing to bring over
        // (the CRM's own change, if any, flows the other way).
        let pc_unchanged = synced.is_some_and(|synced| {
            holds(synced, &value)
                || matches!((synced, &value), (Value::String(a), Value::String(b)) if unchanged_name(a, b) && column == "name")
        });
        if pc_unchanged {
            continue;
        }
        let crm_changed = synced.is_some_and(|synced| !equal(synced, held));
        if crm_changed {
            let pc_wins = partner_center_wins(rules, &column, referral, current);
            conflicts.push(Conflict {
                field: column.clone(),
                winner: if pc_wins { "partner-center" } else { "crm" },
            });
            if !pc_wins {
                continue;
            }
        }
        write.insert(column, value);
    }
    (write, conflicts)
}

/// Filters a CRM → Partner Center JSON Patch: drops operations on fields Partner Center
/// changed too and wins. Returns the operations to send and the conflicts seen.
pub fn ops_to_send(
    rules: &ConflictConfig,
    ops: Vec<Value>,
    referral: &Value,
    opportunity: &Value,
    snapshot: Option<&Value>,
) -> (Vec<Value>, Vec<Conflict>) {
    let mut send = Vec::new();
    let mut conflicts = Vec::new();
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default().to_owned();
        // The CRM's value is the one last synced: the CRM did not change this field, so a
        // Partner Center change must not be reverted (it flows the other way).
        if snapshot.is_some_and(|s| equal(at(s, &path), &op["value"])) {
            continue;
        }
        let pc_changed = snapshot.is_some_and(|s| !equal(at(s, &path), at(referral, &path)));
        if pc_changed {
            let pc_wins = partner_center_wins(rules, &path, referral, opportunity);
            conflicts.push(Conflict {
                field: path.clone(),
                winner: if pc_wins { "partner-center" } else { "crm" },
            });
            if pc_wins {
                continue;
            }
        }
        send.push(op);
    }
    (send, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(default: Owner) -> ConflictConfig {
        ConflictConfig {
            default,
            fields: Default::default(),
        }
    }

    #[test]
    fn a_field_only_partner_center_changed_flows_and_a_conflict_follows_the_rule() {
        let snapshot = json!({"estimatedvalue": 100, "description": "old"});
        let current = json!({"estimatedvalue": 150, "description": "old", "modifiedon": "2026-01-02T00:00:00Z"});
        let referral = json!({"updatedDateTime": "2026-01-01T00:00:00Z"});
        let output = json!({"estimatedvalue": 200, "description": "new"})
            .as_object()
            .unwrap()
            .clone();
        let same = |_: &str, _: &str| false;
        // CRM changed the value too and is more recent: it keeps it; the notes flow.
        let (write, conflicts) = columns_to_write(
            &rules(Owner::MostRecent),
            output.clone(),
            &referral,
            &current,
            Some(&snapshot),
            same,
        );
        assert_eq!(
            write,
            json!({"description": "new"}).as_object().unwrap().clone()
        );
        assert_eq!(
            conflicts,
            vec![Conflict {
                field: "estimatedvalue".into(),
                winner: "crm"
            }]
        );
        // Partner Center owns everything: both flow.
        let (write, _) = columns_to_write(
            &rules(Owner::PartnerCenter),
            output,
            &referral,
            &current,
            Some(&snapshot),
            same,
        );
        assert_eq!(write.len(), 2);
    }

    #[test]
    fn a_field_only_the_target_side_changed_is_not_reverted() {
        // Partner Center changed the deal value; the CRM changed only its notes. A CRM run
        // must not send the old deal value back.
        let snapshot = json!({"details": {"dealValue": 1, "notes": "a"}});
        let referral = json!({"details": {"dealValue": 2, "notes": "a"}});
        let ops = vec![
            json!({"op": "replace", "path": "/details/dealValue", "value": 1}),
            json!({"op": "replace", "path": "/details/notes", "value": "b"}),
        ];
        let (send, conflicts) = ops_to_send(
            &rules(Owner::Crm),
            ops,
            &referral,
            &json!({}),
            Some(&snapshot),
        );
        assert_eq!(
            send,
            vec![json!({"op": "replace", "path": "/details/notes", "value": "b"})]
        );
        assert!(conflicts.is_empty());
        // And the other way: the CRM changed the value; Partner Center's run keeps it.
        let snapshot = json!({"estimatedvalue": 100});
        let current = json!({"estimatedvalue": 150});
        let output = json!({"estimatedvalue": 100}).as_object().unwrap().clone();
        let (write, conflicts) = columns_to_write(
            &rules(Owner::PartnerCenter),
            output,
            &json!({}),
            &current,
            Some(&snapshot),
            |_, _| false,
        );
        assert!(write.is_empty() && conflicts.is_empty());
    }

    #[test]
    fn crm_changes_lose_to_a_field_partner_center_owns() {
        let mut config = rules(Owner::Crm);
        config
            .fields
            .insert("/details/dealValue".into(), Owner::PartnerCenter);
        let snapshot = json!({"details": {"dealValue": 1, "notes": "a"}});
        let referral = json!({"details": {"dealValue": 2, "notes": "b"}});
        let ops = vec![
            json!({"op": "replace", "path": "/details/dealValue", "value": 3}),
            json!({"op": "replace", "path": "/details/notes", "value": "c"}),
        ];
        let (send, conflicts) = ops_to_send(&config, ops, &referral, &json!({}), Some(&snapshot));
        assert_eq!(
            send,
            vec![json!({"op": "replace", "path": "/details/notes", "value": "c"})]
        );
        assert_eq!(conflicts.len(), 2);
    }
}
