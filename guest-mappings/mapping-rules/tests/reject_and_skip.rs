//! Skip and Reject rules: Sync with Partner Center, malformed JSON, missing or invalid
//! required data (every message names the field).

mod common;

use common::{
    config, fixture, fixture_json, ok_json, rejected, skipped, to_crm, to_opportunity, to_pc,
    to_referral,
};
use mapping_rules::{opportunity_to_referral, referral_to_opportunity};
use serde_json::{Value, json};

#[test]
fn opportunity_without_sync_yes_is_skipped() {
    let o = fixture_json("crm-to-partner-center/opportunity-sync-no/input.json");
    let msg = skipped(to_referral(&o, &[]));
    assert!(msg.contains("\"cosell_syncwithpartnercenter\""), "{msg}");
    assert!(msg.contains("false"), "{msg}");
    for value in [Value::Null, json!(0), json!("Yes")] {
        let mut o = fixture_json("crm-to-partner-center/opportunity-sample/input.json");
        o["cosell_syncwithpartnercenter"] = value.clone();
        skipped(to_referral(&o, &[]));
    }
    let mut o = fixture_json("crm-to-partner-center/opportunity-sample/input.json");
    o.as_object_mut()
        .unwrap()
        .remove("cosell_syncwithpartnercenter");
    assert!(skipped(to_referral(&o, &[])).contains("not set"));
}

#[test]
fn malformed_json_is_rejected_with_the_serde_message() {
    let serde_msg = serde_json::from_str::<Value>("{\"name\": ")
        .unwrap_err()
        .to_string();
    let ctx = to_pc("opportunity-updated");
    let msg = rejected(opportunity_to_referral(
        &ctx,
        "{\"name\": ",
        None,
        &config(&[]),
    ));
    assert!(
        msg.contains(&serde_msg) && msg.starts_with("opportunity"),
        "{msg}"
    );
    let msg = rejected(referral_to_opportunity(
        &to_crm("referral-created"),
        "[1,",
        None,
        &config(&[]),
    ));
    assert!(msg.starts_with("referral is not valid JSON"), "{msg}");
    let good = fixture("partner-center-to-crm/referral-accepted/input.json");
    let msg = rejected(referral_to_opportunity(
        &to_crm("x"),
        &good,
        Some("{oops}"),
        &config(&[]),
    ));
    assert!(
        msg.starts_with("current opportunity is not valid JSON"),
        "{msg}"
    );
    let msg = rejected(referral_to_opportunity(
        &to_crm("x"),
        "42",
        None,
        &config(&[]),
    ));
    assert_eq!(msg, "referral must be a JSON object");
}

/// Applies `edit` to the sample opportunity and returns the Reject message.
fn opportunity_rejection(edit: impl FnOnce(&mut Value)) -> String {
    let mut o = fixture_json("crm-to-partner-center/opportunity-sample/input.json");
    edit(&mut o);
    rejected(to_referral(&o, &[]))
}

