//! The Dataverse emulator's Metadata API reads over real HTTP, as Microsoft's own clients make
//! them: a table looked up by LogicalName through the collection, addressed by MetadataId, its
//! columns with their types, and the choice options of the type-cast collections.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Env, error_code, error_message, start};

impl Env {
    /// The table's definition found as the Python SDK finds it (its exact query string).
    async fn table(&self, logical: &str) -> Value {
        let (status, body) = self
            .get(&format!(
                "EntityDefinitions?%24select=LogicalName%2CEntitySetName%2CPrimaryIdAttribute&%24filter=LogicalName+eq+%27{logical}%27"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let value = body["value"].as_array().expect("a collection");
        assert_eq!(value.len(), 1, "{body}");
        value[0].clone()
    }
}

#[tokio::test]
async fn a_table_is_found_by_logical_name_with_only_the_selected_properties_and_its_metadata_id() {
    let env = start().await;
    let account = env.table("account").await;
    let mut keys: Vec<&str> = account
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "EntitySetName",
            "LogicalName",
            "MetadataId",
            "PrimaryIdAttribute"
        ]
    );
    assert_eq!(account["EntitySetName"], "accounts");
    assert_eq!(account["PrimaryIdAttribute"], "accountid");
    let (status, none) = env
        .get("EntityDefinitions?$select=LogicalName&$filter=LogicalName eq 'nosuchtable'")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none["value"], json!([]));
    let (_, both) = env
        .get("EntityDefinitions?$select=LogicalName&$filter=LogicalName eq 'account' or LogicalName eq 'contact'")
        .await;
    assert_eq!(both["value"].as_array().unwrap().len(), 2, "{both}");
    assert!(
        both["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#EntityDefinitions(LogicalName)"),
        "{both}"
    );
}

#[tokio::test]
async fn a_table_and_its_columns_are_addressed_by_metadata_id() {
    let env = start().await;
    let id = env.table("opportunity").await["MetadataId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, table) = env
        .get(&format!(
            "EntityDefinitions({id})?$select=SchemaName,PrimaryNameAttribute"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{table}");
    assert_eq!(table["SchemaName"], "Opportunity");
    assert_eq!(table["PrimaryNameAttribute"], "name");
    assert!(table.get("EntitySetName").is_none(), "{table}");

    let (status, columns) = env
        .get(&format!(
            "EntityDefinitions({id})/Attributes?$select=LogicalName,AttributeType"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{columns}");
    let names: Vec<&str> = columns["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["LogicalName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"estimatedvalue") && names.contains(&"name"),
        "{names:?}"
    );
    assert!(
        columns["value"][0]["@odata.type"]
            .as_str()
            .unwrap()
            .starts_with("#Microsoft.Dynamics.CRM.")
    );

    let (status, name) = env
        .get(&format!(
            "EntityDefinitions({id})/Attributes(LogicalName='name')"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["MaxLength"], 300);
    assert_eq!(name["IsPrimaryName"], true);
    assert_eq!(name["AttributeTypeName"]["Value"], "StringType");

    let (status, body) = env
        .get("EntityDefinitions(00000000-0000-0000-0000-00000000abcd)")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn choice_options_come_with_their_labels_from_the_picklist_cast() {
    let env = start().await;
    let (status, body) = env
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stage = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["LogicalName"] == "salesstage")
        .expect("salesstage is a choice column");
    let options = stage["OptionSet"]["Options"].as_array().unwrap();
    let labelled: Vec<(i64, &str)> = options
        .iter()
        .map(|o| {
            (
                o["Value"].as_i64().unwrap(),
                o["Label"]["LocalizedLabels"][0]["Label"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        labelled,
        [(0, "Qualify"), (1, "Develop"), (2, "Propose"), (3, "Close")]
    );
    assert!(
        stage.get("AttributeType").is_none(),
        "only what was selected: {stage}"
    );

    // Without $expand the option set (a navigation property) is not there.
    let (_, plain) = env
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName")
        .await;
    assert!(plain["value"][0].get("OptionSet").is_none(), "{plain}");
    // A table without choice columns answers an empty collection, never an error.
    let (status, none) = env
        .get("EntityDefinitions(LogicalName='transactioncurrency')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
        .await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(none["value"], json!([]));
    // One column by name, cast.
    let (status, one) = env
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='salesstage')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["OptionSet"]["Options"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_custom_choice_columns_labels_are_kept() {
    let env = start().await;
    let label = |text: &str| json!({"LocalizedLabels": [{"Label": text, "LanguageCode": 1033}]});
    let (status, _, body) = env
        .send(
            env.req(
                reqwest::Method::POST,
                "EntityDefinitions(LogicalName='account')/Attributes",
            )
            .json(&json!({
                "@odata.type": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
                "SchemaName": "new_Tier",
                "DisplayName": label("Tier"),
                "OptionSet": {"IsGlobal": false, "OptionSetType": "Picklist", "Options": [
                    {"Value": 100000000, "Label": label("Gold")},
                    {"Value": 100000001, "Label": label("Silver")},
                ]},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = env
        .get("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='new_tier')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let labels: Vec<&str> = body["OptionSet"]["Options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["Label"]["LocalizedLabels"][0]["Label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Gold", "Silver"]);
}

#[tokio::test]
async fn columns_filter_by_type_and_tables_expand_their_attributes() {
    let env = start().await;
    let (status, body) = env
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes?$select=LogicalName&$filter=AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Money'")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let money: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["LogicalName"].as_str().unwrap())
        .collect();
    assert!(money.contains(&"estimatedvalue"), "{money:?}");
    assert!(!money.contains(&"name"), "{money:?}");

    let (status, body) = env
        .get("EntityDefinitions(LogicalName='account')?$select=LogicalName&$expand=Attributes($select=LogicalName;$filter=LogicalName eq 'name')")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Attributes"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["Attributes"][0]["LogicalName"], "name");
}

#[tokio::test]
async fn what_metadata_queries_cannot_do_is_refused_as_the_service_refuses_it() {
    let env = start().await;
    for option in ["$top=1", "$orderby=LogicalName", "$skip=1", "$count=true"] {
        let (status, body) = env.get(&format!("EntityDefinitions?{option}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{option}: {body}");
        assert_eq!(error_code(&body), "0x80060888");
        assert!(error_message(&body).contains("is not supported"), "{body}");
    }
    let (status, body) = env
        .get("EntityDefinitions?$filter=startswith(LogicalName,'acc')")
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(error_code(&body), "0x8006088a");
    let (status, body) = env
        .get("EntityDefinitions?$select=LogicalName,NoSuchProperty")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("NoSuchProperty"), "{body}");
    // OptionSet is not a property of every attribute: only a cast may expand it.
    let (status, body) = env
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes?$expand=OptionSet")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
