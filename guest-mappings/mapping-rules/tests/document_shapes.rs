//! The mapping reads only the members it maps (typed views borrowing from the JSON text, not a
//! `Value` tree), and must read them exactly as a lookup in a parsed `Value` would: a parent
//! that is not an object reads as absent, `null` is absent, a repeated member keeps its last
//! value, escapes are decoded, members it does not map are skipped whatever their shape, and a
//! member of the wrong type is still rejected naming the field.

mod common;

use common::{config, ok_json, rejected, to_crm, to_opportunity, to_pc, to_referral};
use mapping_rules::{opportunity_to_referral, referral_to_opportunity};
use serde_json::{Value, json};

fn referral() -> Value {
    common::fixture_json("partner-center-to-crm/referral-sample/input.json")
}

fn opportunity() -> Value {
    common::fixture_json("crm-to-partner-center/opportunity-sample/input.json")
}

/// Maps referral JSON text (written by hand, so it can repeat members) with no current record.
fn map_referral_text(text: &str, current: Option<&str>) -> Value {
    ok_json(referral_to_opportunity(
        &to_crm("referral-updated"),
        text,
        current,
        &config(&[]),
    ))
}

#[test]
fn parents_that_are_not_objects_read_as_absent() {
    let mut odd = referral();
    odd["details"] = json!("n/a");
    odd["inviteContext"] = json!([1, 2]);
    let mut plain = referral();
    plain.as_object_mut().unwrap().remove("details");
    plain.as_object_mut().unwrap().remove("inviteContext");
    assert_eq!(
        ok_json(to_opportunity(&odd, None, &[])),
        ok_json(to_opportunity(&plain, None, &[]))
    );

    let mut odd = referral();
    odd["customerProfile"]["team"] = json!({ "firstName": "Ann" });
    odd["customerProfile"]["address"]["city"] = Value::Null;
    odd["details"]["requirements"]["solutions"] =
        json!([1, "SOL-X", null, { "id": "SOL-6115380-IPC" }, { "id": 7 }]);
    let mut plain = referral();
    plain["customerProfile"]
        .as_object_mut()
        .unwrap()
        .remove("team");
    plain["customerProfile"]["address"]
        .as_object_mut()
        .unwrap()
        .remove("city");
    plain["details"]["requirements"]["solutions"] = json!([{ "id": "SOL-6115380-IPC" }]);
    let out = ok_json(to_opportunity(&odd, None, &[]));
    assert_eq!(out, ok_json(to_opportunity(&plain, None, &[])));
    assert_eq!(out["cosell_products"], "SOL-6115380-IPC");
    assert!(out["customerid_account"].get("address1_city").is_none());
}

#[test]
fn repeated_members_keep_the_last_value() {
    let text = referral().to_string();
    let repeated = text.replacen('{', r#"{"name":"An earlier name","status":"Closed","#, 1);
    let out = map_referral_text(&repeated, None);
    assert_eq!(
        out["name"],
        "Adventure Works Cycles - Secure Copilot rollout"
    );
    assert_eq!(out["statecode"], 0);

    // In the current opportunity too: the last Sync value decides.
    let current = r#"{"cosell_syncwithpartnercenter":false,"statecode":0,"cosell_syncwithpartnercenter":true}"#;
    let out = map_referral_text(&text, Some(current));
    assert_eq!(out["cosell_referralidentifier"], referral()["id"]);
}

#[test]
fn escaped_strings_are_decoded() {
    let mut r = referral();
    r["name"] = json!("Café \"Fietsen\"\n\u{1F6B2}");
    let text = r.to_string().replace('é', "\\u00e9");
    assert!(text.contains("\\u00e9") && text.contains("\\\""));
    let out = map_referral_text(&text, None);
    assert_eq!(out["name"], "Café \"Fietsen\"\n\u{1F6B2}");
}

#[test]
fn members_that_are_not_mapped_are_skipped_whatever_their_shape() {
    let mut noisy = referral();
    noisy["x-extra"] = json!({ "a": [[[{ "b": [1.5e300, -0, true, null, "\u{0}"] }]]] });
    noisy["details"]["x-extra"] = json!([{ "dealValue": "not this one" }]);
    noisy["customerProfile"]["team"][0]["x-extra"] = json!({ "email": 1 });
    assert_eq!(
        ok_json(to_opportunity(&noisy, None, &[])),
        ok_json(to_opportunity(&referral(), None, &[]))
    );

    let mut noisy = opportunity();
    noisy["x-extra"] = json!({ "name": [1, { "z": null }] });
    noisy["customerid_account"]["x-extra"] = json!([{}]);
    assert_eq!(
        ok_json(to_referral(&noisy, &[])),
        ok_json(to_referral(&opportunity(), &[]))
    );
}

#[test]
fn members_of_the_wrong_type_are_still_rejected_naming_the_field() {
    let mut r = referral();
    r["details"]["currency"] = json!(978);
    let msg = rejected(to_opportunity(&r, None, &[]));
    assert_eq!(
        msg,
        "referral field \"details.currency\" must be a string, found a number"
    );

    let mut r = referral();
    r["customerProfile"]["address"]["city"] = json!(["Amsterdam"]);
    let msg = rejected(to_opportunity(&r, None, &[]));
    assert_eq!(
        msg,
        "referral field \"customerProfile.address.city\" must be a string, found an array"
    );

    let mut r = referral();
    r["details"]["dealValue"] = json!({ "amount": 1 });
    let msg = rejected(to_opportunity(&r, None, &[]));
    assert_eq!(
        msg,
        "referral field \"details.dealValue\" must be a number, found {\"amount\":1}"
    );

    let current = json!({ "statecode": "open" });
    let msg = rejected(to_opportunity(&referral(), Some(&current), &[]));
    assert_eq!(
        msg,
        "opportunity column \"statecode\" must be an integer, found \"open\""
    );

    let mut o = opportunity();
    o["name"] = json!(5);
    let msg = rejected(opportunity_to_referral(
        &to_pc("opportunity-updated"),
        &o.to_string(),
        None,
        &config(&[]),
    ));
    assert_eq!(
        msg,
        "opportunity column \"name\" must be a string, found a number"
    );
}
