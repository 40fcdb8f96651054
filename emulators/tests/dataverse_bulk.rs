//! The Dataverse emulator's bulk operation messages over real HTTP: CreateMultiple,
//! UpdateMultiple and UpsertMultiple as Microsoft documents their payloads and answers, their
//! all-or-nothing rollback on a standard table, and what they count against the limits.

mod support;

use cosell_emulators::dataverse::{DataverseConfig, ExecutionCharge, ServiceProtectionLimits};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use support::{Env, error_message, start, start_with};

const ACCOUNT: &str = "Microsoft.Dynamics.CRM.account";

impl Env {
    async fn bulk(&self, set: &str, message: &str, targets: Value) -> (StatusCode, Value) {
        let path = format!("{set}/Microsoft.Dynamics.CRM.{message}");
        let (status, _, body) = self
            .send(
                self.req(Method::POST, &path)
                    .json(&json!({ "Targets": targets })),
            )
            .await;
        (status, body)
    }

    async fn account_named(&self, name: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!(
                "accounts?$select=name,accountnumber&$filter=name eq '{name}'"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["value"].as_array().cloned().unwrap_or_default()
    }
}

fn accounts(names: &[&str]) -> Value {
    names
        .iter()
        .map(|n| json!({ "name": n, "@odata.type": ACCOUNT }))
        .collect()
}

#[tokio::test]
async fn create_multiple_answers_the_new_ids_in_targets_order() {
    let env = start().await;
    let (status, body) = env
        .bulk(
            "accounts",
            "CreateMultiple",
            accounts(&["Bulk one", "Bulk two", "Bulk three"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"),
        "{body}"
    );
    let ids = body["Ids"].as_array().expect("Ids");
    assert_eq!(ids.len(), 3);
    for (id, name) in ids.iter().zip(["Bulk one", "Bulk two", "Bulk three"]) {
        let (status, row) = env
            .get(&format!("accounts({})?$select=name", id.as_str().unwrap()))
            .await;
        assert_eq!(status, StatusCode::OK, "{row}");
        assert_eq!(row["name"], name);
    }
    // The '#' form of the type annotation is accepted too, and an id given is kept.
    let chosen = "7e2d1b0a-3c4f-4a5b-8c6d-0e1f2a3b4c5d";
    let (status, body) = env
        .bulk(
            "accounts",
            "CreateMultiple",
            json!([{ "name": "Chosen", "accountid": chosen, "@odata.type": format!("#{ACCOUNT}") }]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Ids"], json!([chosen]));
}

#[tokio::test]
async fn one_bad_target_rolls_the_whole_request_back() {
    let env = start().await;
    let (status, body) = env
        .bulk(
            "accounts",
            "CreateMultiple",
            json!([
                { "name": "Rolled back", "@odata.type": ACCOUNT },
                { "name": "Bad", "new_undefined": 1, "@odata.type": ACCOUNT },
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(env.account_named("Rolled back").await.is_empty());

    let existing = env.create("accounts", json!({"name": "Kept"})).await;
    let (status, body) = env
        .bulk(
            "accounts",
            "UpdateMultiple",
            json!([
                { "accountid": existing, "name": "Renamed", "@odata.type": ACCOUNT },
                { "accountid": "00000000-0000-0000-0000-0000000000aa", "name": "Nobody", "@odata.type": ACCOUNT },
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error_message(&body).contains("Does Not Exist"), "{body}");
    assert_eq!(
        env.account_named("Kept").await.len(),
        1,
        "the first update was undone"
    );
}

#[tokio::test]
async fn every_target_must_carry_the_tables_odata_type() {
    let env = start().await;
    let (status, body) = env
        .bulk("accounts", "CreateMultiple", json!([{ "name": "Untyped" }]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("@odata.type"), "{body}");
    let (status, body) = env
        .bulk(
            "accounts",
            "CreateMultiple",
            json!([{ "lastname": "Contact", "@odata.type": "Microsoft.Dynamics.CRM.contact" }]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = env.bulk("accounts", "CreateMultiple", json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(env.account_named("Untyped").await.is_empty());
}

#[tokio::test]
async fn update_multiple_writes_each_row_named_by_its_primary_key() {
    let env = start().await;
    let a = env.create("accounts", json!({"name": "Upd A"})).await;
    let b = env.create("accounts", json!({"name": "Upd B"})).await;
    let (status, body) = env
        .bulk(
            "accounts",
            "UpdateMultiple",
            json!([
                { "accountid": a, "accountnumber": "A-1", "@odata.type": ACCOUNT },
                { "accountid": b, "accountnumber": "B-1", "@odata.type": ACCOUNT },
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(env.account_named("Upd A").await[0]["accountnumber"], "A-1");
    assert_eq!(env.account_named("Upd B").await[0]["accountnumber"], "B-1");
    let (status, body) = env
        .bulk(
            "accounts",
            "UpdateMultiple",
            json!([{ "accountnumber": "no key", "@odata.type": ACCOUNT }]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("accountid"), "{body}");
}

#[tokio::test]
async fn upsert_multiple_creates_then_updates_by_alternate_key_and_is_refused_on_opportunities() {
    let env = start().await;
    let (status, _, body) = env
        .send(
            env.req(
                Method::POST,
                "EntityDefinitions(LogicalName='account')/Keys",
            )
            .json(&json!({"SchemaName": "new_accountnumber", "KeyAttributes": ["accountnumber"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let key = "accountnumber";
    let target = |number: &str, name: &str| json!({ "name": name, "@odata.type": ACCOUNT, "@odata.id": format!("accounts({key}='{number}')") });
    let (status, body) = env
        .bulk(
            "accounts",
            "UpsertMultiple",
            json!([target("K-1", "Upsert one"), target("K-2", "Upsert two")]),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = env
        .bulk(
            "accounts",
            "UpsertMultiple",
            json!([target("K-1", "Upsert one, renamed")]),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, rows) = env
        .get(&format!("accounts?$select=name&$filter={key} eq 'K-1'"))
        .await;
    assert_eq!(rows["value"].as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows["value"][0]["name"], "Upsert one, renamed");

    let (status, body) = env
        .bulk(
            "accounts",
            "UpsertMultiple",
            json!([{ "name": "No key", "@odata.type": ACCOUNT }]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("@odata.id"), "{body}");

    let (status, body) = env
        .bulk(
            "opportunities",
            "UpsertMultiple",
            json!([{ "name": "Deal", "@odata.type": "Microsoft.Dynamics.CRM.opportunity",
                     "@odata.id": "opportunities(opportunityid=00000000-0000-0000-0000-000000000001)" }]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("UpsertMultiple"), "{body}");
}

#[tokio::test]
async fn a_bulk_request_is_one_request_for_the_limits_but_each_target_is_charged() {
    let env = start_with(DataverseConfig {
        limits: ServiceProtectionLimits {
            requests: 3,
            ..ServiceProtectionLimits::default()
        },
        execution_charge: ExecutionCharge {
            create: Duration::from_millis(10),
            ..ExecutionCharge::zero()
        },
        ..DataverseConfig::default()
    })
    .await;
    let names: Vec<String> = (0..50).map(|n| format!("Charged {n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (status, body) = env
        .bulk("accounts", "CreateMultiple", accounts(&names))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = env.dv.service_protection();
    assert_eq!(stats.admitted, 1, "{stats:?}");
    assert_eq!(stats.refused, 0, "{stats:?}");
    assert!(
        stats.execution_ms >= 500,
        "50 creates at 10 ms each are charged: {stats:?}"
    );
}