#[test]
fn opportunity_missing_required_data_is_rejected_naming_the_field() {
    let remove = |o: &mut Value, key: &str| {
        o.as_object_mut().unwrap().remove(key);
    };
    let msg = opportunity_rejection(|o| remove(o, "name"));
    assert_eq!(msg, "opportunity column \"name\" is required");
    let msg = opportunity_rejection(|o| o["name"] = json!("  ✔ "));
    assert!(msg.contains("\"name\""), "{msg}");
    let msg = opportunity_rejection(|o| remove(o, "opportunityid"));
    assert!(msg.contains("\"opportunityid\""), "{msg}");
    let msg = opportunity_rejection(|o| {
        o["customerid_account"]
            .as_object_mut()
            .unwrap()
            .remove("name");
        remove(
            o,
            "_customerid_value@OData.Community.Display.V1.FormattedValue",
        );
    });
    assert!(
        msg.contains("\"customerid_account.name\"") && msg.contains("customer company name"),
        "{msg}"
    );
    let msg = opportunity_rejection(|o| o["estimatedvalue"] = json!("12k"));
    assert!(
        msg.contains("\"estimatedvalue\"") && msg.contains("must be a number"),
        "{msg}"
    );
    let msg = opportunity_rejection(|o| o["estimatedvalue"] = json!(-5));
    assert!(
        msg.contains("\"estimatedvalue\"") && msg.contains("negative"),
        "{msg}"
    );
    let msg =
        opportunity_rejection(|o| o["customerid_account"]["address1_country"] = json!("Belgium"));
    assert!(
        msg.contains("\"customerid_account.address1_country\""),
        "{msg}"
    );
    let msg = opportunity_rejection(|o| {
        o["customerid_account"]
            .as_object_mut()
            .unwrap()
            .remove("address1_country");
    });
    assert!(
        msg.contains("\"customerid_account.address1_country\"") && msg.contains("required"),
        "{msg}"
    );
    let msg = opportunity_rejection(|o| remove(o, "transactioncurrencyid"));
    assert!(
        msg.contains("\"transactioncurrencyid.isocurrencycode\""),
        "{msg}"
    );
    let msg = opportunity_rejection(|o| o["estimatedclosedate"] = json!("30/04/2027"));
    assert!(msg.contains("\"estimatedclosedate\""), "{msg}");
    let msg = opportunity_rejection(|o| o["name"] = json!(17));
    assert_eq!(
        msg,
        "opportunity column \"name\" must be a string, found a number"
    );
}

#[test]
fn co_sell_needs_solution_and_contact() {
    let msg = opportunity_rejection(|o| o["cosell_products"] = json!(" ; "));
    assert!(
        msg.contains("\"cosell_products\"") && msg.contains("solution"),
        "{msg}"
    );
    let msg = opportunity_rejection(|o| {
        o.as_object_mut().unwrap().remove("parentcontactid");
        o["customerid_account"]["contact_customer_accounts"] = json!([]);
    });
    assert!(
        msg.contains("customer contact") && msg.contains("cosell_howcanmicrosofthelp"),
        "{msg}"
    );
    let msg = opportunity_rejection(|o| o["cosell_howcanmicrosofthelp"] = json!(42));
    assert!(
        msg.contains("\"cosell_howcanmicrosofthelp\"") && msg.contains("42"),
        "{msg}"
    );
    // Without help the same opportunity is an Independent referral and needs neither.
    let mut o = fixture_json("crm-to-partner-center/opportunity-sample/input.json");
    o["cosell_howcanmicrosofthelp"] = Value::Null;
    o["cosell_products"] = Value::Null;
    o.as_object_mut().unwrap().remove("parentcontactid");
    o["customerid_account"]["contact_customer_accounts"] = json!([]);
    let out = ok_json(to_referral(&o, &[]));
    assert_eq!(out["type"], "Independent");
    assert_eq!(
        out["consent"]["consentToShareReferralWithMicrosoftSellers"],
        false
    );
    assert!(out.get("inviteContext").is_none());
}

#[test]
fn referral_missing_or_invalid_data_is_rejected_naming_the_field() {
    let cases: [(&str, Value, &str); 6] = [
        ("/id", Value::Null, "referral field \"id\" is required"),
        ("/name", json!(""), "referral field \"name\" is required"),
        ("/details/dealValue", json!("lots"), "\"details.dealValue\""),
        (
            "/details/closingDateTime",
            json!("2027-02-30T00:00:00Z"),
            "\"details.closingDateTime\"",
        ),
        ("/details/currency", json!("£"), "\"details.currency\""),
        (
            "/customerProfile/name",
            json!(null),
            "\"customerProfile.name\"",
        ),
    ];
    for (pointer, value, field) in cases {
        let mut r = fixture_json("partner-center-to-crm/referral-incoming-new/input.json");
        *r.pointer_mut(pointer).unwrap() = value;
        let msg = rejected(to_opportunity(&r, None, &[]));
        assert!(msg.contains(field), "{pointer}: {msg}");
    }
}
