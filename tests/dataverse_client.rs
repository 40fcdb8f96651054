//! The Dataverse client against the Dataverse emulator over real HTTP: rows with etags and
//! conditional writes, upsert by alternate key, atomic `$batch`, paging, change tracking,
//! Win/Lose, the Metadata API, retries through 503s and 429s with the adaptive concurrency
//! limiter, and a clear error for a wrong secret. The limiter test wraps the emulator's router
//! with a layer that counts the requests in flight and records each request's headers.

use axum::extract::Request;
use axum::middleware::{self, Next};
use cosell::config::Secret;
use cosell::connections::dataverse::{
    BatchRequest, DataverseClient, DataverseError, DataverseSettings,
};
use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::common::server::{self, RunningEmulator};
use cosell_emulators::dataverse::{Dataverse, DataverseConfig, ServiceProtectionLimits};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every test is bounded: a hung call fails the test instead of the run.
const BOUND: Duration = Duration::from_secs(60);

async fn emulator(config: DataverseConfig) -> (Dataverse, RunningEmulator) {
    let dv = Dataverse::new(config);
    dv.install_cosell_columns();
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

fn names(rows: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = rows
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn request(method: Method, path: &str, body: Option<Value>) -> BatchRequest {
    BatchRequest {
        method,
        path: path.to_owned(),
        body,
        if_match: None,
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
        let row = client
            .get("accounts", &id, "$select=name,address1_country")
            .await
            .expect("read")
            .expect("the row exists");
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
        let after = client.get("accounts", &id, "").await.unwrap().unwrap();
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
        let kept = client.get("accounts", &id, "").await.unwrap().unwrap();
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
        let row = client
            .get("opportunities", &odd, "")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.body[key], "O'Neil 2");
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
        let etag = client
            .get("accounts", &existing, "")
            .await
            .unwrap()
            .unwrap()
            .etag;

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
        let row = client.get("accounts", &created, "").await.unwrap().unwrap();
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
        let initial = client
            .track_changes("opportunities", "name,estimatedvalue", None)
            .await
            .expect("the initial read");
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

        let delta = client
            .track_changes(
                "opportunities",
                "name,estimatedvalue",
                Some(&initial.delta_link),
            )
            .await
            .expect("the delta");
        assert_eq!(delta.changed.len(), 1, "{delta:?}");
        assert_eq!(delta.changed[0]["opportunityid"], ids[0].as_str());
        assert_eq!(delta.changed[0]["estimatedvalue"], 99);
        assert_eq!(delta.deleted, [ids[1].clone()]);
        assert_ne!(delta.delta_link, initial.delta_link);

        let quiet = client
            .track_changes(
                "opportunities",
                "name,estimatedvalue",
                Some(&delta.delta_link),
            )
            .await
            .unwrap();
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
        let row = client
            .get("opportunities", &won, "")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                row.body["statecode"].clone(),
                row.body["statuscode"].clone()
            ),
            (json!(1), json!(3))
        );
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
        let row = client
            .get("opportunities", &lost, "$select=statecode,statuscode")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                row.body["statecode"].clone(),
                row.body["statuscode"].clone()
            ),
            (json!(2), json!(5))
        );
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
        client.create_attribute("opportunity", &definition).await.expect("created");
        let after = client.attribute_names("opportunity").await.unwrap();
        assert!(after.iter().any(|c| c == "new_bankname"), "{after:?}");
        assert_eq!(after.len(), before.len() + 1);
        // Creating it again fails, which is why callers list first.
        let twice = client.create_attribute("opportunity", &definition).await;
        assert!(matches!(twice, Err(DataverseError::BadRequest { .. })), "{twice:?}");
        // The column is usable at once.
        let id = client
            .create("opportunities", &json!({"name": "x", "new_bankname": "Woodgrove"}))
            .await
            .unwrap();
        let row = client.get("opportunities", &id, "$select=new_bankname").await.unwrap().unwrap();
        assert_eq!(row.body["new_bankname"], "Woodgrove");
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_creates_are_not_duplicated() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig {
            fault_seed: 11,
            ..DataverseConfig::default()
        })
        .await;
        let client = client(&dv, &running);
        let id = client
            .create("accounts", &json!({"name": "Base"}))
            .await
            .unwrap();
        dv.faults()
            .set(FaultConfig {
                error_rate: 0.5,
                ..FaultConfig::default()
            })
            .unwrap();
        for i in 0..8 {
            client
                .create("accounts", &json!({"name": format!("Through 503 {i}")}))
                .await
                .expect("a create through 503s");
            client
                .update(
                    "accounts",
                    &id,
                    &json!({"description": format!("round {i}")}),
                    None,
                )
                .await
                .expect("an update through 503s");
        }
        let rows = client
            .query("accounts", "$select=name")
            .await
            .expect("a query through 503s");
        assert_eq!(rows.len(), 9, "every create once: {:?}", names(&rows));

        dv.faults()
            .set(FaultConfig {
                error_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        let mut quick = settings(&dv, &running.url());
        quick.max_retries = 2;
        let err = DataverseClient::new(quick)
            .unwrap()
            .get("accounts", &id, "")
            .await
            .expect_err("503 every time");
        assert!(
            matches!(err, DataverseError::Server { status: 503, .. }),
            "{err:?}"
        );
        assert!(err.is_transient());

        // A dropped connection may have reached the server: a create is not sent again.
        dv.faults()
            .set(FaultConfig {
                drop_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        let err = client
            .create("accounts", &json!({"name": "Dropped"}))
            .await
            .expect_err("dropped");
        assert!(matches!(err, DataverseError::Transport(_)), "{err:?}");
        dv.faults().set(FaultConfig::default()).unwrap();
        assert_eq!(
            client
                .query("accounts", "$select=name")
                .await
                .unwrap()
                .len(),
            9
        );
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_a_clear_unauthorized_error() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let mut wrong = settings(&dv, &running.url());
        wrong.client_secret = Secret::new("not-the-secret-123");
        let client = DataverseClient::new(wrong).unwrap();
        let started = Instant::now();
        let err = client.query("accounts", "").await.expect_err("refused");
        assert!(matches!(err, DataverseError::Unauthorized(_)), "{err:?}");
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(text.contains("client_secret"), "{text}");
        assert!(text.contains("application user"), "{text}");
        assert!(
            !text.contains("not-the-secret-123"),
            "the secret is not echoed: {text}"
        );
        assert!(!format!("{client:?}").contains("not-the-secret-123"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a refusal is not retried"
        );
        running.stop().await;
    })
    .await
    .expect("bounded");
}

/// What the counting layer saw.
#[derive(Default)]
struct Seen {
    in_flight: usize,
    peak: usize,
    /// (request id, status) of every API request, in arrival order of the answers.
    answers: Vec<(String, u16)>,
    /// When each API request arrived, and when the first 429 left with its Retry-After.
    arrivals: Vec<Instant>,
    first_429: Option<(Instant, Duration)>,
    missing_headers: Vec<String>,
}

async fn count(seen: Arc<Mutex<Seen>>, request: Request, next: Next) -> axum::response::Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let headers = request.headers().clone();
    {
        let mut s = seen.lock().unwrap();
        s.in_flight += 1;
        s.peak = s.peak.max(s.in_flight);
        s.arrivals.push(Instant::now());
        for name in [
            "authorization",
            "odata-version",
            "odata-maxversion",
            "accept",
            "x-ms-client-request-id",
        ] {
            if !headers.contains_key(name) {
                s.missing_headers.push(name.to_owned());
            }
        }
    }
    // Long enough for requests to overlap.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = next.run(request).await;
    let mut s = seen.lock().unwrap();
    s.in_flight -= 1;
    let id = headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let status = response.status().as_u16();
    s.answers.push((id, status));
    if status == 429 && s.first_429.is_none() {
        let wait = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        s.first_429 = Some((Instant::now(), Duration::from_secs(wait)));
    }
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_under_low_limits_succeeds_within_the_concurrency_limiter() {
    tokio::time::timeout(BOUND, async {
        let dv = Dataverse::new(DataverseConfig {
            limits: ServiceProtectionLimits {
                requests: 20,
                window: chrono::Duration::seconds(2),
                ..ServiceProtectionLimits::default()
            },
            ..DataverseConfig::default()
        });
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let layer = seen.clone();
        let router = dv
            .router()
            .layer(middleware::from_fn(move |r, n| count(layer.clone(), r, n)));
        let running = server::serve(router, "127.0.0.1:0".parse().unwrap(), dv.faults().clone())
            .await
            .unwrap();
        let mut config = settings(&dv, &running.url());
        config.max_retries = 12;
        let client = DataverseClient::new(config).unwrap();
        let id = client
            .create("accounts", &json!({"name": "Hot row"}))
            .await
            .unwrap();

        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let client = client.clone();
                let id = id.clone();
                tokio::spawn(async move { client.get("accounts", &id, "$select=name").await })
            })
            .collect();
        for task in tasks {
            let row = task
                .await
                .unwrap()
                .expect("every request succeeds eventually");
            assert_eq!(row.expect("the row").body["name"], "Hot row");
        }

        let seen = seen.lock().unwrap();
        assert!(
            seen.missing_headers.is_empty(),
            "missing: {:?}",
            seen.missing_headers
        );
        assert!(
            seen.peak <= 8,
            "at most max_concurrency in flight, saw {}",
            seen.peak
        );
        assert!(seen.peak >= 2, "the burst ran concurrently");
        let throttled = seen.answers.iter().filter(|(_, s)| *s == 429).count();
        assert!(throttled > 0, "the limits were hit");
        assert!(
            throttled < 30,
            "Retry-After held the burst back instead of hammering: {throttled} 429s"
        );
        // Each throttled call was retried under the same request id until it succeeded.
        let mut by_id: HashMap<&str, Vec<u16>> = HashMap::new();
        for (id, status) in &seen.answers {
            by_id.entry(id.as_str()).or_default().push(*status);
        }
        assert_eq!(by_id.len(), 61, "one request id per logical call");
        assert!(
            by_id
                .values()
                .all(|s| s.last() == Some(&200) || s.last() == Some(&204)),
            "{by_id:?}"
        );
        // After the first 429 nothing new was sent until its Retry-After had passed.
        let (at, wait) = seen.first_429.expect("a 429");
        let early: Vec<_> = seen
            .arrivals
            .iter()
            .filter(|t| {
                **t > at + Duration::from_millis(200)
                    && **t + Duration::from_millis(100) < at + wait
            })
            .collect();
        assert!(
            early.is_empty(),
            "{} requests sent during the Retry-After pause",
            early.len()
        );
        // The limiter halved on the 429s and has not grown past its ceiling.
        let window = client.concurrency();
        assert!(window.limit <= 8 && window.in_flight == 0, "{window:?}");
        drop(seen);
        running.stop().await;
    })
    .await
    .expect("bounded");
}
