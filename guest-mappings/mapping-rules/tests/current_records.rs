//! Open-ended `current` documents, the audit trail and the context.

mod common;

use common::{config, fixture, fixture_json, ok_json, skipped, to_crm, to_opportunity};
use mapping_rules::referral_to_opportunity;
use serde_json::{Value, json};

#[test]
fn existing_opportunity_with_sync_no_is_not_updated_from_partner_center() {
    let r = fixture_json("partner-center-to-crm/referral-accepted/input.json");
    let mut cur = fixture_json("partner-center-to-crm/referral-accepted/current.json");
    cur["cosell_syncwithpartnercenter"] = json!(false);
    let msg = skipped(to_opportunity(&r, Some(&cur), &[]));
    assert!(msg.contains("cosell_syncwithpartnercenter"), "{msg}");
}

#[test]
fn unknown_custom_columns_in_current_change_nothing() {
    let r = fixture_json("partner-center-to-crm/referral-won/input.json");
    let cur = fixture_json("partner-center-to-crm/referral-won/current.json");
    let baseline = ok_json(to_opportunity(&r, Some(&cur), &[]));
    let mut noisy = cur.clone();
    let extra = json!({
        "contoso_nested": { "a": [1, 2, { "b": null }] },
        "contoso_null": null,
        "contoso_number": 1e300,
        "new_cosell_audit": 5,
        "cosell_unknowncolumn": "x",
        "_contoso_lookup_value@OData.Community.Display.V1.FormattedValue": "weird.key.with.dots",
        "": "empty key"
    });
    noisy
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let out = ok_json(to_opportunity(&r, Some(&noisy), &[]));
    assert_eq!(out, baseline);
    for key in extra.as_object().unwrap().keys() {
        assert!(out.get(key).is_none(), "{key} leaked into the output");
    }
    // The current opportunity's own columns are never echoed back either.
    for key in [
        "contoso_territory",
        "contoso_tags",
        "@odata.etag",
        "closeprobability",
        "opportunityid",
    ] {
        assert!(out.get(key).is_none(), "{key} leaked into the output");
    }
    // Columns the referral does not carry keep their CRM values (not written).
    assert!(out.get("description").is_none());
    // The ✔ mark in the CRM name is kept (name not rewritten), the customer stays CRM-owned.
    assert!(out.get("name").is_none());
    assert!(out.get("customerid_account").is_none());
    assert_eq!(out["statecode"], 1);
    assert_eq!(out["estimatedclosedate"], "2026-11-23");
}

#[test]
fn unchanged_referral_writes_no_audit_line() {
    let r = fixture_json("partner-center-to-crm/referral-accepted/input.json");
    let mut cur = fixture_json("partner-center-to-crm/referral-accepted/current.json");
    let first = ok_json(to_opportunity(&r, Some(&cur), &[]));
    assert!(first["cosell_audit"].as_str().unwrap().ends_with(
        "2026-11-24T12:00:00Z referral-updated: updated from Partner Center referral \
         b8a6f1d2-3c4e-4a5b-9c7d-1e2f3a4b5c6d (Active/Accepted): statuscode"
    ));
    // The host writes the output; mapping the same referral again changes nothing.
    cur.as_object_mut()
        .unwrap()
        .extend(first.as_object().unwrap().clone());
    let second = ok_json(to_opportunity(&r, Some(&cur), &[]));
    assert!(second.get("cosell_audit").is_none(), "{second}");
    for (key, value) in second.as_object().unwrap() {
        assert_eq!(value, &cur[key], "{key}");
    }
}

#[test]
fn audit_trail_keeps_the_configured_number_of_lines() {
    let r = fixture_json("partner-center-to-crm/referral-won/input.json");
    let cur = fixture_json("partner-center-to-crm/referral-won/current.json");
    let out = ok_json(to_opportunity(&r, Some(&cur), &[("audit-max-lines", "2")]));
    let lines: Vec<&str> = out["cosell_audit"].as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("2026-08-04T08:15:00Z referral-updated"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("2026-11-24T12:00:00Z referral-updated: updated"),
        "{}",
        lines[1]
    );
}

#[test]
fn output_depends_on_context_only_through_documented_fields() {
    let r = fixture("partner-center-to-crm/referral-sample/input.json");
    let base = to_crm("sample");
    let mut other = base.clone();
    other.tenant = "fabrikam-partner".into();
    other.mapping_name = "my-step".into();
    other.direction = mapping_rules::Direction::CrmToPartnerCenter;
    let a = referral_to_opportunity(&base, &r, None, &config(&[])).unwrap();
    let b = referral_to_opportunity(&other, &r, None, &config(&[])).unwrap();
    assert_eq!(a, b);
    other.mapping_version = "sha256:0123abcd".into();
    // The host formats the same instant with milliseconds: still the same output.
    other.timestamp = "2026-11-24T12:00:00.000Z".into();
    let b = referral_to_opportunity(&other, &r, None, &config(&[])).unwrap();
    assert_eq!(a, b);
    other.timestamp = "2030-01-01T00:00:00Z".into();
    let c = ok_json(referral_to_opportunity(&other, &r, None, &config(&[])));
    let mut a: Value = serde_json::from_str(&a).unwrap();
    assert_ne!(a["cosell_audit"], c["cosell_audit"]);
    a["cosell_audit"] = c["cosell_audit"].clone();
    assert_eq!(a, c);
}
