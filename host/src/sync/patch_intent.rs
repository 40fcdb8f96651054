//! What a Partner Center PATCH will change, recorded before it is sent.
//!
//! A CRM → Partner Center run reads the opportunity, maps it, sends the changed fields as a
//! JSON Patch and only then saves the link as synced. Should the run die in between (a crash,
//! a SIGKILL) with the PATCH applied, the referral holds cosell's values while the link still
//! records the state before them. The next run of either side would then take cosell's own
//! write for a change by Microsoft, and a seller's edit made meanwhile for the other side of a
//! conflict, which `most-recent` gives to the newer write: cosell's own, whose values then
//! overwrite the seller's in the CRM. The crash drills found exactly that.
//!
//! So the run saves, before the PATCH, the operations and the opportunity they were mapped
//! from ([`record`]), and the first run that reads the referral afterwards settles it
//! ([`settle`]). Every operation changes a field from the value the referral held when the run
//! read it, and a PATCH applies all of its operations or none, so:
//! - the referral holds the value of at least one operation: the PATCH landed. Both snapshots
//!   become what the run would have saved: the referral's with every operation applied (a
//!   field Microsoft changed again since still differs from it, and is still its change), the
//!   opportunity's the row the operations were mapped from. The fingerprint is left as it was:
//!   the opportunity runs again and finds nothing to send, or the seller's newer edit;
//! - it holds none: the PATCH did not land, and nothing changes (the opportunity's event sends
//!   it again).
//!
//! The run that sent the PATCH clears the record when it saves its result ([`clear`]).

use super::compare::{apply_ops, at, holds};
use crate::store::Link;
use serde_json::{Value, json};

/// Records in `link` that `ops` are about to be sent, mapped from `opportunity`.
pub(super) fn record(link: &mut Link, ops: &[Value], opportunity: &Value) {
    link.pc_pending = Some(json!({"ops": ops, "opportunity": opportunity}).to_string());
}

/// The PATCH's result is saved with the link: nothing is pending any more.
pub(super) fn clear(link: &mut Link) {
    link.pc_pending = None;
}

/// Settles a PATCH recorded in `link` against `referral` as just read (see the module doc).
/// Answers whether `link` changed (a PATCH was pending), so that the caller saves it.
pub(super) fn settle(link: &mut Link, referral: &Value) -> bool {
    let Some(pending) = link.pc_pending.take() else {
        return false;
    };
    let Ok(pending) = serde_json::from_str::<Value>(&pending) else {
        tracing::warn!(
            referral = link.referral_id.as_deref().unwrap_or_default(),
            "an unreadable record of a pending Partner Center PATCH was dropped"
        );
        return true;
    };
    let ops = pending["ops"].as_array().cloned().unwrap_or_default();
    let landed = ops.iter().any(|op| {
        op["path"]
            .as_str()
            .is_some_and(|path| holds(at(referral, path), &op["value"]))
    });
    if landed {
        let mut snapshot = link
            .pc_snapshot
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| referral.clone());
        apply_ops(&mut snapshot, &ops);
        link.pc_snapshot = Some(snapshot.to_string());
        if pending["opportunity"].is_object() {
            link.crm_snapshot = Some(pending["opportunity"].to_string());
        }
    }
    tracing::info!(
        referral = link.referral_id.as_deref().unwrap_or_default(),
        landed,
        "settled a Partner Center PATCH whose run ended before it saved the result"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_with(snapshot: Value, crm: Value) -> Link {
        Link {
            referral_id: Some("r".into()),
            pc_snapshot: Some(snapshot.to_string()),
            crm_snapshot: Some(crm.to_string()),
            ..Link::default()
        }
    }

    fn replace(path: &str, value: Value) -> Value {
        json!({"op": "replace", "path": path, "value": value})
    }

    #[test]
    fn a_landed_patch_moves_both_snapshots_to_what_its_run_would_have_saved() {
        let before = json!({"details": {"dealValue": 100, "notes": "a"}});
        let mut link = link_with(before, json!({"estimatedvalue": 100}));
        let sent = [
            replace("/details/dealValue", json!(200)),
            replace("/details/notes", json!("b")),
        ];
        record(&mut link, &sent, &json!({"estimatedvalue": 200}));
        let referral = json!({"details": {"dealValue": 200, "notes": "b"}});
        assert!(settle(&mut link, &referral));
        assert_eq!(link.pc_pending, None);
        let snapshot: Value = serde_json::from_str(link.pc_snapshot.as_deref().unwrap()).unwrap();
        assert_eq!(snapshot, referral);
        assert_eq!(
            link.crm_snapshot.as_deref(),
            Some(r#"{"estimatedvalue":200}"#)
        );
        // Settled once: a second read finds nothing pending.
        assert!(!settle(&mut link, &referral));
    }

    #[test]
    fn a_patch_that_did_not_land_leaves_microsofts_values_as_changes() {
        let before = json!({"details": {"dealValue": 100, "notes": "a"}});
        let mut link = link_with(before.clone(), json!({"estimatedvalue": 100}));
        record(
            &mut link,
            &[replace("/details/dealValue", json!(200))],
            &json!({"estimatedvalue": 200}),
        );
        // Microsoft changed the notes; the deal value is as before the PATCH.
        let referral = json!({"details": {"dealValue": 100, "notes": "c"}});
        assert!(settle(&mut link, &referral));
        assert_eq!(link.pc_pending, None);
        let snapshot: Value = serde_json::from_str(link.pc_snapshot.as_deref().unwrap()).unwrap();
        assert_eq!(snapshot, before, "nothing is taken as synced");
        assert_eq!(
            link.crm_snapshot.as_deref(),
            Some(r#"{"estimatedvalue":100}"#)
        );
    }

    #[test]
    fn a_field_microsoft_changed_after_a_landed_patch_stays_its_change() {
        let before = json!({"details": {"dealValue": 100, "notes": "a"}});
        let mut link = link_with(before, json!({"estimatedvalue": 100, "description": "a"}));
        record(
            &mut link,
            &[
                replace("/details/dealValue", json!(200)),
                replace("/details/notes", json!("b")),
            ],
            &json!({"estimatedvalue": 200, "description": "b"}),
        );
        // The notes show the PATCH landed; Microsoft set the deal value to 300 since.
        let referral = json!({"details": {"dealValue": 300, "notes": "b"}});
        assert!(settle(&mut link, &referral));
        let snapshot: Value = serde_json::from_str(link.pc_snapshot.as_deref().unwrap()).unwrap();
        assert_eq!(
            snapshot["details"]["notes"], "b",
            "cosell's own value is in sync"
        );
        assert_eq!(
            snapshot["details"]["dealValue"], 200,
            "cosell's value is the synced one, so Microsoft's 300 is a change"
        );
        assert_eq!(
            link.crm_snapshot.as_deref(),
            Some(r#"{"description":"b","estimatedvalue":200}"#)
        );
    }
}
