//! Round trips: referral → opportunity → referral and opportunity → referral → opportunity keep
//! the fields both sides carry.

mod common;

use common::{config, fixture_json, ok_json, to_crm, to_pc};
use mapping_rules::{opportunity_to_referral, referral_to_opportunity};
use serde_json::{Value, json};

const OPPORTUNITY_ID: &str = "11111111-2222-4333-8444-555555555555";

fn referral_to_opp(r: &Value) -> Value {
    let cfg = config(&[]);
    let mut o = ok_json(referral_to_opportunity(
        &to_crm("referral-created"),
        &r.to_string(),
        None,
        &cfg,
    ));
    // The host creates the record; Dataverse assigns its id.
    o["opportunityid"] = json!(OPPORTUNITY_ID);
    o
}

fn opp_to_referral(o: &Value, current: Option<&Value>) -> Value {
    let cur = current.map(Value::to_string);
    ok_json(opportunity_to_referral(
        &to_pc("opportunity-updated"),
        &o.to_string(),
        cur.as_deref(),
        &config(&[]),
    ))
}

fn known_help(r: &Value) -> Option<&str> {
    r["inviteContext"]["assistanceRequestCode"]
        .as_str()
        .filter(|c| *c != "Unknown")
}

#[test]
fn referral_to_opportunity_to_referral_keeps_shared_fields() {
    for name in [
        "partner-center-to-crm/referral-incoming-new/input.json",
        "partner-center-to-crm/referral-accepted/input.json",
        "partner-center-to-crm/referral-won/input.json",
        "partner-center-to-crm/referral-lost/input.json",
        "partner-center-to-crm/referral-sample/input.json",
    ] {
        let original = fixture_json(name);
        let back = opp_to_referral(&referral_to_opp(&original), None);
        assert_eq!(back["name"], original["name"], "{name}");
        assert_eq!(back["externalReferenceId"], OPPORTUNITY_ID, "{name}");
        assert_eq!(
            back["id"], original["id"],
            "{name}: id via Referral Identifier"
        );
        let value = |r: &Value| -> f64 {
            let v = &r["details"]["dealValue"];
            v.as_f64().or_else(|| v.as_str()?.parse().ok()).unwrap()
        };
        assert_eq!(value(&back), value(&original), "{name}");
        assert_eq!(
            back["details"]["currency"].as_str().unwrap(),
            original["details"]["currency"]
                .as_str()
                .unwrap()
                .to_uppercase(),
            "{name}"
        );
        let date = |r: &Value| r["details"]["closingDateTime"].as_str().unwrap()[..10].to_owned();
        assert_eq!(date(&back), date(&original), "{name}");
        let profile = |r: &Value, k: &str| r["customerProfile"][k].clone();
        assert_eq!(profile(&back, "name"), profile(&original, "name"), "{name}");
        assert_eq!(
            back["customerProfile"]["address"]["country"]
                .as_str()
                .unwrap(),
            original["customerProfile"]["address"]["country"]
                .as_str()
                .unwrap()
                .to_uppercase(),
            "{name}"
        );
        assert_eq!(known_help(&back), known_help(&original), "{name}");
        assert_eq!(back["status"], original["status"], "{name}");
        assert_eq!(back["substatus"], original["substatus"], "{name}");
        let ids = |r: &Value| -> Vec<Value> {
            r["details"]["requirements"]["solutions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].clone())
                .collect()
        };
        assert_eq!(ids(&back), ids(&original), "{name}");
    }
}

#[test]
fn round_trip_onto_the_current_referral_changes_nothing_it_carries() {
    let original = fixture_json("partner-center-to-crm/referral-accepted/input.json");
    let mut o = referral_to_opp(&original);
    o["opportunityid"] = original["externalReferenceId"].clone();
    let back = opp_to_referral(&o, Some(&original));
    assert_eq!(back, original);
}

#[test]
fn opportunity_to_referral_to_opportunity_keeps_owned_columns() {
    let original = fixture_json("crm-to-partner-center/opportunity-sample/input.json");
    let mut r = opp_to_referral(&original, None);
    // Partner Center assigns the referral id on create.
    r["id"] = json!("0a0b0c0d-1111-4222-8333-444455556666");
    let back = ok_json(referral_to_opportunity(
        &to_crm("referral-updated"),
        &r.to_string(),
        None,
        &config(&[]),
    ));
    for column in [
        "name",
        "estimatedvalue",
        "estimatedclosedate",
        "description",
        "cosell_howcanmicrosofthelp",
        "cosell_products",
        "statecode",
        "statuscode",
    ] {
        assert_eq!(
            back[column]
                .as_f64()
                .map(Value::from)
                .unwrap_or(back[column].clone()),
            original[column]
                .as_f64()
                .map(Value::from)
                .unwrap_or(original[column].clone()),
            "{column}"
        );
    }
    assert_eq!(back["opportunityid"], original["opportunityid"]);
    assert_eq!(back["transactioncurrencyid"]["isocurrencycode"], "EUR");
    let account = &back["customerid_account"];
    assert_eq!(account["name"], "Woodgrove Bank");
    assert_eq!(account["address1_country"], "BE");
    assert_eq!(
        account["contact_customer_accounts"][0]["emailaddress1"],
        "lotte.janssens@woodgrovebank.com"
    );
    assert_eq!(
        account["contact_customer_accounts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
