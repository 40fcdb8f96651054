//! What a write to either service will change, recorded before it is sent.
//!
//! A run reads both records, maps one onto the other, writes the difference (a JSON Patch to
//! the referral, or changed columns to the opportunity) and only then saves the link as synced.
//! Should the run die in between (a crash, a SIGKILL) with the write applied, the written record
//! holds cosell's values while the link still records the state before them. The next run of
//! either side would then take cosell's own write for a change by the other side, and an edit
//! made on the source side meanwhile for the other half of a conflict, which `most-recent` gives
//! to the newer write: cosell's own, whose values (the source's older ones) then overwrite the
//! edit on both sides. The crash drills found both directions.
//!
//! So a run saves, before the write, what it changes and the record it was mapped from
//! ([`record_patch`], [`record_update`]), and the first run that reads the written record
//! afterwards settles it ([`settle_referral`], [`settle_opportunity`]). Every value written
//! differs from what the record held when the run read it, and a write applies all of its
//! values or none, so:
//! - the record holds at least one of the written values: the write landed. Both snapshots
//!   become what the run would have saved: the written record's with every value applied (a
//!   field changed again since still differs from it, and is still a change), the source's the
//!   record it was mapped from. The fingerprints are left as they were: the source record runs
//!   again and finds nothing to send, or its newer edit;
//! - it holds none: the write did not land, and nothing changes (the source's event, run again,
//!   sends it again).
//!
//! The run that sent the write clears the record when it saves its result ([`clear`]). Runs of
//! one pair never overlap (one lock key), so a link has at most one write in flight.

use super::compare::{apply_ops, at, holds};
use super::create_intent::{as_written, plain_columns};
use crate::store::Link;
use serde_json::{Map, Value, json};

/// The `to` of a PATCH to the referral.
const TO_PARTNER_CENTER: &str = "partner-center";
/// The `to` of an update of the opportunity.
const TO_DATAVERSE: &str = "dataverse";

/// Records in `link` that JSON Patch `ops` are about to be sent to the referral, mapped from
/// `opportunity`.
pub(super) fn record_patch(link: &mut Link, ops: &[Value], opportunity: &Value) {
    link.pending_write =
        Some(json!({"to": TO_PARTNER_CENTER, "ops": ops, "from": opportunity}).to_string());
}

/// Records in `link` that `columns` are about to be written to the opportunity, mapped from
/// `referral`.
pub(super) fn record_update(link: &mut Link, columns: &Map<String, Value>, referral: &Value) {
    link.pending_write =
        Some(json!({"to": TO_DATAVERSE, "columns": columns, "from": referral}).to_string());
}

/// The write's result is saved with the link: nothing is pending any more.
pub(super) fn clear(link: &mut Link) {
    link.pending_write = None;
}

/// The link as the store should hold it while `link`'s write is in flight: `on_record` (the
/// link before the run changed it) with the write's record. Also what a run starts over from
/// when its write was refused (412): the record is settled against the next read.
pub(super) fn intent(link: &Link, on_record: &Link) -> Link {
    Link {
        id: link.id.or(on_record.id),
        pending_write: link.pending_write.clone(),
        ..on_record.clone()
    }
}

/// The pending write of `link` if it goes `to` that service, taken off the link.
fn take_pending(link: &mut Link, to: &str) -> Option<Value> {
    let pending: Value = match serde_json::from_str(link.pending_write.as_deref()?) {
        Ok(pending) => pending,
        Err(_) => {
            tracing::warn!(
                referral = link.referral_id.as_deref().unwrap_or_default(),
                "an unreadable record of a pending write was dropped"
            );
            link.pending_write = None;
            return None;
        }
    };
    if pending["to"] != to {
        return None;
    }
    link.pending_write = None;
    Some(pending)
}

/// Settles a PATCH recorded in `link` against `referral` as just read (see the module doc).
/// Answers whether there was one.
pub(super) fn settle_referral(link: &mut Link, referral: &Value) -> bool {
    let Some(pending) = take_pending(link, TO_PARTNER_CENTER) else {
        return false;
    };
    let ops = pending["ops"].as_array().cloned().unwrap_or_default();
    let landed = ops.iter().any(|op| {
        op["path"]
            .as_str()
            .is_some_and(|path| holds(at(referral, path), &op["value"]))
    });
    if landed {
        let mut snapshot = parsed(link.pc_snapshot.as_deref()).unwrap_or_else(|| referral.clone());
        apply_ops(&mut snapshot, &ops);
        link.pc_snapshot = Some(snapshot.to_string());
        if pending["from"].is_object() {
            link.crm_snapshot = Some(pending["from"].to_string());
        }
    }
    settled(link, "a Partner Center PATCH", landed);
    true
}

/// Settles an opportunity update recorded in `link` against `opportunity` as just read (see
/// the module doc). Answers whether there was one.
pub(super) fn settle_opportunity(link: &mut Link, opportunity: &Value) -> bool {
    let Some(pending) = take_pending(link, TO_DATAVERSE) else {
        return false;
    };
    let columns = pending["columns"].as_object().cloned().unwrap_or_default();
    let landed = plain_columns(&columns)
        .any(|(column, value)| holds(at(opportunity, &format!("/{column}")), value));
    if landed {
        let base = parsed(link.crm_snapshot.as_deref()).unwrap_or_else(|| opportunity.clone());
        link.crm_snapshot = Some(as_written(&base, &columns).to_string());
        if pending["from"].is_object() {
            link.pc_snapshot = Some(pending["from"].to_string());
        }
    }
    settled(link, "a Dataverse update", landed);
    true
}

fn parsed(text: Option<&str>) -> Option<Value> {
    text.and_then(|s| serde_json::from_str(s).ok())
}

