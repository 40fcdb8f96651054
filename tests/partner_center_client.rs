//! The Partner Center client against the Partner Center emulator over real HTTP: paging,
//! eTag concurrency, retries through injected faults, token refresh and clear auth errors.
//! The request-id check uses a small stub server that fails twice before answering.

mod support;

use cosell::config::Secret;
use cosell::connections::partner_center::{
    PartnerCenterClient, PartnerCenterError, PartnerCenterSettings,
};
use cosell::sinks::partner_center::ReferralSink;
use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::partner_center_settings;

/// Every test is bounded: a hung call fails the test instead of the run.
const BOUND: Duration = Duration::from_secs(60);

async fn emulator(
    seed: u64,
) -> (
    PartnerCenter,
    cosell_emulators::partner_center::RunningPartnerCenter,
) {
    let pc = PartnerCenter::new(PartnerCenterConfig {
        fault_seed: seed,
        ..PartnerCenterConfig::default()
    });
    let running = pc.serve().await.expect("the emulator starts");
    (pc, running)
}

fn client(
    pc: &PartnerCenter,
    running: &cosell_emulators::partner_center::RunningPartnerCenter,
) -> PartnerCenterClient {
    PartnerCenterClient::new(partner_center_settings(pc, running)).expect("a client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_every_referral_across_pages_exactly_once() {
    tokio::time::timeout(BOUND, async {
        // The documented next link's path answers 404 (the emulator's default, so the client
        // falls back to its $skiptoken on the list's path) or serves the page.
        for serve_next_link_path in [false, true] {
            let pc = PartnerCenter::new(PartnerCenterConfig {
                fault_seed: 1,
                serve_next_link_path,
                ..PartnerCenterConfig::default()
            });
            let running = pc.serve().await.expect("the emulator starts");
            let mut seeded = HashSet::new();
            for i in 0..23 {
                let r = pc
                    .microsoft()
                    .create_incoming(json!({ "name": format!("Referral {i}") }));
                seeded.insert(r["id"].as_str().unwrap().to_owned());
            }
            let client = client(&pc, &running);
            let listed = client
                .list_referrals(None, Some(5))
                .await
                .expect("the list");
            let ids: Vec<String> = listed
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ids.len(), 23, "every referral once");
            assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), seeded);

            let filtered = client
                .list_referrals(Some("direction eq 'Incoming' and status eq 'New'"), Some(4))
                .await
                .expect("a filtered list");
            assert_eq!(filtered.len(), 23);
            // A filter Microsoft never documents is refused, as the real service may.
            let undocumented = client
                .list_referrals(Some("name eq 'Referral 7'"), Some(2))
                .await;
            assert!(
                matches!(undocumented, Err(PartnerCenterError::BadRequest(_))),
                "{undocumented:?}"
            );
            running.stop().await;
        }
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_is_lost_makes_exactly_one_referral() {
    tokio::time::timeout(BOUND, async {
        let (pc, running) = emulator(7).await;
        // Older referrals than the intent, on more than one lookup page.
        for _ in 0..130 {
            pc.microsoft().create_incoming(json!({}));
        }
        let writer = ReferralSink::new(client(&pc, &running));
        let faults = FaultConfig::every_answer_lost();
        for (n, fault) in faults.into_iter().enumerate() {
            for kind in ["Independent", "Shared"] {
                let opportunity = format!("00000000-0000-4000-8000-00000000000{n}{}", kind.len());
                let mut referral = outgoing(kind);
                referral["externalReferenceId"] = json!("not what the lookup matches");
                let since = chrono::Utc::now().timestamp_millis();
                pc.faults().set(fault.clone()).unwrap();
                let created = writer.create(&opportunity, since, &referral).await;
                pc.faults().set(FaultConfig::default()).unwrap();
                let created = created.expect("the create is found after its answer is lost");
                let ours: Vec<Value> = pc
                    .referrals()
                    .into_iter()
                    .filter(|r| r["externalReferenceId"] == json!(opportunity))
                    .collect();
                let halves = if kind == "Shared" { 2 } else { 1 };
                assert_eq!(ours.len(), halves, "{kind} under {fault:?}: {ours:#?}");
                assert!(ours.iter().any(|r| r["id"] == created["id"]));
            }
        }
        assert!(pc.faults().injected().applied_then_failed >= 2);
        assert!(pc.faults().injected().applied_then_dropped >= 2);
        running.stop().await;
    })
    .await
    .expect("bounded");
}

/// An outgoing referral as the default mapping makes one.
fn outgoing(kind: &str) -> Value {
    json!({
        "name": "Lost answer",
        "type": kind,
        "qualification": "SalesQualified",
        "customerProfile": {"name": "Contoso", "address": {"country": "US", "postalCode": "98052"},
                            "team": [{"firstName": "A", "lastName": "B", "email": "a@contoso.example"}]},
        "consent": {"consentToShareReferralWithMicrosoftSellers": kind == "Shared", "consentToContact": true},
        "details": {"notes": "n", "dealValue": 1000, "currency": "USD"},
        "team": [{"firstName": "P", "lastName": "Q", "email": "me@partner.example"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_with_the_right_etag_succeeds_and_a_stale_one_is_refused() {
    tokio::time::timeout(BOUND, async {
        let (pc, running) = emulator(2).await;
        let id = pc.microsoft().create_incoming(json!({}))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let client = client(&pc, &running).with_correlation_id("test-correlation");

        let first = client.get_referral(&id).await.expect("the referral");
        assert_eq!(first.body["id"], json!(id));
        let ops = [json!({"op": "replace", "path": "/name", "value": "Renamed"})];
        let patched = client
            .patch_referral(&id, &ops, Some(&first.etag))
            .await
            .expect("a patch with the current eTag");
        assert_eq!(patched["name"], json!("Renamed"));

        let stale = client.patch_referral(&id, &ops, Some(&first.etag)).await;
        let err = stale.expect_err("the eTag is stale now");
        assert!(
            matches!(err, PartnerCenterError::PreconditionFailed { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("fetch the referral again"),
            "{err}"
        );

        let missing = client
            .get_referral("no-such-referral")
            .await
            .expect_err("404");
        assert!(
            matches!(missing, PartnerCenterError::NotFound(_)),
            "{missing:?}"
        );

        let created = client
            .create_referral(&json!({
                "name": "Contoso migration", "type": "Independent",
                "customerProfile": {"name": "Contoso"}, "consent": {"consentToShareReferralWithMicrosoftSellers": false},
                "details": {"notes": "created by the test"}
            }))
            .await
            .expect("a created referral");
        assert!(pc.referral(created["id"].as_str().unwrap()).is_some());

        let bad = client.create_referral(&json!({"name": "no members"})).await;
        assert!(
            matches!(bad, Err(PartnerCenterError::BadRequest(_))),
            "{bad:?}"
        );
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_complete_through_throttling_and_server_errors() {
    tokio::time::timeout(BOUND, async {
        let (pc, running) = emulator(0x5eed).await;
        for _ in 0..6 {
            pc.microsoft().create_incoming(json!({}));
        }
        let client = client(&pc, &running);

        // Every request throttled until the faults are cleared a moment later.
        pc.faults()
            .set(FaultConfig {
                throttle_rate: 1.0,
                retry_after_secs: 1,
                ..FaultConfig::default()
            })
            .unwrap();
        let faults = pc.faults().clone();
        let clear = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            faults.set(FaultConfig::default()).unwrap();
        });
        let listed = client
            .list_referrals(None, Some(2))
            .await
            .expect("the list after 429s");
        assert_eq!(listed.len(), 6);
        clear.await.unwrap();

        // Half the requests answered 503 (seeded dice): retries with backoff get through.
        pc.faults()
            .set(FaultConfig {
                error_rate: 0.5,
                ..FaultConfig::default()
            })
            .unwrap();
        let listed = client
            .list_referrals(None, Some(2))
            .await
            .expect("the list through 503s");
        assert_eq!(listed.len(), 6);
        let one = client
            .get_referral(listed[0]["id"].as_str().unwrap())
            .await
            .expect("a get through 503s");
        assert!(!one.etag.is_empty());
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_transparently() {
    tokio::time::timeout(BOUND, async {
        let (pc, running) = emulator(4).await;
        pc.microsoft().create_incoming(json!({}));
        let client = client(&pc, &running);
        assert_eq!(client.list_referrals(None, None).await.unwrap().len(), 1);
        // Past the token's lifetime twice: each refresh must use the rotated refresh token.
        for _ in 0..2 {
            pc.clock().advance(chrono::Duration::hours(2));
            assert_eq!(
                client
                    .list_referrals(None, None)
                    .await
                    .expect("after expiry")
                    .len(),
                1
            );
        }
        running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_names_the_command_that_fixes_it() {
    tokio::time::timeout(BOUND, async {
        let (pc, running) = emulator(5).await;
        let mut wrong = partner_center_settings(&pc, &running);
        wrong.refresh_token = Secret::new("rt-not-a-real-token");
        let client = PartnerCenterClient::new(wrong).unwrap();
        let err = client
            .list_referrals(None, None)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, PartnerCenterError::SignInRequired { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("refresh token"), "{text}");
        assert!(
            text.contains("`cosell partner-center login --config test.toml`"),
            "the exact command: {text}"
        );
        assert!(
            !text.contains("rt-not-a-real-token"),
            "the secret is not echoed: {text}"
        );
        running.stop().await;
    })
    .await
    .expect("bounded");
}

/// Keeps every rotated refresh token, as the state database does.
#[derive(Default)]
struct MemoryKeeper(Mutex<Vec<String>>);

impl cosell::connections::partner_center::auth::RefreshTokenKeeper for MemoryKeeper {
    fn load(&self) -> Option<Secret> {
        self.0.lock().unwrap().last().cloned().map(Secret::new)
    }
    fn save(&self, token: &Secret) {
        self.0.lock().unwrap().push(token.expose().to_owned());
    }
}

/// The Referrals and Webhooks APIs are two hosts with two audiences: the client asks for a
/// token for each (the emulator refuses a token for the other API, and a token request that
/// names no resource), redeems both from one single-use refresh-token chain without ever
/// reusing a spent one, even with calls to both APIs racing after the tokens expire, and
/// keeps every rotated refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_api_gets_a_token_for_its_audience_from_one_refresh_chain() {
    tokio::time::timeout(BOUND, async {
        let (pc, running) = emulator(6).await;
        pc.microsoft().create_incoming(json!({}));
        let client = client(&pc, &running);
        let keeper = Arc::new(MemoryKeeper::default());
        client.keep_refresh_tokens(keeper.clone());
        assert_eq!(
            client
                .list_referrals(None, None)
                .await
                .expect("referrals")
                .len(),
            1
        );
        assert!(
            client
                .webhook_events()
                .await
                .expect("webhook events")
                .contains(&"referral-created".to_owned())
        );
        assert_eq!(
            keeper.0.lock().unwrap().len(),
            2,
            "one redemption per audience"
        );

        pc.clock().advance(chrono::Duration::minutes(61));
        let calls = (0..8).map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    client.list_referrals(None, None).await.map(|_| ())
                } else {
                    client.webhook_registration().await.map(|_| ())
                }
            })
        });
        for call in futures_util::future::join_all(calls).await {
            call.unwrap().expect("every call after expiry succeeds");
        }
        let kept = keeper.0.lock().unwrap().clone();
        assert_eq!(kept.len(), 4, "one more redemption per audience: {kept:?}");
        // The newest kept token is the live one: it still redeems.
        let mut settings = partner_center_settings(&pc, &running);
        settings.refresh_token = Secret::new(kept.last().unwrap().clone());
        let fresh = PartnerCenterClient::new(settings).unwrap();
        fresh
            .list_referrals(None, None)
            .await
            .expect("the kept token works");
        running.stop().await;
    })
    .await
    .expect("bounded");
}

/// The same `MS-RequestId` on every retry of one call, a new one for the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_is_kept_across_retries() {
    tokio::time::timeout(BOUND, async {
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/v1.0/engagements/referrals/{id}",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let log = log.clone();
                async move {
                    let header = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
                    let mut log = log.lock().unwrap();
                    log.push((header("ms-requestid"), header("ms-correlationid")));
                    if !log.len().is_multiple_of(3) {
                        return (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(Value::Null),
                        );
                    }
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"id": "r1", "eTag": "e1"})),
                    )
                }
            }),
        );
        let client = stub(app).await;
        assert_eq!(client.get_referral("r1").await.unwrap().etag, "e1");
        assert_eq!(client.get_referral("r1").await.unwrap().etag, "e1");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 6);
        assert!(
            seen[..3].iter().all(|s| s == &seen[0]),
            "one id across retries: {seen:?}"
        );
        assert!(seen[3..].iter().all(|s| s == &seen[3]), "{seen:?}");
        assert_ne!(seen[0].0, seen[3].0, "a new id per call");
    })
    .await
    .expect("bounded");
}

