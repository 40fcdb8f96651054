//! Resilience of the Dataverse client: 503s retried without duplicate creates, dropped
//! connections on a create not replayed, creates whose answer is lost (applied, then answered
//! 500 or dropped) made exactly once, alone and in a `$batch`, a create that lands late answered
//! created, a wrong secret refused clearly, and a burst under low
//! service protection limits completing inside the adaptive concurrency limiter. The burst test
//! wraps the emulator's router with a layer that counts the requests in flight and records
//! each request's headers and answer.

use super::{BOUND, client, emulator, names, settings};
use axum::extract::Request;
use axum::middleware::{self, Next};
use cosell::config::Secret;
use cosell::connections::dataverse::actions::{Closing, close_request};
use cosell::connections::dataverse::{
    BatchItem, BatchRequest, BulkRow, BulkTable, DataverseClient, DataverseError,
};
use cosell::domain::ids::new_uuid;
use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::common::server;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig, ServiceProtectionLimits};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

        // A dropped connection may have reached the server: a create is not sent again before
        // a read says it did not land, and here every read is dropped too.
        dv.faults()
            .set(FaultConfig {
                drop_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        let mut quick = settings(&dv, &running.url());
        quick.max_retries = 2;
        let err = DataverseClient::new(quick)
            .unwrap()
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

/// Every create is applied and then its answer lost (500, or the connection dropped): the client
/// finds out that it landed, answers its id, and makes no second row; in a `$batch` too, where a
/// change set (create and close) counts as landed with its create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_is_lost_makes_exactly_one_row() {
    tokio::time::timeout(BOUND, async {
        let (dv, running) = emulator(DataverseConfig::default()).await;
        let client = client(&dv, &running);
        let lost = FaultConfig::every_answer_lost();
        for (n, fault) in lost.into_iter().enumerate() {
            dv.faults().set(fault).unwrap();
            let single = client
                .create("accounts", &json!({"name": format!("Alone {n}")}))
                .await
                .expect("a create whose answer is lost is found to have landed");
            let account = new_uuid();
            let opportunity = new_uuid();
            let items = [
                BatchItem::Request(BatchRequest::create(
                    "accounts",
                    &account,
                    json!({"name": format!("Batched {n}")}),
                )),
                BatchItem::ChangeSet(vec![
                    BatchRequest::create(
                        "opportunities",
                        &opportunity,
                        json!({"name": format!("Won {n}"), "estimatedvalue": 1000}),
                    ),
                    close_request(Closing::Won, &opportunity, 3, "Won"),
                ]),
            ];
            let answers = client
                .batch_items(&items)
                .await
                .expect("a $batch whose answer is lost is sorted out");
            dv.faults().set(FaultConfig::default()).unwrap();
            assert_eq!(
                answers.iter().map(Vec::len).collect::<Vec<_>>(),
                [1, 2],
                "{answers:?}"
            );
            assert!(
                answers.iter().flatten().all(|a| a.is_success()),
                "{answers:?}"
            );
            assert_eq!(answers[0][0].entity_id.as_deref(), Some(account.as_str()));
            assert_eq!(
                answers[1][0].entity_id.as_deref(),
                Some(opportunity.as_str())
            );
            for (set, name, id) in [
                ("accounts", format!("Alone {n}"), &single),
                ("accounts", format!("Batched {n}"), &account),
                ("opportunities", format!("Won {n}"), &opportunity),
            ] {
                let id_column = if set == "accounts" {
                    "accountid"
                } else {
                    "opportunityid"
                };
                let rows = client
                    .query(
                        set,
                        &format!("$select={id_column}&$filter=name eq '{name}'"),
                    )
                    .await
                    .unwrap();
                assert_eq!(rows.len(), 1, "{name}: one row, not {rows:?}");
                assert_eq!(rows[0][id_column], id.as_str());
            }
            let won = client
                .get("opportunities", &opportunity, "")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(won.body["statecode"], 1, "closed with its create");
        }
        let injected = dv.faults().injected();
        assert!(injected.applied_then_failed >= 2 && injected.applied_then_dropped >= 2);
        running.stop().await;
    })
    .await
    .expect("bounded");
}

/// Holds the first write it sees until the next write arrives, then applies the first (its
/// client long gone) before letting the next one through: a create that lands late, after the
/// client's read found nothing and just as its retry comes.
#[derive(Default)]
struct LateFirstWrite {
    released: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    landed: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    writes: Mutex<usize>,
}

async fn land_late(
    late: Arc<LateFirstWrite>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    if request.method() == axum::http::Method::GET || !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let nth = {
        let mut writes = late.writes.lock().unwrap();
        *writes += 1;
        *writes
    };
    if nth == 1 {
        let (release, released) = tokio::sync::oneshot::channel();
        let (landed, has_landed) = tokio::sync::oneshot::channel();
        *late.released.lock().unwrap() = Some(release);
        *late.landed.lock().unwrap() = Some(has_landed);
        // Its own task: the client's timeout closes the connection, which must not cancel it.
        tokio::spawn(async move {
            if tokio::time::timeout(BOUND, released).await.is_ok() {
                next.run(request).await;
            }
            let _ = landed.send(());
        });
        std::future::pending::<()>().await;
        unreachable!("the client gave up on the held write")
    }
    if nth == 2 {
        let release = late.released.lock().unwrap().take();
        let has_landed = late.landed.lock().unwrap().take();
        if let (Some(release), Some(has_landed)) = (release, has_landed) {
            let _ = release.send(());
            let _ = has_landed.await;
        }
    }
    next.run(request).await
}

/// A create whose first attempt times out, is not found by the client's read, and lands just
/// before the retry: the retry is refused (the row exists, 412) and the client reads that the
/// row is there and answers it created, one row, alone (`PATCH` with `If-None-Match: *`) and as
/// a `CreateMultiple`, whose first row tells for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_lands_late_is_answered_created_not_refused() {
    tokio::time::timeout(BOUND, async {
        for bulk in [false, true] {
            let dv = Dataverse::new(DataverseConfig::default());
            dv.provision_cosell();
            let late: Arc<LateFirstWrite> = Arc::default();
            let layer = late.clone();
            let router = dv.router().layer(middleware::from_fn(move |r, n| {
                land_late(layer.clone(), r, n)
            }));
            let running =
                server::serve(router, "127.0.0.1:0".parse().unwrap(), dv.faults().clone())
                    .await
                    .unwrap();
            let mut config = settings(&dv, &running.url());
            config.timeout = Duration::from_millis(500);
            let client = DataverseClient::new(config).unwrap();
            let ids = [new_uuid(), new_uuid()];
            let answered = if bulk {
                let rows: Vec<BulkRow> = ids
                    .iter()
                    .enumerate()
                    .map(|(n, id)| BulkRow {
                        key: id.clone(),
                        columns: json!({"name": format!("Late {n}")})
                            .as_object()
                            .cloned()
                            .unwrap(),
                    })
                    .collect();
                client
                    .create_multiple(BulkTable::OPPORTUNITIES, &rows)
                    .await
                    .expect("a CreateMultiple that landed late is answered created")
            } else {
                let id = client
                    .create_with_id("opportunities", &ids[0], &json!({"name": "Late 0"}))
                    .await
                    .expect("a create that landed late is answered created");
                vec![id]
            };
            assert_eq!(answered, ids[..answered.len()]);
            assert_eq!(
                *late.writes.lock().unwrap(),
                2,
                "one attempt held, one retry refused"
            );
            let rows = client.query("opportunities", "$select=name").await.unwrap();
            assert_eq!(rows.len(), answered.len(), "no second copy: {rows:?}");
            running.stop().await;
        }
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
        let asked_before = dv.tokens().endpoint_requests();
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
        assert_eq!(
            dv.tokens().endpoint_requests() - asked_before,
            1,
            "a refused client secret is asked for a token once, not retried"
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
        dv.provision_cosell();
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

        let seen = std::mem::take(&mut *seen.lock().unwrap());
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
        running.stop().await;
    })
    .await
    .expect("bounded");
}