fn settled(link: &Link, write: &str, landed: bool) {
    tracing::info!(
        referral = link.referral_id.as_deref().unwrap_or_default(),
        opportunity = link.opportunity_id.as_deref().unwrap_or_default(),
        landed,
        "settled {write} whose run ended before it saved the result"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_with(pc: Value, crm: Value) -> Link {
        Link {
            referral_id: Some("r".into()),
            pc_snapshot: Some(pc.to_string()),
            crm_snapshot: Some(crm.to_string()),
            ..Link::default()
        }
    }

    fn replace(path: &str, value: Value) -> Value {
        json!({"op": "replace", "path": path, "value": value})
    }

    fn snapshot(text: &Option<String>) -> Value {
        serde_json::from_str(text.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn a_landed_patch_moves_both_snapshots_to_what_its_run_would_have_saved() {
        let before = json!({"details": {"dealValue": 100, "notes": "a"}});
        let mut link = link_with(before, json!({"estimatedvalue": 100}));
        let sent = [
            replace("/details/dealValue", json!(200)),
            replace("/details/notes", json!("b")),
        ];
        record_patch(&mut link, &sent, &json!({"estimatedvalue": 200}));
        // Only the run that reads the referral settles a PATCH.
        assert!(!settle_opportunity(
            &mut link,
            &json!({"estimatedvalue": 200})
        ));
        let referral = json!({"details": {"dealValue": 200, "notes": "b"}});
        assert!(settle_referral(&mut link, &referral));
        assert_eq!(link.pending_write, None);
        assert_eq!(snapshot(&link.pc_snapshot), referral);
        assert_eq!(snapshot(&link.crm_snapshot), json!({"estimatedvalue": 200}));
        // Settled once: a second read finds nothing pending.
        assert!(!settle_referral(&mut link, &referral));
    }

    #[test]
    fn a_patch_that_did_not_land_leaves_everything_as_it_was() {
        let before = json!({"details": {"dealValue": 100, "notes": "a"}});
        let mut link = link_with(before.clone(), json!({"estimatedvalue": 100}));
        record_patch(
            &mut link,
            &[replace("/details/dealValue", json!(200))],
            &json!({"estimatedvalue": 200}),
        );
        // Microsoft changed the notes; the deal value is as before the PATCH.
        let referral = json!({"details": {"dealValue": 100, "notes": "c"}});
        assert!(settle_referral(&mut link, &referral));
        assert_eq!(link.pending_write, None);
        assert_eq!(
            snapshot(&link.pc_snapshot),
            before,
            "nothing is taken as synced"
        );
        assert_eq!(snapshot(&link.crm_snapshot), json!({"estimatedvalue": 100}));
    }

    #[test]
    fn a_field_microsoft_changed_after_a_landed_patch_stays_its_change() {
        let before = json!({"details": {"dealValue": 100, "notes": "a"}});
        let mut link = link_with(before, json!({"estimatedvalue": 100, "description": "a"}));
        record_patch(
            &mut link,
            &[
                replace("/details/dealValue", json!(200)),
                replace("/details/notes", json!("b")),
            ],
            &json!({"estimatedvalue": 200, "description": "b"}),
        );
        // The notes show the PATCH landed; Microsoft set the deal value to 300 since.
        let referral = json!({"details": {"dealValue": 300, "notes": "b"}});
        assert!(settle_referral(&mut link, &referral));
        let synced = snapshot(&link.pc_snapshot);
        assert_eq!(
            synced["details"]["notes"], "b",
            "cosell's own value is in sync"
        );
        assert_eq!(
            synced["details"]["dealValue"], 200,
            "cosell's value is the synced one, so Microsoft's 300 is a change"
        );
        assert_eq!(
            snapshot(&link.crm_snapshot),
            json!({"estimatedvalue": 200, "description": "b"})
        );
    }

    #[test]
    fn a_landed_update_of_the_opportunity_moves_both_snapshots() {
        let referral_before = json!({"details": {"dealValue": 100}});
        let mut link = link_with(
            referral_before,
            json!({"estimatedvalue": 100, "description": "seller's"}),
        );
        let mut columns = Map::new();
        columns.insert("estimatedvalue".into(), json!(200));
        columns.insert(
            "parentcontactid@odata.bind".into(),
            json!("/contacts(00000000-0000-0000-0000-000000000001)"),
        );
        let referral = json!({"details": {"dealValue": 200}});
        record_update(&mut link, &columns, &referral);
        // Only the run that reads the opportunity settles an update.
        assert!(!settle_referral(&mut link, &referral));
        let opportunity = json!({"estimatedvalue": 200, "description": "newer"});
        assert!(settle_opportunity(&mut link, &opportunity));
        assert_eq!(link.pending_write, None);
        assert_eq!(snapshot(&link.pc_snapshot), referral);
        assert_eq!(
            snapshot(&link.crm_snapshot),
            json!({"estimatedvalue": 200, "description": "seller's"}),
            "the written column is in sync; the seller's newer description is still a change"
        );
    }

    #[test]
    fn an_update_that_did_not_land_leaves_everything_as_it_was() {
        let mut link = link_with(
            json!({"details": {"dealValue": 100}}),
            json!({"estimatedvalue": 100}),
        );
        let mut columns = Map::new();
        columns.insert("estimatedvalue".into(), json!(200));
        record_update(&mut link, &columns, &json!({"details": {"dealValue": 200}}));
        assert!(settle_opportunity(
            &mut link,
            &json!({"estimatedvalue": 100})
        ));
        assert_eq!(link.pending_write, None);
        assert_eq!(
            snapshot(&link.pc_snapshot),
            json!({"details": {"dealValue": 100}})
        );
        assert_eq!(snapshot(&link.crm_snapshot), json!({"estimatedvalue": 100}));
    }
}
