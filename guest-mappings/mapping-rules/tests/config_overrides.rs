//! Configuration: column prefix and names, option values, defaults, and unusable values.

mod common;

use common::{failed, fixture_json, ok_json, rejected, skipped, to_opportunity, to_referral};
use serde_json::json;

#[test]
fn unknown_assistance_code_is_rejected_unless_configured() {
    let mut r = fixture_json("partner-center-to-crm/referral-incoming-new/input.json");
    r["inviteContext"]["assistanceRequestCode"] = json!("MigrationFunding");
    let msg = rejected(to_opportunity(&r, None, &[]));
    assert!(
        msg.contains("\"inviteContext.assistanceRequestCode\""),
        "{msg}"
    );
    assert!(msg.contains("help-option.MigrationFunding"), "{msg}");
    let out = ok_json(to_opportunity(
        &r,
        None,
        &[("help-option.MigrationFunding", "100000009")],
    ));
    assert_eq!(out["cosell_howcanmicrosofthelp"], 100000009);
    r["inviteContext"]["assistanceRequestCode"] = json!("Unknown");
    let out = ok_json(to_opportunity(&r, None, &[]));
    assert!(out.get("cosell_howcanmicrosofthelp").is_none());
}

#[test]
fn column_prefix_and_overrides_take_effect_both_ways() {
    let cfg = [
        ("column-prefix", "contoso_"),
        (
            "column.referral-link",
            "msft_microsoftpartnercenterreferrallink",
        ),
        ("column.deal-value", "contoso_revenue"),
        ("column.country", "address1_countrycode"),
        ("help-option.ProofOfConceptOrDemo", "876540002"),
        ("sync-yes-value", "876540001"),
        ("referral-link-template", "https://example.test/r/{id}"),
    ];
    let r = fixture_json("partner-center-to-crm/referral-incoming-new/input.json");
    let out = ok_json(to_opportunity(&r, None, &cfg));
    let keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "contoso_audit",
            "contoso_howcanmicrosofthelp",
            "contoso_products",
            "contoso_referralidentifier",
            "contoso_revenue",
            "contoso_syncwithpartnercenter",
            "customerid_account",
            "description",
            "estimatedclosedate",
            "msft_microsoftpartnercenterreferrallink",
            "name",
            "statecode",
            "statuscode",
            "transactioncurrencyid",
        ]
    );
    assert_eq!(out["contoso_howcanmicrosofthelp"], 876540002);
    assert_eq!(out["contoso_syncwithpartnercenter"], 876540001);
    assert_eq!(out["contoso_revenue"], 185000);
    assert_eq!(out["customerid_account"]["address1_countrycode"], "GB");
    assert!(out["customerid_account"].get("address1_country").is_none());
    assert_eq!(
        out["msft_microsoftpartnercenterreferrallink"],
        "https://example.test/r/b8a6f1d2-3c4e-4a5b-9c7d-1e2f3a4b5c6d"
    );

    // CRM → PC reads the same configured columns.
    let mut o = out.clone();
    o["opportunityid"] = json!("7d2e4f60-1a3b-4c5d-8e9f-0a1b2c3d4e5f");
    let back = ok_json(to_referral(&o, &cfg));
    assert_eq!(
        back["inviteContext"]["assistanceRequestCode"],
        "ProofOfConceptOrDemo"
    );
    assert_eq!(back["details"]["dealValue"], 185000);
    assert_eq!(back["customerProfile"]["address"]["country"], "GB");
    assert_eq!(back["id"], "b8a6f1d2-3c4e-4a5b-9c7d-1e2f3a4b5c6d");
    // With a choice-type Sync column, the boolean `true` is not Yes.
    o["contoso_syncwithpartnercenter"] = json!(true);
    skipped(to_referral(&o, &cfg));
}

#[test]
fn unusable_configuration_fails_naming_the_key() {
    let r = fixture_json("partner-center-to-crm/referral-sample/input.json");
    let cases = [
        (("statuscode.won", "three"), "statuscode.won"),
        (("column-prefix", "bad prefix"), "column-prefix"),
        (
            ("help-option.QuotesOrLicensing", "100000000"),
            "help-option.QuotesOrLicensing",
        ),
        (
            ("referral-link-template", "https://example.test/"),
            "referral-link-template",
        ),
        (("statuscode.pending", "1"), "statuscode.pending"),
        (("audit-max-lines", "0"), "audit-max-lines"),
        (("default-currency", "Euro"), "default-currency"),
    ];
    for ((key, value), named) in cases {
        let msg = failed(to_opportunity(&r, None, &[(key, value)]));
        assert!(msg.contains(named), "{key}={value}: {msg}");
    }
}

#[test]
fn default_currency_applies_only_when_configured() {
    let mut o = fixture_json("crm-to-partner-center/opportunity-independent/input.json");
    o.as_object_mut().unwrap().remove("transactioncurrencyid");
    rejected(to_referral(&o, &[]));
    let out = ok_json(to_referral(&o, &[("default-currency", "chf")]));
    assert_eq!(out["details"]["currency"], "CHF");
}

#[test]
fn products_column_parsing_and_solution_types() {
    let mut o = fixture_json("crm-to-partner-center/opportunity-independent/input.json");
    o["cosell_products"] = json!(" SOL-1-AAA;CloudMigration,\nSOL-1-AAA , sol-2-bbb ");
    let out = ok_json(to_referral(&o, &[]));
    assert_eq!(
        out["details"]["requirements"]["solutions"],
        json!([
            { "id": "SOL-1-AAA", "type": "Name" },
            { "id": "CloudMigration", "type": "Category" },
            { "id": "sol-2-bbb", "type": "Name" }
        ])
    );
}