/// A client of a stub Partner Center serving `app` (the stub adds the token endpoint).
async fn stub(app: axum::Router) -> PartnerCenterClient {
    let app = app.route(
        "/tenant/oauth2/token",
        axum::routing::post(|| async {
            axum::Json(json!({"access_token": "at", "expires_in": 3600, "refresh_token": "rt2"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    PartnerCenterClient::new(PartnerCenterSettings {
        base_url: url.clone(),
        token_url: format!("{url}/tenant/oauth2/token"),
        client_id: "client".into(),
        client_secret: Secret::new("secret"),
        refresh_token: Secret::new("rt1"),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        webhooks_url: url.clone(),
        sign_in_command: "cosell partner-center login --config c.toml".into(),
    })
    .unwrap()
}

/// How the stub answers one request.
#[derive(Debug, Clone, Copy)]
enum Scripted {
    /// 503 with no body: the service surely did not run the request.
    Bare503,
    /// 503 with an error body, as a gateway may send after the service committed.
    Busy503,
    /// 500 after the write was made.
    Failed500,
    /// 201/200 headers, then the connection is cut inside the body.
    CutShort,
    /// The real answer.
    Answered,
}

/// A stub answering each request to the referral collection as `script` says, in turn (the
/// real answer once the script runs out); answers it and the number of requests it got.
async fn scripted(script: Vec<Scripted>) -> (PartnerCenterClient, Arc<Mutex<usize>>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let seen: Arc<Mutex<usize>> = Arc::default();
    let log = seen.clone();
    let answer = move || {
        let log = log.clone();
        let script = script.clone();
        async move {
            let n = {
                let mut seen = log.lock().unwrap();
                *seen += 1;
                *seen - 1
            };
            let referral = json!({"id": "r1", "eTag": "e1", "value": []});
            let error = json!({"error": {"code": "ServiceUnavailable", "message": "busy"}});
            match script.get(n).copied().unwrap_or(Scripted::Answered) {
                Scripted::Bare503 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                Scripted::Busy503 => {
                    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(error)).into_response()
                }
                Scripted::Failed500 => {
                    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error)).into_response()
                }
                Scripted::CutShort => {
                    use futures_util::StreamExt as _;
                    // The first part goes out with the headers; the cut comes after it.
                    let first = futures_util::stream::once(async {
                        Ok::<_, std::io::Error>(r#"{"id": "r"#)
                    });
                    let cut = futures_util::stream::once(async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err(std::io::Error::other("connection cut inside the body"))
                    });
                    let body = axum::body::Body::from_stream(first.chain(cut));
                    (StatusCode::CREATED, body).into_response()
                }
                Scripted::Answered => (StatusCode::CREATED, axum::Json(referral)).into_response(),
            }
        }
    };
    let app = axum::Router::new().route(
        "/v1.0/engagements/referrals",
        axum::routing::post(answer.clone()).get(answer),
    );
    (stub(app).await, seen)
}

/// A referral create (a POST, not idempotent) is sent again only when Partner Center surely
/// did not run it: after a 503 without a body. After a 500, a 503 with a body or an answer
/// cut short it may have made the referral, so it is never sent again: the error is
/// `AnswerLost`, which the writer answers by looking the referral up. (Before the clients
/// shared one loop, an answer cut short was a `Transport` error, which the writer does not
/// look up but sends again later.) A read is sent again after any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_sent_again_only_when_it_surely_did_not_arrive() {
    tokio::time::timeout(BOUND, async {
        let referral = json!({"name": "Contoso"});
        let (client, seen) = scripted(vec![Scripted::Bare503, Scripted::Bare503]).await;
        let created = client.create_referral(&referral).await;
        assert_eq!(created.expect("created after two bare 503s")["id"], "r1");
        assert_eq!(*seen.lock().unwrap(), 3, "sent again after each bare 503");

        for answer in [Scripted::Failed500, Scripted::Busy503, Scripted::CutShort] {
            let (client, seen) = scripted(vec![answer]).await;
            let lost = client.create_referral(&referral).await;
            assert!(
                matches!(lost, Err(PartnerCenterError::AnswerLost(_))),
                "{answer:?}: {lost:?}"
            );
            let lost = lost.unwrap_err().to_string();
            assert!(
                lost.contains("looked up"),
                "{answer:?}: says what happens: {lost}"
            );
            if let Scripted::CutShort = answer {
                assert!(
                    lost.contains("reading the answer"),
                    "cut in the body: {lost}"
                );
            }
            assert_eq!(*seen.lock().unwrap(), 1, "{answer:?}: sent once");

            let (client, seen) = scripted(vec![answer]).await;
            let listed = client.list_referrals(None, None).await;
            assert!(
                listed.is_ok(),
                "{answer:?}: a read is sent again: {listed:?}"
            );
            assert_eq!(*seen.lock().unwrap(), 2, "{answer:?}");
        }
    })
    .await
    .expect("bounded");
}

/// The emulator makes the referral and then answers 500 (or drops the connection): the client
/// does not send the create again (which would make a second referral) but answers
/// `AnswerLost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_applied_before_its_answer_was_lost_is_not_sent_again() {
    tokio::time::timeout(BOUND, async {
        let (pc, running) = emulator(8).await;
        let client = client(&pc, &running);
        for (n, fault) in FaultConfig::every_answer_lost().into_iter().enumerate() {
            let mut referral = outgoing("Independent");
            referral["externalReferenceId"] = json!(format!("lost-answer-{n}"));
            pc.faults().set(fault.clone()).unwrap();
            let created = client.create_referral(&referral).await;
            pc.faults().set(FaultConfig::default()).unwrap();
            assert!(
                matches!(created, Err(PartnerCenterError::AnswerLost(_))),
                "{fault:?}: {created:?}"
            );
            let made = pc
                .referrals()
                .into_iter()
                .filter(|r| r["externalReferenceId"] == referral["externalReferenceId"])
                .count();
            assert_eq!(made, 1, "{fault:?}: one referral, not one per attempt");
        }
        let injected = pc.faults().injected();
        assert_eq!(injected.applied_then_failed, 1, "{injected:?}");
        assert_eq!(injected.applied_then_dropped, 1, "{injected:?}");
        running.stop().await;
    })
    .await
    .expect("bounded");
}
