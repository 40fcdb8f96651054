//! Status transitions both ways: accept, decline, win, lose (and the forward-only rules).

mod common;

use common::{config, fixture_json, ok_json, to_crm, to_pc};
use mapping_rules::{MappingError, opportunity_to_referral, referral_to_opportunity};
use serde_json::{Value, json};

fn referral(status: &str, substatus: &str) -> Value {
    let mut r = fixture_json("partner-center-to-crm/referral-incoming-new/input.json");
    r["status"] = json!(status);
    r["substatus"] = json!(substatus);
    r
}

/// (statecode, statuscode) written for a referral, `None` when the mapping leaves them alone.
fn crm_state(r: &Value, current: Option<&Value>) -> Option<(i64, i64)> {
    let cur = current.map(Value::to_string);
    let out = ok_json(referral_to_opportunity(
        &to_crm("referral-updated"),
        &r.to_string(),
        cur.as_deref(),
        &config(&[]),
    ));
    match (out.get("statecode"), out.get("statuscode")) {
        (None, None) => None,
        (Some(a), Some(b)) => Some((a.as_i64().unwrap(), b.as_i64().unwrap())),
        other => panic!("statecode and statuscode must come together: {other:?}"),
    }
}

fn opportunity(statecode: i64, statuscode: i64) -> Value {
    let mut o = fixture_json("crm-to-partner-center/opportunity-won/input.json");
    o["statecode"] = json!(statecode);
    o["statuscode"] = json!(statuscode);
    o
}

/// (status, substatus) written for an opportunity.
fn pc_state(o: &Value, current: Option<&Value>) -> Result<(String, String), MappingError> {
    let cur = current.map(Value::to_string);
    let text = opportunity_to_referral(
        &to_pc("opportunity-updated"),
        &o.to_string(),
        cur.as_deref(),
        &config(&[]),
    )?;
    let out: Value = serde_json::from_str(&text).unwrap();
    Ok((
        out["status"].as_str().unwrap().to_owned(),
        out["substatus"].as_str().unwrap().to_owned(),
    ))
}

fn pair(a: &str, b: &str) -> Result<(String, String), MappingError> {
    Ok((a.to_owned(), b.to_owned()))
}

#[test]
fn referral_status_maps_to_statecode_and_statuscode() {
    let cases = [
        ("New", "Pending", (0, 2)),
        ("New", "Received", (0, 2)),
        ("Active", "Accepted", (0, 1)),
        ("Closed", "Won", (1, 3)),
        ("Closed", "Lost", (2, 5)),
        ("Closed", "Declined", (2, 4)),
        ("Closed", "Expired", (2, 4)),
    ];
    for (status, sub, want) in cases {
        let got = crm_state(&referral(status, sub), None);
        assert_eq!(got, Some(want), "{status}/{sub}");
    }
}

#[test]
fn crm_state_only_moves_forward() {
    let on_hold = json!({ "statecode": 0, "statuscode": 2, "cosell_syncwithpartnercenter": true });
    let in_progress = json!({ "statecode": 0, "statuscode": 1 });
    let custom_open = json!({ "statecode": 0, "statuscode": 100000007 });
    let won = json!({ "statecode": 1, "statuscode": 3 });
    let lost = json!({ "statecode": 2, "statuscode": 5 });
    // Accepted in Partner Center: the pending (On Hold) opportunity is accepted …
    assert_eq!(
        crm_state(&referral("Active", "Accepted"), Some(&on_hold)),
        Some((0, 1))
    );
    // … but a customised open status, or a closed opportunity, is left alone.
    assert_eq!(
        crm_state(&referral("Active", "Accepted"), Some(&custom_open)),
        None
    );
    assert_eq!(crm_state(&referral("Active", "Accepted"), Some(&won)), None);
    // Still pending in Partner Center: an acceptance made in the CRM is not undone.
    assert_eq!(
        crm_state(&referral("New", "Pending"), Some(&in_progress)),
        None
    );
    assert_eq!(crm_state(&referral("New", "Pending"), Some(&lost)), None);
    // Closed in Partner Center always wins.
    assert_eq!(
        crm_state(&referral("Closed", "Won"), Some(&in_progress)),
        Some((1, 3))
    );
    assert_eq!(
        crm_state(&referral("Closed", "Won"), Some(&lost)),
        Some((1, 3))
    );
    assert_eq!(
        crm_state(&referral("Closed", "Declined"), Some(&on_hold)),
        Some((2, 4))
    );
    assert_eq!(
        crm_state(&referral("Closed", "Lost"), Some(&in_progress)),
        Some((2, 5))
    );
}

