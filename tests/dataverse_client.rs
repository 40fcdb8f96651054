//! The Dataverse client against the Dataverse emulator over real HTTP: rows with etags and
//! conditional writes, upsert by alternate key, atomic `$batch`, the bulk messages, paging,
//! change tracking,
//! Win/Lose and the Metadata API. Retries, throttling with the adaptive concurrency limiter
//! and auth errors are in `dataverse_client/resilience.rs`.

#[path = "dataverse_client/resilience.rs"]
mod resilience;

use cosell::config::Secret;
use cosell::connections::dataverse::{
    BatchItem, BatchRequest, BulkRow, BulkTable, ChangePage, DataverseClient, DataverseError,
    DataverseSettings, Row,
};
use cosell::connections::odata;
use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// Every test is bounded: a hung call fails the test instead of the run.
const BOUND: Duration = Duration::from_secs(60);

async fn emulator(config: DataverseConfig) -> (Dataverse, RunningEmulator) {
    let dv = Dataverse::new(config);
    dv.provision_cosell();
    let running = dv.serve().await.expect("the emulator starts");
    (dv, running)
}

fn settings(dv: &Dataverse, url: &str) -> DataverseSettings {
    DataverseSettings {
        url: url.to_owned(),
        token_url: format!("{url}/{}/oauth2/v2.0/token", dv.config().tenant_id),
        client_id: dv.config().client_id.clone(),
        client_secret: Secret::new(dv.config().client_secret.clone()),
        scope: None,
        timeout: Duration::from_secs(5),
        max_retries: 8,
        max_concurrency: 8,
    }
}

fn client(dv: &Dataverse, running: &RunningEmulator) -> DataverseClient {
    DataverseClient::new(settings(dv, &running.url())).expect("a client")
}

/// The row, which must exist.
async fn read_row(client: &DataverseClient, set: &str, id: &str, query: &str) -> Row {
    client
        .get(set, id, query)
        .await
        .expect("a read")
        .unwrap_or_else(|| panic!("{set}({id}) exists"))
}

/// An opportunity's statecode and statuscode.
fn state(row: &Row) -> (i64, i64) {
    (
        row.body["statecode"].as_i64().unwrap_or(-1),
        row.body["statuscode"].as_i64().unwrap_or(-1),
    )
}

fn names(rows: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = rows
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The changes to opportunities' name and estimated value since `delta_link` (every row
/// without one), read by the client as the change-tracking poller reads them.
async fn opportunity_changes(client: &DataverseClient, delta_link: Option<&str>) -> ChangePage {
    client
        .track_changes("opportunities", "name,estimatedvalue", delta_link)
        .await
        .expect("a change-tracking read")
}

fn request(method: Method, path: &str, body: Option<Value>) -> BatchRequest {
    BatchRequest {
        method,
        path: path.to_owned(),
        body,
        ..BatchRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_and_conditional_updates_follow_etags() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running);
        let id = client
            .create(
                "accounts",
                &json!({"name": "Contoso", "address1_country": "GB"}),
            )
            .await
            .expect("created");
        let row = read_row(&client, "accounts", &id, "$select=name,address1_country").await;
        assert_eq!(row.body["name"], "Contoso");
        assert_eq!(row.body["address1_country"], "GB");
        let etag = row.etag.expect("an etag");
        assert!(etag.starts_with("W/\""), "{etag}");

        client
            .update(
                "accounts",
                &id,
                &json!({"name": "Contoso Ltd"}),
                Some(&etag),
            )
            .await
            .expect("the current etag is accepted");
        let after = read_row(&client, "accounts", &id, "").await;
        assert_eq!(after.body["name"], "Contoso Ltd");
        assert_ne!(
            after.etag.as_deref(),
            Some(etag.as_str()),
            "etag changes on write"
        );

        let stale = client
            .update(
                "accounts",
                &id,
                &json!({"name": "Lost update"}),
                Some(&etag),
            )
            .await
            .expect_err("the etag is stale");
        assert!(
            matches!(stale, DataverseError::PreconditionFailed(_)),
            "{stale:?}"
        );
        assert!(stale.to_string().contains("read the row again"), "{stale}");
        let kept = read_row(&client, "accounts", &id, "").await;
        assert_eq!(
            kept.body["name"], "Contoso Ltd",
            "the stale write changed nothing"
        );

        // Without an etag the update never creates a row.
        let missing = "00000000-0000-0000-0000-0000000000aa";
        let err = client
            .update("accounts", missing, &json!({"name": "Ghost"}), None)
            .await
            .expect_err("no such row");
        assert!(matches!(err, DataverseError::NotFound(_)), "{err:?}");
        assert!(client.get("accounts", missing, "").await.unwrap().is_none());
        assert!(
            client
                .query("accounts", "$filter=name eq 'Ghost'")
                .await
                .unwrap()
                .is_empty()
        );

        let bad = client
            .create("accounts", &json!({"name": "x", "new_nosuchcolumn": 1}))
            .await
            .expect_err("an undefined column");
        match &bad {
            DataverseError::BadRequest { code, message } => {
                assert_eq!(code, "0x80060888");
                assert!(message.contains("new_nosuchcolumn"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!bad.is_transient());
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_by_alternate_key_creates_then_updates_the_same_row() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running);
        let key = "cosell_referralidentifier";
        let first = client
            .upsert_by_key("opportunities", key, "REF-0001", &json!({"name": "First"}))
            .await
            .expect("created");
        let second = client
            .upsert_by_key("opportunities", key, "REF-0001", &json!({"name": "Second"}))
            .await
            .expect("updated");
        assert_eq!(first, second, "the same row");
        let rows = client
            .query("opportunities", "$select=name,cosell_referralidentifier")
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["name"], "Second");
        assert_eq!(rows[0]["cosell_referralidentifier"], "REF-0001");
        assert_eq!(rows[0]["opportunityid"], first.as_str());

        // A key with a quote and a space is addressed correctly.
        let odd = client
            .upsert_by_key("opportunities", key, "O'Neil 2", &json!({"name": "Odd"}))
            .await
            .expect("an odd key");
        assert_ne!(odd, first);
        let row = read_row(&client, "opportunities", &odd, "").await;
        assert_eq!(row.body[key], "O'Neil 2");
        running.stop().await;
    })
    .await
    .expect("bounded");
}

