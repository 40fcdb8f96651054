//! The Dataverse emulator over real HTTP, replaying the wire examples of §4/§5/§5b of the
//! reference and checking the answers field by field.

mod support;

use cosell_emulators::dataverse::{
    Dataverse, DataverseConfig, ExecutionCharge, ServiceProtectionLimits,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Env, error_code, error_message, id_of, start, start_with};

#[tokio::test]
async fn token_endpoint_and_401_without_token() {
    let env = start().await;
    let config = env.dv.config().clone();
    let token_url = format!(
        "{}/{}/oauth2/v2.0/token",
        env.running.url(),
        config.tenant_id
    );
    let wrong = env
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", "wrong"),
            ("scope", "https://cosell-emulator.crm.dynamics.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let other_tenant = env
        .http
        .post(format!(
            "{}/not-my-tenant/oauth2/v2.0/token",
            env.running.url()
        ))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(other_tenant.status(), StatusCode::BAD_REQUEST);

    let anonymous = env.http.get(env.url("opportunities")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer authorization_uri=")
    );
    let body: Value = anonymous.json().await.unwrap();
    assert!(!error_message(&body).is_empty());

    let (status, body) = env.get("opportunities").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], json!([]));
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#opportunities")
    );
    env.running.stop().await;
}

#[tokio::test]
async fn create_answers_204_with_entity_id_or_201_with_representation() {
    let env = start().await;
    let (status, headers, body) = env
        .send(
            env.req(Method::POST, "accounts")
                .json(&json!({"name": "Contoso Ltd", "address1_country": "GB"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    let entity_id = headers["OData-EntityId"].to_str().unwrap();
    assert!(entity_id.starts_with(&format!("{}/api/data/v9.2/accounts(", env.running.url())));
    let id = id_of(entity_id);
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    let (status, headers, body) = env
        .send(
            env.req(Method::POST, "accounts?$select=name,address1_country")
                .header("Prefer", "return=representation")
                .json(&json!({"name": "Fabrikam GmbH", "address1_country": "DE"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(headers.contains_key("OData-EntityId"));
    assert_eq!(body["name"], "Fabrikam GmbH");
    assert_eq!(body["address1_country"], "DE");
    assert!(uuid::Uuid::parse_str(body["accountid"].as_str().unwrap()).is_ok());
    let etag = body["@odata.etag"].as_str().unwrap();
    assert!(etag.starts_with("W/\"") && etag.ends_with('"'), "{etag}");
    assert!(body.get("telephone1").is_none(), "$select honoured: {body}");

    let (status, body) = env.get(&format!("accounts({id})")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "Contoso Ltd");
    assert_eq!(body["statecode"], 0);
    assert_eq!(body["statuscode"], 1);
    env.running.stop().await;
}

#[tokio::test]
async fn undefined_columns_are_rejected_until_created_through_the_metadata_api() {
    let env = start().await;
    let (status, _, body) = env
        .send(
            env.req(Method::POST, "opportunities")
                .json(&json!({"name": "x", "new_bankname": "Woodgrove"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "0x80060888");
    assert_eq!(
        error_message(&body),
        "The property 'new_bankname' does not exist on type 'Microsoft.Dynamics.CRM.opportunity'. Make sure to only use property names that are defined by the type."
    );

    let bank_name = |solution: &str| {
        env.req(
            Method::POST,
            "EntityDefinitions(LogicalName='opportunity')/Attributes",
        )
        .header("MSCRM.SolutionUniqueName", solution)
        .json(&json!({
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "AttributeType": "String", "MaxLength": 100, "SchemaName": "new_BankName",
        }))
    };
    // The prefix must be that of the solution's publisher (cosell's is `cosell`); an
    // unknown solution is refused.
    let (status, _, body) = env.send(bank_name("cosell")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("'cosell_'"), "{body}");
    let (status, _, body) = env.send(bank_name("nosuchsolution")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, headers, body) = env
        .send(
            env.req(Method::POST, "EntityDefinitions(LogicalName='opportunity')/Attributes")
                .header("MSCRM.SolutionUniqueName", "Default")
                .json(&json!({
                    "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                    "AttributeType": "String",
                    "AttributeTypeName": {"Value": "StringType"},
                    "MaxLength": 100,
                    "FormatName": {"Value": "Text"},
                    "SchemaName": "new_BankName",
                    "DisplayName": {"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": "Bank Name", "LanguageCode": 1033}]},
                    "RequiredLevel": {"Value": "None", "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
                })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        headers["OData-EntityId"]
            .to_str()
            .unwrap()
            .contains("EntityDefinitions(LogicalName='opportunity')/Attributes(")
    );
    let id = env
        .create(
            "opportunities",
            json!({"name": "x", "new_bankname": "Woodgrove"}),
        )
        .await;
    let (_, body) = env
        .get(&format!("opportunities({id})?$select=new_bankname"))
        .await;
    assert_eq!(body["new_bankname"], "Woodgrove");

    // Too long for MaxLength 100, and the installed cosell columns are typed.
    let (status, _, body) = env
        .send(
            env.req(Method::POST, "opportunities")
                .json(&json!({"new_bankname": "x".repeat(101)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "0x80044331");
    let (status, _, _) = env
        .send(
            env.req(Method::POST, "opportunities")
                .json(&json!({"cosell_howcanmicrosofthelp": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    env.create(
        "opportunities",
        json!({"cosell_howcanmicrosofthelp": 100000002, "cosell_syncwithpartnercenter": true, "cosell_audit": "a\nb"}),
    )
    .await;
    env.running.stop().await;
}

#[tokio::test]
async fn paging_with_maxpagesize_returns_every_row_once() {
    let env = start().await;
    env.dv.seed_demo_data(23, 0, 7);
    let mut url = "accounts?$select=name".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 20, "paging does not end");
        let (status, headers, body) = env
            .send(
                env.req(Method::GET, &url)
                    .header("Prefer", "odata.maxpagesize=5"),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["Preference-Applied"], "odata.maxpagesize=5");
        let rows = body["value"].as_array().unwrap();
        assert!(rows.len() <= 5);
        for row in rows {
            assert!(row["name"].is_string());
            seen.push(row["accountid"].as_str().unwrap().to_owned());
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken="));
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (23, 23));
    // Same seed, same data.
    let other = Dataverse::new(DataverseConfig::default());
    other.seed_demo_data(23, 0, 7);
    let ids = other.with_store(|s| {
        s.tables["account"]
            .keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
    });
    assert_eq!(ids, unique);
    env.running.stop().await;
}

#[tokio::test]
async fn filter_and_select() {
    let env = start().await;
    for (name, value) in [
        ("Alpha", 1000),
        ("Beta", 6000),
        ("Bravo", 9000),
        ("Gamma", 7000),
        ("O'Brien", 8000),
    ] {
        env.create(
            "opportunities",
            json!({"name": name, "estimatedvalue": value}),
        )
        .await;
    }
    let (status, body) = env
        .get("opportunities?$select=name,estimatedvalue&$filter=estimatedvalue%20gt%205000%20and%20(name%20eq%20'Gamma'%20or%20startswith(name,'B'))&$orderby=name%20desc")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["value"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Gamma", "Bravo", "Beta"]);
    let mut keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["@odata.etag", "estimatedvalue", "name", "opportunityid"]
    );
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#opportunities(name,estimatedvalue)")
    );

    let (_, body) = env
        .get("opportunities?$filter=name eq 'O''Brien' or contains(name,'lph')&$select=name")
        .await;
    assert_eq!(body["value"].as_array().unwrap().len(), 2);
    let (_, body) = env
        .get("opportunities?$filter=estimatedvalue ne 1000 and estimatedvalue lt 8000&$select=name")
        .await;
    assert_eq!(body["value"].as_array().unwrap().len(), 2);

    let (status, body) = env.get("opportunities?$select=nosuchcolumn").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("nosuchcolumn"));
    let (status, _) = env.get("opportunities?$filter=name eq").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    env.running.stop().await;
}

#[tokio::test]
async fn etags_change_on_write_and_conditional_operations_follow_the_docs() {
    let env = start().await;
    let id = env.create("opportunities", json!({"name": "Deal"})).await;
    let (_, before) = env.get(&format!("opportunities({id})")).await;
    let old_etag = before["@odata.etag"].as_str().unwrap().to_owned();

    let (status, _, _) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({id})"))
                .header("If-Match", &old_etag)
                .json(&json!({"estimatedvalue": 50000})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, after) = env.get(&format!("opportunities({id})")).await;
    let new_etag = after["@odata.etag"].as_str().unwrap();
    assert_ne!(new_etag, old_etag);
    assert_eq!(after["estimatedvalue"], 50000);

    // Stale etag → 412 with the documented message.
    let (status, _, body) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({id})"))
                .header("If-Match", &old_etag)
                .json(&json!({"name": "Lost update"})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        error_message(&body),
        "The version of the existing record doesn't match the RowVersion property provided."
    );
    let (_, unchanged) = env.get(&format!("opportunities({id})?$select=name")).await;
    assert_eq!(unchanged["name"], "Deal");

    // If-None-Match with the current etag on GET → 304.
    let (status, _, _) = env
        .send(
            env.req(Method::GET, &format!("opportunities({id})"))
                .header("If-None-Match", new_etag),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // If-Match: * on a missing row → 404, never created (§5b example).
    let missing = uuid::Uuid::new_v4();
    let (status, _, body) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({missing})"))
                .header("If-Match", "*")
                .json(&json!({"name": "...", "estimatedvalue": 50000, "estimatedclosedate": "2024-11-14"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "");
    assert_eq!(
        error_message(&body),
        format!("opportunity With Id = {missing} Does Not Exist")
    );
    let (status, _) = env.get(&format!("opportunities({missing})")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // If-None-Match: * on an existing row → 412, never updated.
    let (status, _, body) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({id})"))
                .header("If-None-Match", "*")
                .json(&json!({"name": "Overwritten"})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        error_message(&body),
        "A record with matching key values already exists."
    );

    // PATCH without conditions on a missing id creates it (upsert).
    let (status, _, body) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({missing})"))
                .header("Prefer", "return=representation")
                .json(&json!({"name": "Upserted"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["opportunityid"], missing.to_string());
    env.running.stop().await;
}

#[tokio::test]
async fn upsert_by_alternate_key_creates_then_updates() {
    let env = start().await;
    let path = "opportunities(cosell_referralidentifier='REF-0001')";
    let (status, headers, _) = env
        .send(env.req(Method::PATCH, path).json(&json!({"name": "First"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let id = id_of(headers["OData-EntityId"].to_str().unwrap());
    let (status, body) = env.get(path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "First");
    assert_eq!(body["cosell_referralidentifier"], "REF-0001");
    assert_eq!(body["opportunityid"], id);

    let (status, headers, _) = env
        .send(
            env.req(Method::PATCH, path)
                .json(&json!({"name": "Second"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(id_of(headers["OData-EntityId"].to_str().unwrap()), id);
    let (_, body) = env
        .get("opportunities?$filter=cosell_referralidentifier eq 'REF-0001'&$select=name")
        .await;
    let rows = body["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "Second");

    // The key is unique; another column is not a key.
    let (status, _, _) = env
        .send(
            env.req(Method::POST, "opportunities")
                .json(&json!({"cosell_referralidentifier": "REF-0001"})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, body) = env.get("opportunities(name='Second')").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    env.running.stop().await;
}

#[tokio::test]
async fn lookups_bind_and_read_back_as_value() {
    let env = start().await;
    let account = env.create("accounts", json!({"name": "Contoso"})).await;
    let contact = env.create("contacts", json!({"firstname": "Ada", "lastname": "Lovelace", "parentcustomerid_account@odata.bind": format!("/accounts({account})")})).await;
    let id = env
        .create(
            "opportunities",
            json!({
                "name": "Deal", "estimatedvalue": 50000, "estimatedclosedate": "2024-11-14",
                "customerid_account@odata.bind": format!("/accounts({account})"),
                "parentcontactid@odata.bind": format!("contacts({contact})"),
            }),
        )
        .await;
    let (_, body) = env.get(&format!("opportunities({id})?$select=name,_customerid_value,_parentcontactid_value,_transactioncurrencyid_value")).await;
    assert_eq!(body["_customerid_value"], account);
    assert_eq!(body["_parentcontactid_value"], contact);
    assert!(
        body["_transactioncurrencyid_value"].is_string(),
        "base currency: {body}"
    );
    assert!(body.get("customerid").is_none());
    let (_, _, annotated) = env
        .send(
            env.req(
                Method::GET,
                &format!("opportunities({id})?$select=_customerid_value"),
            )
            .header("Prefer", "odata.include-annotations=\"*\""),
        )
        .await;
    assert_eq!(
        annotated["_customerid_value@OData.Community.Display.V1.FormattedValue"],
        "Contoso"
    );
    assert_eq!(
        annotated["_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "account"
    );
    let (_, contact_row) = env.get(&format!("contacts({contact})")).await;
    assert_eq!(contact_row["fullname"], "Ada Lovelace");
    let (_, by_lookup) = env
        .get(&format!(
            "opportunities?$filter=_customerid_value eq {account}&$select=name"
        ))
        .await;
    assert_eq!(by_lookup["value"].as_array().unwrap().len(), 1);

    let (status, _, body) = env
        .send(env.req(Method::POST, "opportunities").json(&json!({"customerid_account@odata.bind": format!("/accounts({})", uuid::Uuid::new_v4())})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, _) = env
        .send(
            env.req(Method::POST, "opportunities")
                .json(&json!({"customerid": account})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    env.running.stop().await;
}

#[tokio::test]
async fn win_opportunity_closes_it() {
    let env = start().await;
    let id = env
        .create(
            "opportunities",
            json!({"name": "Deal", "estimatedvalue": 1200}),
        )
        .await;
    let (status, _, body) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({id})"))
                .json(&json!({"statecode": 1, "statuscode": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = env
        .send(env.req(Method::POST, "WinOpportunity").json(&json!({
            "Status": 3,
            "OpportunityClose": {"subject": "Won", "opportunityid@odata.bind": format!("/opportunities({id})")},
        })))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, row) = env.get(&format!("opportunities({id})")).await;
    assert_eq!(row["statecode"], 1);
    assert_eq!(row["statuscode"], 3);
    assert_eq!(row["actualvalue"], 1200);
    assert!(row["actualclosedate"].is_string());
    // Closed rows are read-only; closing again fails.
    let (status, _, _) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({id})"))
                .json(&json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = env
        .send(env.req(Method::POST, "LoseOpportunity").json(&json!({
            "Status": 5,
            "OpportunityClose": {"subject": "Lost", "opportunityid@odata.bind": format!("/opportunities({id})")},
        })))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Reactivate, then lose.
    let (status, _, _) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({id})"))
                .json(&json!({"statecode": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = env
        .send(env.req(Method::POST, "LoseOpportunity").json(&json!({
            "Status": 5,
            "OpportunityClose": {"subject": "Lost", "opportunityid@odata.bind": format!("/opportunities({id})")},
        })))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, row) = env
        .get(&format!("opportunities({id})?$select=statecode,statuscode"))
        .await;
    assert_eq!(
        (row["statecode"].clone(), row["statuscode"].clone()),
        (json!(2), json!(5))
    );
    env.running.stop().await;
}

fn http_part(method: &str, url: &str, body: Option<Value>, content_id: Option<u32>) -> String {
    let mut part =
        String::from("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = content_id {
        part.push_str(&format!("Content-ID: {id}\r\n"));
    }
    part.push_str(&format!("\r\n{method} {url} HTTP/1.1\r\n"));
    match body {
        Some(body) => part.push_str(&format!(
            "Content-Type: application/json; type=entry\r\n\r\n{body}\r\n"
        )),
        None => part.push_str("\r\n"),
    }
    part
}

fn change_set(boundary: &str, parts: &[String]) -> String {
    let mut out = format!("Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n");
    for p in parts {
        out.push_str(&format!("--{boundary}\r\n{p}"));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

fn batch(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        out.push_str(&format!("--batch_AAA123\r\n{p}"));
    }
    out.push_str("--batch_AAA123--\r\n");
    out
}

async fn account_names(env: &Env) -> Vec<String> {
    let (_, body) = env.get("accounts?$select=name").await;
    let mut names: Vec<String> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn batch_change_sets_are_atomic_and_continue_on_error_runs_the_rest() {
    let env = start().await;
    let good = change_set(
        "changeset_good",
        &[
            http_part(
                "POST",
                "/api/data/v9.2/accounts",
                Some(json!({"name": "Batch A"})),
                Some(1),
            ),
            http_part(
                "POST",
                "/api/data/v9.2/opportunities",
                Some(json!({"name": "Batch deal", "customerid_account@odata.bind": "$1"})),
                Some(2),
            ),
        ],
    );
    let bad = change_set(
        "changeset_bad",
        &[
            http_part(
                "POST",
                "/api/data/v9.2/accounts",
                Some(json!({"name": "Batch B"})),
                Some(3),
            ),
            http_part(
                "POST",
                "/api/data/v9.2/opportunities",
                Some(json!({"name": "x", "new_undefined": 1})),
                Some(4),
            ),
        ],
    );
    let single = http_part(
        "POST",
        &format!("{}/api/data/v9.2/accounts", env.running.url()),
        Some(json!({"name": "Batch C"})),
        None,
    );
    let get = http_part("GET", "accounts?$select=name", None, None);
    let body = batch(&[good, bad.clone(), single.clone(), get]);
    let response = env
        .req(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=batch_AAA123")
        .header("Prefer", "odata.continue-on-error")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("multipart/mixed; boundary=batchresponse_"));
    let text = response.text().await.unwrap();
    assert!(text.contains("changesetresponse_"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 204 No Content").count(), 3, "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 400 Bad Request").count(),
        1,
        "{text}"
    );
    assert!(text.contains("new_undefined"));
    assert!(text.contains("HTTP/1.1 200 OK"));
    assert_eq!(account_names(&env).await, ["Batch A", "Batch C"]);
    let (_, deals) = env
        .get("opportunities?$select=name,_customerid_value")
        .await;
    let deals = deals["value"].as_array().unwrap();
    assert_eq!(deals.len(), 1);
    assert!(
        deals[0]["_customerid_value"].is_string(),
        "$1 reference bound"
    );

    // A failed change set also undoes its updates and deletes, etags included.
    let (_, before) = env.get("accounts?$filter=name eq 'Batch A'").await;
    let a = before["value"][0].clone();
    let a_id = a["accountid"].as_str().unwrap().to_owned();
    let c_id = env.get("accounts?$filter=name eq 'Batch C'").await.1["value"][0]["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    let undo = change_set(
        "changeset_undo",
        &[
            http_part(
                "PATCH",
                &format!("accounts({a_id})"),
                Some(json!({"name": "Renamed"})),
                Some(1),
            ),
            http_part("DELETE", &format!("accounts({c_id})"), None, Some(2)),
            http_part(
                "PATCH",
                &format!("accounts({a_id})"),
                Some(json!({"nosuch": 1})),
                Some(3),
            ),
        ],
    );
    let response = env
        .req(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=batch_AAA123")
        .body(batch(&[undo]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (_, after) = env.get(&format!("accounts({a_id})")).await;
    assert_eq!(after["name"], "Batch A");
    assert_eq!(after["@odata.etag"], a["@odata.etag"]);
    assert_eq!(account_names(&env).await, ["Batch A", "Batch C"]);

    // Without continue-on-error the batch stops at the failing change set.
    let stop = batch(&[
        bad,
        http_part("POST", "accounts", Some(json!({"name": "Batch D"})), None),
    ]);
    let response = env
        .req(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=\"batch_AAA123\"")
        .body(stop)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(account_names(&env).await, ["Batch A", "Batch C"]);

    // More than 1000 requests are refused.
    let many: Vec<String> = (0..1001)
        .map(|_| http_part("GET", "accounts", None, None))
        .collect();
    let response = env
        .req(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=batch_AAA123")
        .body(batch(&many))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    env.running.stop().await;
}

#[tokio::test]
async fn change_tracking_returns_updates_and_deleted_entities() {
    let env = start().await;
    let kept = env
        .create(
            "opportunities",
            json!({"name": "Kept", "estimatedvalue": 10}),
        )
        .await;
    let gone = env
        .create(
            "opportunities",
            json!({"name": "Gone", "estimatedvalue": 20}),
        )
        .await;
    let untouched = env
        .create("opportunities", json!({"name": "Untouched"}))
        .await;

    let (status, headers, body) = env
        .send(
            env.req(Method::GET, "opportunities?$select=name,estimatedvalue")
                .header("Prefer", "odata.track-changes"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["Preference-Applied"], "odata.track-changes");
    assert_eq!(body["value"].as_array().unwrap().len(), 3);
    let delta_link = body["@odata.deltaLink"].as_str().unwrap().to_owned();
    assert!(delta_link.contains("$deltatoken="), "{delta_link}");

    let (status, _, _) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({kept})"))
                .json(&json!({"estimatedvalue": 99})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = env
        .send(env.req(Method::DELETE, &format!("opportunities({gone})")))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env.get(&format!("opportunities({gone})")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = env.get(&delta_link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#opportunities(name,estimatedvalue)/$delta")
    );
    let rows = body["value"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    let updated = rows
        .iter()
        .find(|r| r["opportunityid"] == kept.as_str())
        .expect("updated row");
    assert_eq!(updated["estimatedvalue"], 99);
    assert!(updated["@odata.etag"].is_string());
    let deleted = rows
        .iter()
        .find(|r| r["id"] == gone.as_str())
        .expect("deleted row");
    assert_eq!(deleted["reason"], "deleted");
    assert!(
        deleted["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#opportunities/$deletedEntity")
    );
    assert!(
        !rows
            .iter()
            .any(|r| r["opportunityid"] == untouched.as_str())
    );

    let next = body["@odata.deltaLink"].as_str().unwrap();
    let (_, body) = env.get(next).await;
    assert_eq!(body["value"], json!([]));

    let (status, _, body) = env
        .send(
            env.req(Method::GET, "opportunities?$filter=name eq 'x'")
                .header("Prefer", "odata.track-changes"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_message(&body),
        "The \"$filter\" query parameter isn't supported when Change Tracking is enabled."
    );
    env.running.stop().await;
}

#[tokio::test]
async fn service_protection_limit_answers_429_with_retry_after() {
    let env = start_with(DataverseConfig {
        limits: ServiceProtectionLimits {
            requests: 3,
            ..ServiceProtectionLimits::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    for _ in 0..3 {
        let (status, _, _) = env.send(env.req(Method::GET, "accounts")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, body) = env.send(env.req(Method::GET, "accounts")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = headers["Retry-After"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(&body), "0x80072322");
    assert_eq!(
        error_message(&body),
        "Number of requests exceeded the limit of 3 over time window of 300 seconds."
    );

    // The window slides: after Retry-After of emulated time the client is admitted again.
    let advanced = env
        .http
        .post(format!("{}/_emulator/clock/advance", env.running.url()))
        .json(&json!({"seconds": retry_after}))
        .send()
        .await
        .unwrap();
    assert_eq!(advanced.status(), StatusCode::OK);
    let (status, _, _) = env.send(env.req(Method::GET, "accounts")).await;
    assert_eq!(status, StatusCode::OK);
    env.running.stop().await;
}

/// Loads accounts in `$batch` requests of 100 creates until one is refused (at most 30
/// requests); returns how many were admitted and the refusal, if any.
async fn bulk_load(env: &Env) -> (usize, Option<(reqwest::header::HeaderMap, Value)>) {
    for admitted in 0..30 {
        let parts: Vec<String> = (0..100)
            .map(|n| {
                let body = json!({ "name": format!("Bulk {admitted}-{n}") });
                http_part("POST", "/api/data/v9.2/accounts", Some(body), None)
            })
            .collect();
        let (status, headers, body) = env
            .send(
                env.req(Method::POST, "$batch")
                    .header("Content-Type", "multipart/mixed; boundary=batch_AAA123")
                    .body(batch(&parts)),
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return (admitted, Some((headers, body)));
        }
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    (30, None)
}

/// A bulk load in `$batch` requests meets the execution-time limit long before the request
/// limit, as against the real service: each create is charged its emulated execution time.
#[tokio::test]
async fn a_batch_bulk_load_meets_the_execution_time_limit_first() {
    let env = start_with(DataverseConfig {
        limits: ServiceProtectionLimits {
            // A minute of execution time per 300 s: 12 batches of 100 creates at 50 ms each.
            execution_time: chrono::Duration::seconds(60),
            ..ServiceProtectionLimits::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    let (admitted, refused) = bulk_load(&env).await;
    assert_eq!(admitted, 12, "6,000 requests allowed, 12 sent");
    let (headers, body) = refused.expect("refused by the execution-time limit");
    assert_eq!(error_code(&body), "0x80072321");
    assert_eq!(
        error_message(&body),
        "Combined execution time of incoming requests exceeded limit of 60000 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
    );
    let retry_after: i64 = headers["Retry-After"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    assert!(env.dv.service_protection().execution_ms >= 60_000);
    // After the Retry-After, enough of the window has passed: the client is admitted again.
    env.dv
        .clock()
        .advance(chrono::Duration::seconds(retry_after));
    let (status, _, _) = env.send(env.req(Method::GET, "accounts?$top=1")).await;
    assert_eq!(status, StatusCode::OK);
    env.running.stop().await;
}

/// The charge per operation is configurable, and zero leaves only the emulator's own time.
#[tokio::test]
async fn the_execution_charge_is_configurable_and_zero_able() {
    let limits = ServiceProtectionLimits {
        execution_time: chrono::Duration::seconds(60),
        ..ServiceProtectionLimits::default()
    };
    let free = start_with(DataverseConfig {
        limits: limits.clone(),
        execution_charge: ExecutionCharge::zero(),
        ..DataverseConfig::default()
    })
    .await;
    let (admitted, refused) = bulk_load(&free).await;
    assert_eq!((admitted, refused.is_none()), (30, true));
    free.running.stop().await;

    let dear = start_with(DataverseConfig {
        limits,
        execution_charge: ExecutionCharge {
            create: std::time::Duration::from_secs(1),
            ..ExecutionCharge::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    let (admitted, refused) = bulk_load(&dear).await;
    assert_eq!(admitted, 1, "100 creates at 1 s use the minute at once");
    assert_eq!(error_code(&refused.unwrap().1), "0x80072321");
    dear.running.stop().await;
}

type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, String, Value)>>>;

async fn receiver(fail_first: usize) -> (String, Received) {
    use axum::extract::{RawQuery, State};
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                move |State(received): State<Received>,
                      RawQuery(query): RawQuery,
                      headers: axum::http::HeaderMap,
                      body: String| async move {
                    let mut list = received.lock().unwrap();
                    list.push((
                        headers,
                        query.unwrap_or_default(),
                        serde_json::from_str(&body).unwrap_or(Value::Null),
                    ));
                    if list.len() <= fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

async fn register_webhook(env: &Env, url: &str, authtype: i64, authvalue: &str, message: &str) {
    let endpoint = env
        .create(
            "serviceendpoints",
            json!({"name": "cosell", "contract": 8, "authtype": authtype, "authvalue": authvalue, "url": url, "messageformat": 2}),
        )
        .await;
    let (_, messages) = env
        .get(&format!(
            "sdkmessages?$filter=name eq '{message}'&$select=name"
        ))
        .await;
    let message_id = messages["value"][0]["sdkmessageid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, filters) = env
        .get(&format!("sdkmessagefilters?$filter=primaryobjecttypecode eq 'opportunity' and _sdkmessageid_value eq {message_id}"))
        .await;
    let filter_id = filters["value"][0]["sdkmessagefilterid"]
        .as_str()
        .unwrap()
        .to_owned();
    env.create(
        "sdkmessageprocessingsteps",
        json!({
            "name": "cosell: opportunity", "mode": 1, "stage": 40, "rank": 1, "supporteddeployment": 0,
            "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
            "sdkmessageid@odata.bind": format!("/sdkmessages({message_id})"),
            "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({filter_id})"),
        }),
    )
    .await;
}

async fn wait_for(received: &Received, n: usize) {
    for _ in 0..100 {
        if received.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "expected {n} deliveries, got {}",
        received.lock().unwrap().len()
    );
}

#[tokio::test]
async fn webhook_delivers_remote_execution_context_and_retries_once_after_503() {
    let env = start().await;
    let (url, received) = receiver(1).await;
    register_webhook(
        &env,
        &url,
        5,
        r#"<settings><setting name="x-cosell-key" value="s3cret" /></settings>"#,
        "Create",
    )
    .await;
    // Not matching: another table.
    env.create("accounts", json!({"name": "No hook"})).await;
    let id = env
        .create("opportunities", json!({"name": "Hooked", "estimatedvalue": 50000, "cosell_syncwithpartnercenter": true}))
        .await;
    wait_for(&received, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let list = received.lock().unwrap().clone();
    assert_eq!(list.len(), 2, "one delivery failing with 503, one retry");
    let (headers, _, body) = &list[1];
    assert_eq!(list[0].2, list[1].2, "the retry sends the same body");
    assert_eq!(headers["x-cosell-key"], "s3cret");
    assert_eq!(
        headers["x-ms-dynamics-organization"],
        "cosell-emulator.crm.dynamics.com"
    );
    assert_eq!(headers["x-ms-dynamics-entity-name"], "opportunity");
    assert_eq!(headers["x-ms-dynamics-request-name"], "Create");
    assert!(
        uuid::Uuid::parse_str(headers["x-ms-correlation-request-id"].to_str().unwrap()).is_ok()
    );
    assert!(!headers["x-request-id"].is_empty());
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["MessageName"], "Create");
    assert_eq!(body["PrimaryEntityName"], "opportunity");
    assert_eq!(body["PrimaryEntityId"], id);
    assert_eq!(
        body["CorrelationId"],
        headers["x-ms-correlation-request-id"].to_str().unwrap()
    );
    assert_eq!(
        (
            body["Depth"].clone(),
            body["Stage"].clone(),
            body["Mode"].clone()
        ),
        (json!(1), json!(40), json!(1))
    );
    assert!(
        body["OperationCreatedOn"]
            .as_str()
            .unwrap()
            .starts_with("/Date(")
    );
    assert!(body["UserId"].is_string() && body["OrganizationId"].is_string());
    assert_eq!(body["SecondaryEntityName"], "none");
    assert_eq!(
        body["OwningExtension"]["LogicalName"],
        "sdkmessageprocessingstep"
    );
    let target = &body["InputParameters"][0];
    assert_eq!(target["key"], "Target");
    assert_eq!(target["value"]["LogicalName"], "opportunity");
    assert_eq!(target["value"]["Id"], id);
    let attributes = target["value"]["Attributes"].as_array().unwrap();
    let attribute = |k: &str| {
        attributes
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"].clone())
    };
    assert_eq!(attribute("name"), Some(json!("Hooked")));
    assert_eq!(attribute("cosell_syncwithpartnercenter"), Some(json!(true)));
    assert_eq!(attribute("estimatedvalue").unwrap()["Value"], 50000);
    assert_eq!(attribute("opportunityid"), Some(json!(id)));
    // The Target names the row's version after the write, as text.
    let (_, row) = env.get(&format!("opportunities({id})")).await;
    assert_eq!(
        target["value"]["RowVersion"],
        json!(row["versionnumber"].to_string()),
        "{body}"
    );
    env.running.stop().await;
}

#[tokio::test]
async fn webhook_auth_by_query_string_and_update_filtering_attributes() {
    let env = start().await;
    let (url, received) = receiver(0).await;
    register_webhook(&env, &url, 4, "function-key", "Update").await;
    let id = env
        .create("opportunities", json!({"name": "Quiet create"}))
        .await;
    let (status, _, _) = env
        .send(
            env.req(Method::PATCH, &format!("opportunities({id})"))
                .json(&json!({"name": "Loud update"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_for(&received, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let list = received.lock().unwrap().clone();
    assert_eq!(list.len(), 1, "only the update is delivered");
    assert_eq!(list[0].1, "code=function-key");
    assert_eq!(list[0].2["MessageName"], "Update");
    env.running.stop().await;
}

#[tokio::test]
async fn expand_returns_related_rows_as_mapping_reads_them() {
    let env = start().await;
    let account = env
        .create(
            "accounts",
            json!({"name": "Contoso", "address1_country": "GB"}),
        )
        .await;
    let contact = env
        .create("contacts", json!({"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com", "parentcustomerid_account@odata.bind": format!("/accounts({account})")}))
        .await;
    let id = env
        .create(
            "opportunities",
            json!({"name": "Deal", "customerid_account@odata.bind": format!("/accounts({account})"), "parentcontactid@odata.bind": format!("/contacts({contact})")}),
        )
        .await;
    let (status, body) = env
        .get(&format!("opportunities({id})?$expand=customerid_account($select=name,address1_country;$expand=contact_customer_accounts($select=emailaddress1)),parentcontactid,transactioncurrencyid($select=isocurrencycode)"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["customerid_account"]["name"], "Contoso");
    assert_eq!(body["customerid_account"]["address1_country"], "GB");
    assert_eq!(
        body["customerid_account"]["contact_customer_accounts"][0]["emailaddress1"],
        "ada@example.com"
    );
    assert_eq!(body["parentcontactid"]["fullname"], "Ada Lovelace");
    assert_eq!(body["transactioncurrencyid"]["isocurrencycode"], "USD");
    assert_eq!(body["customerid_contact"], Value::Null);
    let (_, list) = env
        .get("opportunities?$select=name&$expand=customerid_contact")
        .await;
    assert_eq!(list["value"][0]["customerid_contact"], Value::Null);
    let (status, _) = env.get("opportunities?$expand=nosuchnav").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    env.running.stop().await;
}

#[tokio::test]
async fn webhook_faults_drop_and_duplicate_deliveries() {
    use cosell_emulators::common::faults::FaultConfig;
    let env = start().await;
    let (url, received) = receiver(0).await;
    register_webhook(
        &env,
        &url,
        6,
        r#"<settings><setting name="k1" value="v 1" /><setting name="k2" value="v2" /></settings>"#,
        "Create",
    )
    .await;
    env.dv
        .faults()
        .set(FaultConfig {
            webhook_duplicate_rate: 1.0,
            ..FaultConfig::default()
        })
        .unwrap();
    env.create("opportunities", json!({"name": "Twice"})).await;
    wait_for(&received, 2).await;
    {
        let list = received.lock().unwrap();
        assert_eq!(list[0].1, "k1=v%201&k2=v2");
        assert_eq!(list[0].2, list[1].2);
    }
    env.dv
        .faults()
        .set(FaultConfig {
            webhook_drop_rate: 1.0,
            ..FaultConfig::default()
        })
        .unwrap();
    env.create("opportunities", json!({"name": "Never"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.lock().unwrap().len(), 2);
    env.running.stop().await;
}

/// A create whose answer was lost must be safe to send again: a POST naming a row that exists
/// and a PATCH with `If-None-Match: *` (alone or as a `$batch` part) fail with 412 and leave the
/// row as it was, never overwrite it; a PATCH whose body names another row is refused.
#[tokio::test]
async fn creates_never_overwrite_a_row_that_exists_alone_or_in_a_batch() {
    let env = start().await;
    let (status, headers, _) = env
        .send(
            env.req(Method::POST, "accounts")
                .json(&json!({"name": "Original"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let id = id_of(headers["OData-EntityId"].to_str().unwrap());

    let (status, _, body) = env
        .send(
            env.req(Method::POST, "accounts")
                .json(&json!({"accountid": id, "name": "Posted again"})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        error_message(&body),
        "A record with matching key values already exists."
    );

    // A PATCH naming another row in its body than in its URL is refused, not guessed.
    let other = uuid::Uuid::new_v4();
    let (status, _, _) = env
        .send(
            env.req(Method::PATCH, &format!("accounts({other})"))
                .header("If-None-Match", "*")
                .json(&json!({"accountid": id, "name": "Which one?"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let fresh = uuid::Uuid::new_v4();
    let if_none_match =
        |part: String| part.replacen("HTTP/1.1\r\n", "HTTP/1.1\r\nIf-None-Match: *\r\n", 1);
    let body = batch(&[
        if_none_match(http_part(
            "PATCH",
            &format!("accounts({id})"),
            Some(json!({"name": "Batched again"})),
            None,
        )),
        if_none_match(http_part(
            "PATCH",
            &format!("accounts({fresh})"),
            Some(json!({"name": "Batched new"})),
            None,
        )),
    ]);
    let response = env
        .req(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=batch_AAA123")
        .header("Prefer", "odata.continue-on-error")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert_eq!(text.matches("HTTP/1.1 412").count(), 1, "{text}");
    assert_eq!(text.matches("HTTP/1.1 204 No Content").count(), 1, "{text}");
    assert_eq!(account_names(&env).await, ["Batched new", "Original"]);
    env.running.stop().await;
}

#[tokio::test]
async fn win_and_lose_deliver_their_opportunity_close_not_a_target() {
    let env = start().await;
    let (url, received) = receiver(0).await;
    for message in ["Win", "Lose"] {
        register_webhook(&env, &url, 4, "k", message).await;
    }
    let won = env
        .create(
            "opportunities",
            json!({"name": "Won deal", "estimatedvalue": 1000}),
        )
        .await;
    let lost = env
        .create("opportunities", json!({"name": "Lost deal"}))
        .await;
    for (action, id, status) in [("WinOpportunity", &won, 3), ("LoseOpportunity", &lost, 4)] {
        let (code, _, body) = env
            .send(env.req(Method::POST, action).json(&json!({
                "Status": status,
                "OpportunityClose": {"subject": "closed", "opportunityid@odata.bind": format!("/opportunities({id})")}
            })))
            .await;
        assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    }
    wait_for(&received, 2).await;
    let list = received.lock().unwrap().clone();
    for ((_, _, body), (message, id, status)) in
        list.iter().zip([("Win", &won, 3), ("Lose", &lost, 4)])
    {
        assert_eq!(body["MessageName"], message);
        assert_eq!(
            body["PrimaryEntityId"], "00000000-0000-0000-0000-000000000000",
            "{body:#}"
        );
        let inputs = body["InputParameters"].as_array().unwrap();
        assert!(inputs.iter().all(|p| p["key"] != "Target"), "{body:#}");
        let close = &inputs
            .iter()
            .find(|p| p["key"] == "OpportunityClose")
            .unwrap()["value"];
        assert_eq!(close["LogicalName"], "opportunityclose");
        let reference = &close["Attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "opportunityid")
            .unwrap()["value"];
        assert_eq!(
            (reference["LogicalName"].as_str(), reference["Id"].as_str()),
            (Some("opportunity"), Some(id.as_str()))
        );
        let state = &inputs.iter().find(|p| p["key"] == "Status").unwrap()["value"];
        assert_eq!(state["Value"], status);
        assert!(
            state["__type"]
                .as_str()
                .unwrap()
                .starts_with("OptionSetValue:")
        );
    }
    env.running.stop().await;
}

#[tokio::test]
async fn delta_answers_are_paged_and_delta_tokens_expire_after_seven_days() {
    // An access token that outlives the week this test skips.
    let env = start_with(DataverseConfig {
        token_lifetime: chrono::Duration::days(30),
        ..DataverseConfig::default()
    })
    .await;
    let (_, _, body) = env
        .send(
            env.req(Method::GET, "opportunities?$select=name")
                .header("Prefer", "odata.track-changes"),
        )
        .await;
    let delta_link = body["@odata.deltaLink"].as_str().unwrap().to_owned();
    for i in 0..7 {
        env.create("opportunities", json!({"name": format!("Changed {i}")}))
            .await;
    }
    // Pages of 3: a next link on each but the last, the new delta link only on the last.
    let mut seen = 0;
    let mut next = delta_link.clone();
    let mut pages = 0;
    let new_delta = loop {
        let (status, _, page) = env
            .send(
                env.req(Method::GET, &next)
                    .header("Prefer", "odata.track-changes,odata.maxpagesize=3"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        seen += page["value"].as_array().unwrap().len();
        match (
            page["@odata.nextLink"].as_str(),
            page["@odata.deltaLink"].as_str(),
        ) {
            (Some(link), None) => next = link.to_owned(),
            (None, Some(delta)) => break delta.to_owned(),
            other => panic!("a page has a next link or a delta link, not {other:?}"),
        }
        assert!(pages < 10);
    };
    assert_eq!((seen, pages), (7, 3));

    // Seven days are fine; past them the token is refused, and a full read starts again.
    env.dv
        .clock()
        .advance(chrono::TimeDelta::days(7) - chrono::TimeDelta::hours(1));
    let (status, _) = env.get(&new_delta).await;
    assert_eq!(status, StatusCode::OK);
    env.dv.clock().advance(chrono::TimeDelta::hours(2));
    let (status, body) = env.get(&new_delta).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("expired"), "{body}");
    env.running.stop().await;
}