#[test]
fn invalid_referral_status_is_rejected_naming_the_field() {
    let bad = [
        ("Closed", "Pending", "\"substatus\""),
        ("New", "Won", "\"substatus\""),
        ("Archived", "None", "\"status\""),
    ];
    for (status, sub, field) in bad {
        let r = referral(status, sub).to_string();
        let msg = common::rejected(referral_to_opportunity(
            &to_crm("referral-updated"),
            &r,
            None,
            &config(&[]),
        ));
        assert!(msg.contains(field), "{status}/{sub}: {msg}");
    }
}

#[test]
fn opportunity_state_maps_to_referral_status() {
    let pending = referral("New", "Pending");
    let received = referral("New", "Received");
    let accepted = referral("Active", "Accepted");
    // No referral yet.
    assert_eq!(pc_state(&opportunity(0, 2), None), pair("New", "Pending"));
    assert_eq!(
        pc_state(&opportunity(0, 1), None),
        pair("Active", "Accepted")
    );
    assert_eq!(pc_state(&opportunity(1, 3), None), pair("Closed", "Won"));
    assert_eq!(pc_state(&opportunity(2, 5), None), pair("Closed", "Lost"));
    // Accept: the seller moves the On Hold opportunity to In Progress.
    assert_eq!(
        pc_state(&opportunity(0, 1), Some(&pending)),
        pair("Active", "Accepted")
    );
    assert_eq!(
        pc_state(&opportunity(0, 1), Some(&received)),
        pair("Active", "Accepted")
    );
    // Still on hold: the referral keeps its own New substatus.
    assert_eq!(
        pc_state(&opportunity(0, 2), Some(&received)),
        pair("New", "Received")
    );
    // An accepted referral never goes back to pending.
    assert_eq!(
        pc_state(&opportunity(0, 2), Some(&accepted)),
        pair("Active", "Accepted")
    );
    // Decline: closing as lost a referral that was never accepted.
    assert_eq!(
        pc_state(&opportunity(2, 4), Some(&pending)),
        pair("Closed", "Declined")
    );
    assert_eq!(
        pc_state(&opportunity(2, 5), Some(&received)),
        pair("Closed", "Declined")
    );
    // Lose and win an accepted referral.
    assert_eq!(
        pc_state(&opportunity(2, 4), Some(&accepted)),
        pair("Closed", "Lost")
    );
    assert_eq!(
        pc_state(&opportunity(1, 3), Some(&accepted)),
        pair("Closed", "Won")
    );
}

#[test]
fn closed_referral_is_skipped_and_bad_statecode_rejected() {
    let won = referral("Closed", "Won");
    match pc_state(&opportunity(0, 1), Some(&won)) {
        Err(MappingError::Skip(msg)) => {
            assert!(
                msg.contains("b8a6f1d2-3c4e-4a5b-9c7d-1e2f3a4b5c6d"),
                "{msg}"
            );
            assert!(msg.contains("closed (Won)"), "{msg}");
        }
        other => panic!("expected Skip, got {other:?}"),
    }
    let msg = match pc_state(&opportunity(7, 1), None) {
        Err(MappingError::Reject(msg)) => msg,
        other => panic!("expected Reject, got {other:?}"),
    };
    assert!(msg.contains("\"statecode\""), "{msg}");
}

#[test]
fn configured_status_codes_take_effect_both_ways() {
    let cfg = config(&[
        ("statuscode.pending", "876540000"),
        ("statuscode.accepted", "876540001"),
        ("statuscode.won", "876540002"),
        ("statuscode.lost", "876540003"),
        ("statuscode.declined", "876540004"),
    ]);
    let map = |r: Value| {
        ok_json(referral_to_opportunity(
            &to_crm("referral-updated"),
            &r.to_string(),
            None,
            &cfg,
        ))
    };
    assert_eq!(map(referral("New", "Pending"))["statuscode"], 876540000);
    assert_eq!(map(referral("Active", "Accepted"))["statuscode"], 876540001);
    assert_eq!(map(referral("Closed", "Won"))["statuscode"], 876540002);
    assert_eq!(map(referral("Closed", "Lost"))["statuscode"], 876540003);
    assert_eq!(map(referral("Closed", "Declined"))["statuscode"], 876540004);
    // CRM → PC: the configured pending code (not the default 2) means "still pending".
    let mut o = opportunity(0, 876540000);
    let out = ok_json(opportunity_to_referral(
        &to_pc("opportunity-updated"),
        &o.to_string(),
        None,
        &cfg,
    ));
    assert_eq!(
        (out["status"].as_str(), out["substatus"].as_str()),
        (Some("New"), Some("Pending"))
    );
    o["statuscode"] = json!(2);
    let out = ok_json(opportunity_to_referral(
        &to_pc("opportunity-updated"),
        &o.to_string(),
        None,
        &cfg,
    ));
    assert_eq!(out["status"], "Active");
}