/// Values with quotes, query characters, spaces and non-ASCII letters reach the emulator
/// intact through [`odata::literal`], as an alternate key in the path, a `$filter` in the query
/// string and a `$filter` in a `$batch` part: each finds its own row and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odata_literals_with_query_characters_find_their_rows() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running);
        let key = "cosell_referralidentifier";
        let values = [
            "O'Neil & Sons+ 100%#1",
            "a+b",
            "a b",
            "Zürich 東京",
            "x=1&y='2'",
        ];
        let mut ids = Vec::new();
        for value in values {
            let id = client
                .upsert_by_key("opportunities", key, value, &json!({"name": value}))
                .await
                .expect("created by its key");
            ids.push(id);
        }
        for (value, id) in values.iter().zip(&ids) {
            let filter = format!("$select={key}&$filter={key} eq {}", odata::literal(value));
            let rows = client.query("opportunities", &filter).await.unwrap();
            assert_eq!(rows.len(), 1, "{value}: {rows:?}");
            assert_eq!(rows[0]["opportunityid"], id.as_str(), "{value}");
            assert_eq!(rows[0][key], *value);
            let again = client
                .upsert_by_key("opportunities", key, value, &json!({"name": "again"}))
                .await
                .expect("updated by its key");
            assert_eq!(&again, id, "{value}: the same row by its key");
        }
        let reads: Vec<BatchItem> = values
            .iter()
            .map(|value| {
                let path = format!(
                    "opportunities?$select={key}&$filter={key} eq {}",
                    odata::literal(value)
                );
                BatchItem::Request(request(Method::GET, &path, None))
            })
            .collect();
        let answers = client
            .batch_items(&reads)
            .await
            .expect("the batch of reads");
        for ((value, id), answer) in values.iter().zip(&ids).zip(&answers) {
            let body = answer[0].body.as_ref().expect("a body");
            let rows = body["value"].as_array().cloned().unwrap_or_default();
            assert_eq!(rows.len(), 1, "{value} in a $batch: {answer:?}");
            assert_eq!(rows[0]["opportunityid"], id.as_str(), "{value}");
        }
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_messages_write_many_rows_in_one_request_all_or_nothing() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running);
        let row = |key: &str, name: &str| BulkRow {
            key: key.to_owned(),
            columns: json!({ "name": name }).as_object().unwrap().clone(),
        };
        let ids = [
            "3f0c1a52-0000-4000-8000-000000000001",
            "3f0c1a52-0000-4000-8000-000000000002",
        ];
        let before = client.traffic();
        let created = client
            .create_multiple(
                BulkTable::OPPORTUNITIES,
                &[row(ids[0], "Bulk A"), row(ids[1], "Bulk B")],
            )
            .await
            .expect("created");
        assert_eq!(created, ids);
        assert_eq!(
            client.traffic().since(before).requests,
            1,
            "one request for both"
        );
        client
            .update_multiple(
                BulkTable::OPPORTUNITIES,
                &[row(ids[0], "Bulk A2"), row(ids[1], "Bulk B2")],
            )
            .await
            .expect("updated");
        assert_eq!(
            read_row(&client, "opportunities", ids[1], "").await.body["name"],
            "Bulk B2"
        );

        // All or nothing: a duplicate id refuses the whole request, and the new row is not made.
        let third = "3f0c1a52-0000-4000-8000-000000000003";
        let refused = client
            .create_multiple(
                BulkTable::OPPORTUNITIES,
                &[row(third, "New"), row(ids[0], "Again")],
            )
            .await;
        assert!(
            matches!(refused, Err(DataverseError::PreconditionFailed(_))),
            "{refused:?}"
        );
        assert!(
            client
                .get("opportunities", third, "")
                .await
                .unwrap()
                .is_none()
        );

        // The opportunity table takes no UpsertMultiple; a table with an alternate key does.
        let upsert = client
            .upsert_multiple(
                BulkTable::OPPORTUNITIES,
                &[row("cosell_referralidentifier='R-1'", "X")],
            )
            .await;
        assert!(
            matches!(upsert, Err(DataverseError::BadRequest { .. })),
            "{upsert:?}"
        );
        client
            .create_alternate_key(
                "account",
                "new_AccountNumber",
                &["accountnumber"],
                "Default",
            )
            .await
            .unwrap();
        let accounts = BulkTable {
            set: "accounts",
            logical_name: "account",
            primary_id: "accountid",
        };
        for name in ["Upserted", "Upserted again"] {
            client
                .upsert_multiple(
                    accounts,
                    &[
                        row("accountnumber='A-1'", name),
                        row("accountnumber='A-2'", name),
                    ],
                )
                .await
                .expect("upserted");
        }
        let rows = client
            .query(
                "accounts",
                "$select=name,accountnumber&$filter=startswith(name,'Upserted')",
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows.iter().all(|r| r["name"] == "Upserted again"),
            "{rows:?}"
        );
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_batch_applies_all_or_nothing() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running);
        let existing = client
            .create("accounts", &json!({"name": "Existing"}))
            .await
            .unwrap();
        let etag = read_row(&client, "accounts", &existing, "").await.etag;

        let bad = [
            request(Method::POST, "accounts", Some(json!({"name": "Batch A"}))),
            BatchRequest {
                if_match: etag.clone(),
                ..request(
                    Method::PATCH,
                    &format!("accounts({existing})"),
                    Some(json!({"name": "Renamed"})),
                )
            },
            request(
                Method::POST,
                "opportunities",
                Some(json!({"name": "x", "new_undefined": 1})),
            ),
        ];
        let err = client
            .batch(&bad, true)
            .await
            .expect_err("one request is bad");
        assert!(matches!(err, DataverseError::BadRequest { .. }), "{err:?}");
        assert!(err.to_string().contains("new_undefined"), "{err}");
        assert!(err.to_string().contains("none applied"), "{err}");
        let accounts = client.query("accounts", "$select=name").await.unwrap();
        assert_eq!(names(&accounts), ["Existing"], "everything rolled back");

        let good = [
            request(Method::POST, "accounts", Some(json!({"name": "Batch A"}))),
            BatchRequest {
                if_match: etag,
                ..request(
                    Method::PATCH,
                    &format!("accounts({existing})"),
                    Some(json!({"name": "Renamed"})),
                )
            },
        ];
        let answers = client.batch(&good, true).await.expect("applied");
        assert_eq!(answers.len(), 2);
        assert!(answers.iter().all(|a| a.status == 204), "{answers:?}");
        let created = answers[0].entity_id.clone().expect("the new row's id");
        let row = read_row(&client, "accounts", &created, "").await;
        assert_eq!(row.body["name"], "Batch A");
        let accounts = client.query("accounts", "$select=name").await.unwrap();
        assert_eq!(names(&accounts), ["Batch A", "Renamed"]);

        // Not atomic: every request runs and answers for itself.
        let mixed = [
            request(Method::POST, "accounts", Some(json!({"name": "Batch C"}))),
            request(Method::POST, "accounts", Some(json!({"nosuch": 1}))),
            request(Method::GET, "accounts?$select=name", None),
        ];
        let answers = client.batch(&mixed, false).await.expect("answered");
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [204, 400, 200]);
        assert_eq!(
            names(
                answers[2].body.as_ref().unwrap()["value"]
                    .as_array()
                    .unwrap()
            )
            .len(),
            3
        );
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_follows_next_links_to_every_row_once() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        dv.seed_demo_data(23, 0, 7);
        let client = client(&dv, &running).with_page_size(5);
        let rows = client
            .query("accounts", "$select=name,accountid")
            .await
            .expect("all pages");
        assert_eq!(rows.len(), 23);
        let ids: HashSet<&str> = rows
            .iter()
            .map(|r| r["accountid"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 23, "no row twice");
        let name = rows[7]["name"].as_str().unwrap().replace('\'', "''");
        let one = client
            .query(
                "accounts",
                &format!("$select=name&$filter=name eq '{name}'"),
            )
            .await
            .expect("a filtered query");
        assert_eq!(one.len(), 1);
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_larger_than_a_page_is_read_to_its_last_page() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running).with_page_size(2);
        let mut ids = Vec::new();
        for i in 0..5 {
            let body = json!({"name": format!("Paged {i}")});
            ids.push(client.create("opportunities", &body).await.unwrap());
        }
        let initial = opportunity_changes(&client, None).await;
        for id in &ids {
            let body = json!({"estimatedvalue": 7});
            client
                .update("opportunities", id, &body, None)
                .await
                .unwrap();
        }
        // Five changes in pages of two: three pages, the delta link on the last.
        let delta = opportunity_changes(&client, Some(&initial.delta_link)).await;
        let mut changed: Vec<&str> = delta
            .changed
            .iter()
            .filter_map(|r| r["opportunityid"].as_str())
            .collect();
        changed.sort_unstable();
        let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(changed, expected, "every change once, across the pages");
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_tracking_reports_changes_and_deletions_since_the_last_round() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running).with_page_size(2);
        let mut ids = Vec::new();
        for name in ["Kept", "Gone", "Untouched"] {
            ids.push(
                client
                    .create("opportunities", &json!({"name": name}))
                    .await
                    .unwrap(),
            );
        }
        let initial = opportunity_changes(&client, None).await;
        assert_eq!(names(&initial.changed), ["Gone", "Kept", "Untouched"]);
        assert!(initial.deleted.is_empty());

        client
            .update(
                "opportunities",
                &ids[0],
                &json!({"estimatedvalue": 99}),
                None,
            )
            .await
            .unwrap();
        let deleted = client
            .batch(
                &[request(
                    Method::DELETE,
                    &format!("opportunities({})", ids[1]),
                    None,
                )],
                false,
            )
            .await
            .unwrap();
        assert_eq!(deleted[0].status, 204);

        let delta = opportunity_changes(&client, Some(&initial.delta_link)).await;
        assert_eq!(delta.changed.len(), 1, "{delta:?}");
        assert_eq!(delta.changed[0]["opportunityid"], ids[0].as_str());
        assert_eq!(delta.changed[0]["estimatedvalue"], 99);
        assert_eq!(delta.deleted, [ids[1].clone()]);
        assert_ne!(delta.delta_link, initial.delta_link);

        let quiet = opportunity_changes(&client, Some(&delta.delta_link)).await;
        assert!(
            quiet.changed.is_empty() && quiet.deleted.is_empty(),
            "{quiet:?}"
        );

        let foreign = client
            .track_changes(
                "opportunities",
                "name",
                Some("http://elsewhere.example/api/data/v9.2/opportunities?$deltatoken=1"),
            )
            .await
            .expect_err("the token must not leave the environment");
        assert!(
            matches!(foreign, DataverseError::InvalidResponse(_)),
            "{foreign:?}"
        );
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn win_and_lose_close_opportunities() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running);
        let won = client
            .create(
                "opportunities",
                &json!({"name": "Deal", "estimatedvalue": 1200}),
            )
            .await
            .unwrap();
        client
            .win_opportunity(&won, 3, "Won by co-sell")
            .await
            .expect("won");
        let row = read_row(&client, "opportunities", &won, "").await;
        assert_eq!(state(&row), (1, 3));
        assert_eq!(row.body["actualvalue"], 1200);
        let again = client
            .lose_opportunity(&won, 5, "Too late")
            .await
            .expect_err("closed");
        assert!(
            matches!(again, DataverseError::BadRequest { .. }),
            "{again:?}"
        );

        let lost = client
            .create("opportunities", &json!({"name": "Other"}))
            .await
            .unwrap();
        client
            .lose_opportunity(&lost, 5, "Out-sold")
            .await
            .expect("lost");
        let row = read_row(
            &client,
            "opportunities",
            &lost,
            "$select=statecode,statuscode",
        )
        .await;
        assert_eq!(state(&row), (2, 5));
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_columns_and_creates_missing_ones() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running);
        let before = client.attribute_names("opportunity").await.expect("the columns");
        assert!(before.iter().any(|c| c == "name"), "{before:?}");
        assert!(before.iter().any(|c| c == "cosell_referralidentifier"), "{before:?}");
        assert!(!before.iter().any(|c| c == "new_bankname"));

        let definition = json!({
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "AttributeType": "String",
            "AttributeTypeName": {"Value": "StringType"},
            "MaxLength": 100,
            "FormatName": {"Value": "Text"},
            "SchemaName": "new_BankName",
            "DisplayName": {"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": "Bank Name", "LanguageCode": 1033}]},
            "RequiredLevel": {"Value": "None", "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        });
        client.create_attribute("opportunity", &definition, "Default").await.expect("created");
        let after = client.attribute_names("opportunity").await.unwrap();
        assert!(after.iter().any(|c| c == "new_bankname"), "{after:?}");
        assert_eq!(after.len(), before.len() + 1);
        // Creating it again fails, which is why callers list first.
        let twice = client.create_attribute("opportunity", &definition, "Default").await;
        assert!(matches!(twice, Err(DataverseError::BadRequest { .. })), "{twice:?}");
        // The column is usable at once.
        let id = client
            .create("opportunities", &json!({"name": "x", "new_bankname": "Woodgrove"}))
            .await
            .unwrap();
        let row = read_row(&client, "opportunities", &id, "$select=new_bankname").await;
        assert_eq!(row.body["new_bankname"], "Woodgrove");
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_creates_columns_key_and_change_tracking_in_the_named_solution() {
    use cosell::setup::provision;
    tokio::time::timeout(BOUND, async {
        // A fresh environment: nothing of cosell's yet.
        let dv = Dataverse::new(DataverseConfig::default());
        let running = dv.serve().await.expect("the emulator starts");
        let client = client(&dv, &running);
        let delta = client.track_changes("opportunities", "name", None).await;
        assert!(delta.is_err(), "no change tracking before provisioning: {delta:?}");

        // A column must carry the prefix of its solution's publisher.
        let column = json!({"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                            "AttributeType": "String", "MaxLength": 100, "SchemaName": "cosell_Other"});
        let wrong = client.create_attribute("opportunity", &column, "Default").await;
        assert!(matches!(&wrong, Err(DataverseError::BadRequest { message, .. }) if message.contains("new_")), "{wrong:?}");
        let unknown = provision(&client, "nosuchsolution", "cosell").await;
        assert!(format!("{:#}", unknown.unwrap_err()).contains("nosuchsolution"));
        let mismatch = provision(&client, "cosell", "contoso").await;
        assert!(mismatch.is_err(), "contoso_ columns in a solution whose publisher is cosell");

        let done = provision(&client, "cosell", "cosell").await.expect("provisioned");
        assert_eq!(done.columns.len(), 6, "{:?}", done.columns);
        assert!(done.key && done.change_tracking);
        let again = provision(&client, "cosell", "cosell").await.expect("provisioned again");
        assert!(again.columns.is_empty() && !again.key && !again.change_tracking);

        // Now the sync's queries work: change tracking and upsert by the referral identifier.
        client.track_changes("opportunities", "name", None).await.expect("a delta read");
        let body = json!({"name": "Keyed"});
        let first = client.upsert_by_key("opportunities", "cosell_referralidentifier", "R-1", &body).await.unwrap();
        let second = client.upsert_by_key("opportunities", "cosell_referralidentifier", "R-1", &body).await.unwrap();
        assert_eq!(first, second, "the alternate key finds the same row");
        running.stop().await;
    })
    .await
    .expect("bounded");
}
