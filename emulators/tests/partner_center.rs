//! The Partner Center emulator over real HTTP: the documented wire examples (reference §1, §2,
//! §5b) replayed against `PartnerCenter::serve()` on 127.0.0.1, checked field by field.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use chrono::Duration;
use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::partner_center::{
    PartnerCenter, PartnerCenterConfig, REFERRALS_AUDIENCE, RunningPartnerCenter, WEBHOOKS_AUDIENCE,
};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use x509_cert::der::{Decode, Encode};

struct Env {
    pc: PartnerCenter,
    running: RunningPartnerCenter,
    http: reqwest::Client,
    /// A delegated token for the Referrals API.
    token: String,
    /// A delegated token for the Webhooks API (another audience, another host).
    webhooks_token: String,
}

impl Env {
    async fn start(config: PartnerCenterConfig) -> Env {
        let pc = PartnerCenter::new(config);
        let running = pc.serve().await.expect("the emulator starts");
        let http = reqwest::Client::new();
        let mut env = Env {
            pc,
            running,
            http,
            token: String::new(),
            webhooks_token: String::new(),
        };
        env.token = env.delegated_token(REFERRALS_AUDIENCE).await;
        env.webhooks_token = env.delegated_token(WEBHOOKS_AUDIENCE).await;
        env
    }

    async fn default() -> Env {
        Env::start(PartnerCenterConfig::default()).await
    }

    /// `path` on the listener that serves it: the Webhooks API has its own host.
    fn url(&self, path: &str) -> String {
        if path.starts_with("/webhooks/") {
            format!("{}{path}", self.running.webhooks_url())
        } else {
            format!("{}{path}", self.running.url())
        }
    }

    async fn delegated_token(&self, audience: &str) -> String {
        let tenant = &self.pc.config().tenant_id;
        let answer: Value = self
            .http
            .post(self.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &self.pc.refresh_token()),
                (
                    "scope",
                    &format!("{audience}/user_impersonation offline_access"),
                ),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"].as_str().expect("a token").to_owned()
    }

    /// A request to `path` with the token of the API that serves it.
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let token = if path.starts_with("/webhooks/") {
            &self.webhooks_token
        } else {
            &self.token
        };
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    async fn create(&self, body: Value) -> Value {
        let r = self
            .api(reqwest::Method::POST, "/v1.0/engagements/referrals")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    async fn get(&self, id: &str) -> Value {
        let r = self
            .api(
                reqwest::Method::GET,
                &format!("/v1.0/engagements/referrals/{id}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn list(&self, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .api(reqwest::Method::GET, "/v1.0/engagements/referrals")
            .query(query)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn ids(&self, filter: &str) -> HashSet<String> {
        let (status, body) = self.list(&[("$filter", filter)]).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {body}");
        ids_of(&body)
    }
}

fn ids_of(page: &Value) -> HashSet<String> {
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn referral(name: &str, kind: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "qualification": "SalesQualified",
        "customerProfile": {"name": "Contoso", "address": {"country": "US", "postalCode": "98052"},
                            "team": [{"firstName": "A", "lastName": "B", "email": "a@contoso.example"}]},
        "consent": {"consentToShareReferralWithMicrosoftSellers": kind == "Shared", "consentToContact": true},
        "details": {"notes": "n", "dealValue": 1000, "currency": "USD"},
        "team": [{"firstName": "P", "lastName": "Q", "email": "me@partner.example"}],
        "status": "New",
        "substatus": "Pending"
    })
}

const DOCUMENTED_412: &str = r#"{"error":{"code":"preconditionFailed","message":"A precondition provided in the request (such as an if-match header) does not match the resource's current state.","target":"ETag","innerError":{"code":"99918","message":"One of the specified pre-condition is not met. Etag value did not Match","details":null}}}"#;

#[tokio::test]
async fn tokens_are_required_and_expire_and_app_only_is_refused_on_referrals() {
    let env = Env::default().await;
    let tenant = env.pc.config().tenant_id.clone();
    let (status, _) = env.list(&[]).await;
    assert_eq!(status, StatusCode::OK);

    let none = env
        .http
        .get(env.url("/v1.0/engagements/referrals"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let bogus = env
        .http
        .get(env.url("/v1.0/engagements/referrals"))
        .bearer_auth("at-nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);

    // v1 endpoint: numeric fields as strings, as Entra ID's v1 answers.
    let v1: Value = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/token")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &env.pc.refresh_token()),
            ("resource", "https://api.partner.microsoft.com"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["token_type"], "Bearer");
    assert_eq!(v1["expires_in"], "3600");
    assert!(v1["refresh_token"].as_str().unwrap().len() > 8);

    // App-only: a valid token, refused by the Referrals API, accepted by the Webhooks API.
    let app: Value = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.pc.config().client_id),
            ("client_secret", &env.pc.config().client_secret),
            ("scope", &format!("{REFERRALS_AUDIENCE}/.default")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app_token = app["access_token"].as_str().unwrap();
    let refused = env
        .http
        .get(env.url("/v1.0/engagements/referrals"))
        .bearer_auth(app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let app: Value = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.pc.config().client_id),
            ("client_secret", &env.pc.config().client_secret),
            ("scope", &format!("{WEBHOOKS_AUDIENCE}/.default")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hooks = env
        .http
        .get(env.url("/webhooks/v1/registration/events"))
        .bearer_auth(app["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(hooks.status(), StatusCode::OK);

    let wrong_secret = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.pc.config().client_id),
            ("client_secret", "wrong"),
            ("scope", &format!("{WEBHOOKS_AUDIENCE}/.default")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
    let wrong_tenant = env
        .http
        .post(env.url("/not-a-tenant/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &env.pc.refresh_token()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_tenant.status(), StatusCode::BAD_REQUEST);

    env.pc.clock().advance(Duration::minutes(61));
    let (status, body) = env.list(&[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    env.running.stop().await;
}

#[tokio::test]
async fn each_api_is_on_its_own_host_and_takes_only_tokens_for_its_audience() {
    let env = Env::default().await;
    let tenant = env.pc.config().tenant_id.clone();
    // A token request that names no resource is refused, as Entra ID refuses it.
    let unnamed = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &env.pc.refresh_token()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unnamed.status(), StatusCode::BAD_REQUEST);
    let body: Value = unnamed.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");

    // The Referrals API's token is refused by the Webhooks API, and the other way round.
    let on_webhooks = env
        .http
        .get(env.url("/webhooks/v1/registration/events"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(on_webhooks.status(), StatusCode::UNAUTHORIZED);
    let on_referrals = env
        .http
        .get(env.url("/v1.0/engagements/referrals"))
        .bearer_auth(&env.webhooks_token)
        .send()
        .await
        .unwrap();
    assert_eq!(on_referrals.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = env.list(&[]).await;
    assert_eq!(status, StatusCode::OK, "its own token works");
    let events = env
        .api(reqwest::Method::GET, "/webhooks/v1/registration/events")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);

    // The referrals host does not serve the Webhooks API, nor the other way round.
    let wrong_host = env
        .http
        .get(format!(
            "{}/webhooks/v1/registration/events",
            env.running.url()
        ))
        .bearer_auth(&env.webhooks_token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_host.status(), StatusCode::NOT_FOUND);
    let wrong_host = env
        .http
        .get(format!(
            "{}/v1.0/engagements/referrals",
            env.running.webhooks_url()
        ))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_host.status(), StatusCode::NOT_FOUND);
    env.running.stop().await;
}

#[tokio::test]
async fn device_code_sign_in_polls_until_a_named_user_approves() {
    let env = Env::start(PartnerCenterConfig {
        device_code_interval: std::time::Duration::from_secs(1),
        ..PartnerCenterConfig::default()
    })
    .await;
    let tenant = env.pc.config().tenant_id.clone();
    let client_id = env.pc.config().client_id.clone();
    let scope = format!("{REFERRALS_AUDIENCE}/.default offline_access openid profile");
    let no_scope = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/devicecode")))
        .form(&[("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(no_scope.status(), StatusCode::BAD_REQUEST);
    let start: Value = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/devicecode")))
        .form(&[("client_id", client_id.as_str()), ("scope", &scope)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in ["device_code", "user_code", "verification_uri", "message"] {
        assert!(start[field].is_string(), "{field}: {start}");
    }
    assert_eq!(start["interval"], 1);
    assert_eq!(start["expires_in"], 900);
    let device_code = start["device_code"].as_str().unwrap();
    let user_code = start["user_code"].as_str().unwrap();
    assert!(start["message"].as_str().unwrap().contains(user_code));
    let poll = || {
        env.http
            .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", client_id.as_str()),
                ("device_code", device_code),
            ])
            .send()
    };
    // The pending sign-in is listed; the user approves it (what the browser page does).
    let pending: Value = env
        .http
        .get(env.url("/_emulator/device-codes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending[0]["user_code"], user_code);
    let interval = std::time::Duration::from_millis(1100);
    tokio::time::sleep(interval).await;
    let waiting = poll().await.unwrap();
    assert_eq!(waiting.status(), StatusCode::BAD_REQUEST);
    let waiting: Value = waiting.json().await.unwrap();
    assert_eq!(waiting["error"], "authorization_pending", "{waiting}");
    let approved = env
        .http
        .post(env.url(&format!("/_emulator/device-codes/{user_code}/approve")))
        .json(&json!({"user": "alice@contoso.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(interval).await;
    let tokens: Value = poll().await.unwrap().json().await.unwrap();
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["preferred_username"], "alice@contoso.example");
    assert!(tokens["refresh_token"].is_string());
    let list = env
        .http
        .get(env.url("/v1.0/engagements/referrals"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK, "a delegated Referrals token");
    // The code is spent.
    let again: Value = poll().await.unwrap().json().await.unwrap();
    assert_eq!(again["error"], "bad_verification_code", "{again}");

    // A client that polls before `interval` has passed is told to slow down.
    let second: Value = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/devicecode")))
        .form(&[("client_id", client_id.as_str()), ("scope", &scope)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let early: Value = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", client_id.as_str()),
            ("device_code", second["device_code"].as_str().unwrap()),
            ("scope", &scope),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(early["error"], "slow_down", "{early}");
    env.running.stop().await;
}

#[tokio::test]
async fn create_sets_server_fields_and_get_returns_it() {
    let env = Env::default().await;
    let r = env
        .api(reqwest::Method::POST, "/v1.0/engagements/referrals")
        .header("MS-CorrelationId", "11111111-2222-3333-4444-555555555555")
        .json(&referral("Deal 1", "Independent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["ms-correlationid"],
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(r.headers()["ms-requestid"], r.headers()["request-id"]);
    let etag_header = r.headers()["etag"].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["eTag"], etag_header.as_str());
    let id = created["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(created["engagementId"].as_str().unwrap().len(), 36);
    let etag = created["eTag"].as_str().unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert!(created["createdDateTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["createdDateTime"], created["updatedDateTime"]);
    assert_eq!(created["direction"], "Outgoing");
    assert_eq!(created["status"], "Active");
    assert_eq!(created["substatus"], "Accepted");
    assert!(created["acceptedDateTime"].is_string());
    assert_eq!(created["details"]["dealValue"], 1000.0);
    assert_eq!(created["customerProfile"]["address"]["country"], "US");
    assert!(
        created["links"]["self"]["uri"]
            .as_str()
            .unwrap()
            .ends_with(id)
    );
    assert_eq!(env.get(id).await, created);

    let missing = env
        .api(
            reqwest::Method::GET,
            "/v1.0/engagements/referrals/00000000-0000-0000-0000-000000000000",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let mut no_consent = referral("x", "Independent");
    no_consent.as_object_mut().unwrap().remove("consent");
    let r = env
        .api(reqwest::Method::POST, "/v1.0/engagements/referrals")
        .json(&no_consent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("consent")
    );
    env.running.stop().await;
}

#[tokio::test]
async fn shared_co_sell_referral_is_created_in_two_steps() {
    let env = Env::default().await;
    let mut first = referral("Co-sell", "Shared");
    first["target"] = json!([{"type": "SolutionProfile", "id": "SOL-34104-EBB"}]);
    let first = env.create(first).await;
    let engagement = first["engagementId"].as_str().unwrap().to_owned();

    let mut for_msft = referral("Co-sell (Microsoft)", "Shared");
    for_msft["target"] = json!([{"type": "BusinessProfileLocation", "id": "msft"}]);
    let r = env
        .api(reqwest::Method::POST, "/v1.0/engagements/referrals")
        .json(&for_msft)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "msft target needs the engagementId"
    );
    for_msft["engagementId"] = json!(engagement);
    let second = env.create(for_msft).await;
    assert_eq!(second["engagementId"], engagement.as_str());
    assert_ne!(second["id"], first["id"]);

    let related = env.ids(&format!("engagementId eq '{engagement}'")).await;
    assert_eq!(related.len(), 2);
    // The live service's own links write the GUID unquoted.
    assert_eq!(
        env.ids(&format!("engagementId eq {engagement}")).await,
        related
    );
    env.running.stop().await;
}

#[tokio::test]
async fn the_documented_next_link_path_can_be_served_and_undocumented_filters_are_refused() {
    let env = Env::start(PartnerCenterConfig {
        serve_next_link_path: true,
        ..PartnerCenterConfig::default()
    })
    .await;
    for i in 0..5 {
        env.create(referral(&format!("Deal {i}"), "Independent"))
            .await;
    }
    let (_, page) = env.list(&[("$top", "3")]).await;
    let next = page["@odata.nextLink"].as_str().unwrap();
    let rest: Value = env
        .http
        .get(next)
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["value"].as_array().unwrap().len(), 2);
    assert!(rest.get("@odata.nextLink").is_none());

    for filter in [
        "externalReferenceId eq 'x'",
        "name eq 'Deal 1'",
        "status eq 'New' and updatedDateTime ge '2026-01-01T00:00:00Z'",
    ] {
        let (status, body) = env.list(&[("$filter", filter)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{filter}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not supported"),
            "{body}"
        );
    }
    let (status, _) = env.list(&[("$orderby", "name")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    env.running.stop().await;
}

#[tokio::test]
async fn list_pages_with_an_opaque_next_link_select_and_orderby() {
    let env = Env::default().await;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(
            env.create(referral(&format!("Deal {i}"), "Independent"))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (status, page) = env.list(&[("$top", "10")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/v1.0/$metadata#Referrals")
    );
    assert_eq!(page["@odata.count"], 25);
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut page = page;
    for _ in 0..10 {
        sizes.push(page["value"].as_array().unwrap().len());
        seen.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        let Some(next) = page["@odata.nextLink"].as_str() else {
            break;
        };
        // The documented shape: another path than the request's, answered 404 here, so the
        // link's $skiptoken goes on the list's own path.
        let link = reqwest::Url::parse(next).unwrap();
        assert_eq!(link.path(), "/v1.0/referrals", "{next}");
        let as_linked = env.http.get(next).bearer_auth(&env.token).send().await;
        assert_eq!(as_linked.unwrap().status(), StatusCode::NOT_FOUND);
        let (_, token) = link
            .query_pairs()
            .find(|(k, _)| k == "$skiptoken")
            .expect("a $skiptoken");
        let (status, next_page) = env.list(&[("$skiptoken", &token)]).await;
        assert_eq!(status, StatusCode::OK);
        page = next_page;
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(seen, created, "every id once, in creation order");

    let (_, desc) = env
        .list(&[("$orderby", "createdDateTime desc"), ("$top", "3")])
        .await;
    let first: Vec<&str> = desc["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        vec![
            created[24].as_str(),
            created[23].as_str(),
            created[22].as_str()
        ]
    );

    // Touch the oldest: it comes first by updatedDateTime desc, last by asc.
    let r = env
        .api(
            reqwest::Method::PATCH,
            &format!("/v1.0/engagements/referrals/{}", created[0]),
        )
        .json(&json!([{"op": "replace", "path": "/details/notes", "value": "touched"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, by_update) = env
        .list(&[("$orderby", "updatedDateTime desc"), ("$top", "1")])
        .await;
    assert_eq!(by_update["value"][0]["id"], created[0].as_str());
    let (_, asc) = env.list(&[("$orderby", "updatedDateTime asc")]).await;
    assert_eq!(asc["value"][24]["id"], created[0].as_str());

    let (_, selected) = env
        .list(&[("$select", "id,status,customerProfile"), ("$top", "2")])
        .await;
    let keys: HashSet<&str> = selected["value"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, HashSet::from(["id", "status", "customerProfile"]));

    let (status, _) = env.list(&[("$orderby", "name")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = env.list(&[("$skiptoken", "garbage!")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    env.running.stop().await;
}

#[tokio::test]
async fn the_documented_filters_select_the_right_referrals() {
    let env = Env::default().await;
    let ms = env.pc.microsoft();
    let us_new = ms.create_incoming(json!({"customerProfile": {"address": {"country": "US"}}}));
    let de_new = ms.create_incoming(json!({"customerProfile": {"address": {"country": "DE"}}, "qualification": "MarketingQualified"}));
    let us_received = ms.create_incoming(json!({"substatus": "Received", "type": "Independent"}));
    let mut shared = referral("Ours", "Shared");
    shared["team"] = json!([{"email": "x@y.example"}, {"email": "other@y.example"}]);
    let outgoing_shared = env.create(shared).await;
    let outgoing_indep = env.create(referral("Ours 2", "Independent")).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();

    assert_eq!(
        env.ids("status eq 'New' and qualification eq 'SalesQualified'")
            .await,
        HashSet::from([id(&us_new), id(&us_received)])
    );
    assert_eq!(
        env.ids("customerProfile/address/country eq 'US' and direction eq 'Incoming'")
            .await,
        HashSet::from([id(&us_new), id(&us_received)])
    );
    assert_eq!(
        env.ids("(type eq 'Shared' and direction eq 'Incoming')")
            .await,
        HashSet::from([id(&us_new), id(&de_new)])
    );
    assert_eq!(
        env.ids("(direction eq 'Incoming' and substatus eq 'Pending')")
            .await,
        HashSet::from([id(&us_new), id(&de_new)])
    );
    assert_eq!(env.ids("status eq 'Active' and direction eq 'Outgoing' and type eq 'Shared' and team/any(t:t/email eq 'x@y.example')").await,
               HashSet::from([id(&outgoing_shared)]));
    assert_eq!(env.ids("(direction eq 'Outgoing' and type eq 'Independent') or (customerProfile/address/country eq 'DE')").await,
               HashSet::from([id(&outgoing_indep), id(&de_new)]));
    assert!(
        env.ids("team/any(t:t/email eq 'nobody@y.example')")
            .await
            .is_empty()
    );
    let (status, body) = env.list(&[("$filter", "status eq 'New' and")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "badRequest");
    env.running.stop().await;
}

#[tokio::test]
async fn patch_answers_204_or_200_with_prefer_and_put_needs_a_current_if_match() {
    let env = Env::default().await;
    let incoming = env.pc.microsoft().create_incoming(json!({}));
    let id = incoming["id"].as_str().unwrap();
    let path = format!("/v1.0/engagements/referrals/{id}");
    let old_etag = incoming["eTag"].as_str().unwrap().to_owned();

    // The documented accept, without Prefer: 204 and no body.
    let r = env
        .api(reqwest::Method::PATCH, &path)
        .header("If-Match", &old_etag)
        .json(&json!([{"op":"replace","path":"/status","value":"Active"},{"op":"replace","path":"/substatus","value":"Accepted"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let new_etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, old_etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let got = env.get(id).await;
    assert_eq!(
        (got["status"].as_str(), got["substatus"].as_str()),
        (Some("Active"), Some("Accepted"))
    );
    assert!(got["acceptedDateTime"].is_string());
    assert_eq!(got["eTag"], new_etag.as_str());

    // With Prefer: 200 and the referral; dealValue sent as a string is stored as a number.
    let r = env
        .api(reqwest::Method::PATCH, &path)
        .header("Prefer", "return=representation")
        .json(&json!([{"op":"replace","path":"/details/dealValue","value":"10000"},
                      {"op":"add","path":"/team/-","value":{"email":"new@partner.example","firstName":"N","lastName":"M","phoneNumber":"1"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["details"]["dealValue"], 10000.0);
    assert_eq!(
        body["team"].as_array().unwrap().last().unwrap()["email"],
        "new@partner.example"
    );
    assert_ne!(body["eTag"], new_etag.as_str());

    // A stale If-Match on PATCH: the documented 412 body.
    let r = env
        .api(reqwest::Method::PATCH, &path)
        .header("If-Match", &old_etag)
        .json(&json!([{"op":"replace","path":"/details/notes","value":"x"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::from_str::<Value>(DOCUMENTED_412).unwrap()
    );

    // Unsupported op and read-only member.
    for ops in [
        json!([{"op":"remove","path":"/details/notes"}]),
        json!([{"op":"replace","path":"/id","value":"x"}]),
    ] {
        let r = env
            .api(reqwest::Method::PATCH, &path)
            .json(&ops)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{ops}");
    }

    // PUT: If-Match required, stale → 412, links must be removed, current → 200 + new eTag.
    let mut full = env.get(id).await;
    let current = full["eTag"].as_str().unwrap().to_owned();
    full["details"]["notes"] = json!("put notes");
    let r = env
        .api(reqwest::Method::PUT, &path)
        .json(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_REQUIRED);
    let r = env
        .api(reqwest::Method::PUT, &path)
        .header("If-Match", &current)
        .json(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "links still in the body"
    );
    full.as_object_mut().unwrap().remove("links");
    let r = env
        .api(reqwest::Method::PUT, &path)
        .header("If-Match", &old_etag)
        .json(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        r.text().await.unwrap().parse::<Value>().unwrap(),
        DOCUMENTED_412.parse::<Value>().unwrap()
    );
    let r = env
        .api(reqwest::Method::PUT, &path)
        .header("If-Match", &current)
        .json(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let put: Value = r.json().await.unwrap();
    assert_eq!(put["details"]["notes"], "put notes");
    assert_ne!(put["eTag"], current.as_str());
    assert_eq!(put["id"], id);
    assert_eq!(put["createdDateTime"], incoming["createdDateTime"]);
    env.running.stop().await;
}

#[tokio::test]
async fn status_moves_follow_the_table_and_closed_is_terminal() {
    let env = Env::default().await;
    let ms = env.pc.microsoft();
    let patch = |id: String, status: &'static str, substatus: &'static str| {
        let req = env
            .api(reqwest::Method::PATCH, &format!("/v1.0/engagements/referrals/{id}"))
            .json(&json!([{"op":"replace","path":"/status","value":status},{"op":"replace","path":"/substatus","value":substatus}]));
        async move { req.send().await.unwrap() }
    };
    let a = ms.create_incoming(json!({}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = patch(a.clone(), "Active", "Won").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalidStatusTransition"
    );
    assert_eq!(
        patch(a.clone(), "Active", "Accepted").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        patch(a.clone(), "New", "Pending").await.status(),
        StatusCode::BAD_REQUEST,
        "Active cannot go back to New"
    );
    assert_eq!(
        patch(a.clone(), "Closed", "Won").await.status(),
        StatusCode::NO_CONTENT
    );
    let closed = env.get(&a).await;
    assert!(closed["closedDateTime"].is_string());
    assert_eq!(
        patch(a.clone(), "Closed", "Lost").await.status(),
        StatusCode::BAD_REQUEST,
        "Closed is terminal"
    );
    assert_eq!(
        patch(a.clone(), "Active", "Accepted").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert!(ms.accept(&a).is_err());
    assert_eq!(env.get(&a).await["substatus"], "Won");

    let b = ms.create_incoming(json!({}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        patch(b.clone(), "Closed", "Declined").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        patch(b.clone(), "Active", "Accepted").await.status(),
        StatusCode::BAD_REQUEST
    );
    env.running.stop().await;
}

#[tokio::test]
async fn unanswered_incoming_referrals_expire_after_14_emulated_days() {
    let mut env = Env::default().await;
    let ms = env.pc.microsoft();
    let waiting = ms.create_incoming(json!({}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let accepted = ms.create_incoming(json!({}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ms.accept(&accepted).unwrap();
    let mut receiver = Receiver::start(StatusCode::OK).await;
    let reg = json!({"WebhookUrl": receiver.url, "WebhookEvents": ["referral-updated"]});
    register(&env, reg, reqwest::Method::POST).await;
    env.pc.clock().advance(Duration::days(13));
    env.token = env.delegated_token(REFERRALS_AUDIENCE).await; // the old one expired with the clock
    assert_eq!(env.get(&waiting).await["status"], "New");
    let (_, page) = env.list(&[("$filter", "substatus eq 'Expired'")]).await;
    assert_eq!(page["@odata.count"], 0);
    env.pc
        .clock()
        .advance(Duration::days(1) + Duration::minutes(1));
    env.token = env.delegated_token(REFERRALS_AUDIENCE).await;
    let (_, page) = env
        .list(&[("$filter", "status eq 'Closed' and substatus eq 'Expired'")])
        .await;
    assert_eq!(ids_of(&page), HashSet::from([waiting.clone()]));
    let expired = env.get(&waiting).await;
    assert!(expired["closedDateTime"].is_string());
    let (_, body) = receiver.next().await;
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["EventName"], "referral-updated");
    assert!(event["ResourceUri"].as_str().unwrap().ends_with(&waiting));
    assert_eq!(env.get(&accepted).await["status"], "Active");
    let r = env
        .api(reqwest::Method::PATCH, &format!("/v1.0/engagements/referrals/{waiting}"))
        .json(&json!([{"op":"replace","path":"/status","value":"Active"},{"op":"replace","path":"/substatus","value":"Accepted"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "too late to accept");
    env.running.stop().await;
}

struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<(HeaderMap, Bytes)>,
    hits: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(answer: StatusCode) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let (tx, counter) = (tx.clone(), counter.clone());
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send((headers, body));
                    answer
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, rx, hits }
    }

    async fn next(&mut self) -> (HeaderMap, Bytes) {
        tokio::time::timeout(std::time::Duration::from_secs(20), self.rx.recv())
            .await
            .expect("a delivery within 20 s")
            .expect("the receiver is running")
    }

    async fn nothing_for(&mut self, ms: u64) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(ms), self.rx.recv())
            .await
            .is_err()
    }
}

async fn register(env: &Env, body: Value, method: reqwest::Method) -> reqwest::Response {
    env.api(method, "/webhooks/v1/registration")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn verify(der: &[u8], body: &[u8], signature_b64: &str) -> bool {
    let cert = x509_cert::Certificate::from_der(der).expect("a DER certificate");
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let key = rsa::RsaPublicKey::from_public_key_der(&spki).expect("an RSA public key");
    let verifying = rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(key);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .unwrap();
    let signature = rsa::pkcs1v15::Signature::try_from(bytes.as_slice()).unwrap();
    verifying.verify(body, &signature).is_ok()
}

#[tokio::test]
async fn webhook_registration_is_single_conflicts_on_post_and_put_overwrites() {
    let env = Env::default().await;
    let r = env
        .api(reqwest::Method::GET, "/webhooks/v1/registration")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let events: Value = env
        .api(reqwest::Method::GET, "/webhooks/v1/registration/events")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for e in ["referral-created", "referral-updated", "test-created"] {
        assert!(events.as_array().unwrap().contains(&json!(e)), "{events}");
    }
    let first = json!({"WebhookUrl": "https://a.example/hook", "WebhookEvents": ["referral-created", "referral-updated"]});
    let r = register(&env, first, reqwest::Method::POST).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["WebhookUrl"], "https://a.example/hook");
    assert_eq!(
        body["WebhookEvents"],
        json!(["referral-created", "referral-updated"])
    );
    assert!(body["SubscriberId"].is_string());
    let again =
        json!({"WebhookUrl": "https://b.example/hook", "WebhookEvents": ["referral-created"]});
    assert_eq!(
        register(&env, again.clone(), reqwest::Method::POST)
            .await
            .status(),
        StatusCode::CONFLICT
    );
    // camelCase (the swagger's spelling) works too.
    let camel = json!({"webhookUrl": "https://b.example/hook", "webhookEvents": ["referral-created"], "signatureTokenToMsSignatureHeader": true});
    assert_eq!(
        register(&env, camel, reqwest::Method::PUT).await.status(),
        StatusCode::OK
    );
    let now: Value = env
        .api(reqwest::Method::GET, "/webhooks/v1/registration")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["WebhookUrl"], "https://b.example/hook");
    assert_eq!(now["SignatureTokenToMsSignatureHeader"], true);
    let bad = json!({"WebhookUrl": "https://b.example/hook", "WebhookEvents": ["no-such-event"]});
    assert_eq!(
        register(&env, bad, reqwest::Method::PUT).await.status(),
        StatusCode::BAD_REQUEST
    );
    env.running.stop().await;
}

#[tokio::test]
async fn deliveries_are_signed_and_verify_with_the_published_certificate() {
    let env = Env::default().await;
    let mut receiver = Receiver::start(StatusCode::OK).await;
    let reg = json!({"WebhookUrl": receiver.url, "WebhookEvents": ["referral-created", "referral-updated"]});
    assert_eq!(
        register(&env, reg, reqwest::Method::POST).await.status(),
        StatusCode::OK
    );

    let created = env
        .pc
        .microsoft()
        .create_incoming(json!({"name": "Signed"}));
    let id = created["id"].as_str().unwrap();
    let (headers, body) = receiver.next().await;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ms-signature-algorithm"], "rsa-sha256");
    assert!(headers.get("x-ms-signature").is_none());
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["EventName"], "referral-created");
    assert_eq!(event["ResourceName"], "referral");
    assert_eq!(event["AuditUri"], Value::Null);
    let uri = event["ResourceUri"].as_str().unwrap();
    assert!(
        uri.ends_with(&format!("/v1.0/engagements/referrals/{id}")),
        "{uri}"
    );
    let date = event["ResourceChangeUtcDate"].as_str().unwrap();
    assert_eq!(
        date.len(),
        "2018-02-17T00:05:39.5485487+00:00".len(),
        "{date}"
    );
    assert!(
        date.ends_with("+00:00") && date.as_bytes()[19] == b'.',
        "{date}"
    );
    let keys: HashSet<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "EventName",
            "ResourceUri",
            "ResourceName",
            "AuditUri",
            "ResourceChangeUtcDate"
        ])
    );

    let auth = headers["authorization"].to_str().unwrap();
    let signature = auth
        .strip_prefix("Signature ")
        .expect("the Signature scheme");
    let cert_url = headers["x-ms-certificate-url"].to_str().unwrap();
    assert!(cert_url.starts_with(&env.running.url()), "{cert_url}");
    let der = env
        .http
        .get(cert_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let cert = x509_cert::Certificate::from_der(&der).unwrap();
    assert!(
        cert.tbs_certificate
            .issuer
            .to_string()
            .contains("O=Microsoft Corporation")
    );
    assert!(verify(&der, &body, signature), "the signature verifies");
    let mut tampered = body.to_vec();
    tampered[10] ^= 0x01;
    assert!(
        !verify(&der, &tampered, signature),
        "one changed byte fails verification"
    );
    let pem = env
        .http
        .get(env.url("/_emulator/certificate.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    // ResourceUri is GETtable with a delegated token.
    let fetched: Value = env
        .http
        .get(uri)
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["id"], id);

    // A partner write and a Microsoft seller write both notify.
    let r = env
        .api(reqwest::Method::PATCH, &format!("/v1.0/engagements/referrals/{id}"))
        .json(&json!([{"op":"replace","path":"/status","value":"Active"},{"op":"replace","path":"/substatus","value":"Accepted"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, body) = receiver.next().await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["EventName"],
        "referral-updated"
    );
    env.pc.microsoft().close(id, true).unwrap();
    let (headers, body) = receiver.next().await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["EventName"],
        "referral-updated"
    );
    let signature = headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Signature ")
        .unwrap()
        .to_owned();
    assert!(verify(&der, &body, &signature));
    env.running.stop().await;
}

#[tokio::test]
async fn the_ms_signature_header_variant_carries_the_signature() {
    let env = Env::default().await;
    let mut receiver = Receiver::start(StatusCode::OK).await;
    let reg = json!({"WebhookUrl": receiver.url, "WebhookEvents": ["referral-created"], "SignatureTokenToMsSignatureHeader": true});
    assert_eq!(
        register(&env, reg, reqwest::Method::POST).await.status(),
        StatusCode::OK
    );
    env.pc.microsoft().create_incoming(json!({}));
    let (headers, body) = receiver.next().await;
    assert!(headers.get("authorization").is_none());
    let value = headers["x-ms-signature"].to_str().unwrap();
    let signature = value
        .split(' ')
        .nth(1)
        .expect("'Signature <b64>', as the reference code splits it");
    let der = env
        .http
        .get(headers["x-ms-certificate-url"].to_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(verify(&der, &body, signature));
    env.running.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_ten_attempts_then_the_event_is_parked() {
    let config = PartnerCenterConfig {
        webhook_retry_base: std::time::Duration::from_millis(1),
        ..PartnerCenterConfig::default()
    };
    let env = Env::start(config).await;
    let mut receiver = Receiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let reg = json!({"WebhookUrl": receiver.url, "WebhookEvents": ["referral-created"]});
    register(&env, reg, reqwest::Method::POST).await;
    let id = env.pc.microsoft().create_incoming(json!({}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut parked = Value::Null;
    for _ in 0..200 {
        parked = env
            .http
            .get(env.url("/_emulator/webhooks/parked"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !parked.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(parked.as_array().unwrap().len(), 1, "parked: {parked}");
    assert_eq!(parked[0]["attempts"], 10);
    assert!(
        parked[0]["event"]["ResourceUri"]
            .as_str()
            .unwrap()
            .ends_with(&id)
    );
    assert_eq!(receiver.hits.load(Ordering::SeqCst), 10);
    assert!(receiver.nothing_for(200).await || receiver.hits.load(Ordering::SeqCst) == 10);
    assert_eq!(receiver.hits.load(Ordering::SeqCst), 10, "no 11th attempt");
    let failed = env
        .pc
        .webhooks()
        .deliveries()
        .iter()
        .filter(|d| d.outcome == "failed" && d.status == Some(500))
        .count();
    assert_eq!(failed, 10);
    env.running.stop().await;
}

#[tokio::test]
async fn delivery_faults_drop_and_duplicate_events() {
    let env = Env::default().await;
    let mut receiver = Receiver::start(StatusCode::OK).await;
    let reg = json!({"WebhookUrl": receiver.url, "WebhookEvents": ["referral-created"]});
    register(&env, reg, reqwest::Method::POST).await;

    env.pc
        .faults()
        .set(FaultConfig {
            webhook_duplicate_rate: 1.0,
            ..FaultConfig::default()
        })
        .unwrap();
    env.pc.microsoft().create_incoming(json!({}));
    let (_, one) = receiver.next().await;
    let (_, two) = receiver.next().await;
    assert_eq!(one, two, "the same event twice");

    // Over HTTP this time: the control endpoint sets the faults.
    let r = env
        .http
        .put(env.url("/_emulator/faults"))
        .json(&json!({"webhook_drop_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    env.pc.microsoft().create_incoming(json!({}));
    let mut dropped = false;
    for _ in 0..100 {
        if env
            .pc
            .webhooks()
            .deliveries()
            .iter()
            .any(|d| d.outcome == "dropped")
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(dropped, "the drop is recorded");
    assert!(receiver.nothing_for(300).await, "and nothing arrives");
    assert_eq!(receiver.hits.load(Ordering::SeqCst), 2);
    env.running.stop().await;
}

#[tokio::test]
async fn validation_events_are_delivered_and_report_their_attempts() {
    let env = Env::default().await;
    let mut receiver = Receiver::start(StatusCode::OK).await;
    let reg = json!({"WebhookUrl": receiver.url, "WebhookEvents": ["referral-created"]});
    register(&env, reg, reqwest::Method::POST).await;
    let r = env
        .api(
            reqwest::Method::POST,
            "/webhooks/v1/registration/validationEvents",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "test-created is not registered"
    );
    let reg =
        json!({"WebhookUrl": receiver.url, "WebhookEvents": ["referral-created", "test-created"]});
    register(&env, reg, reqwest::Method::PUT).await;
    let answer: Value = env
        .api(
            reqwest::Method::POST,
            "/webhooks/v1/registration/validationEvents",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let correlation = answer["correlationId"].as_str().unwrap().to_owned();
    let (_, body) = receiver.next().await;
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["EventName"], "test-created");
    assert_eq!(event["ResourceName"], "test");
    assert!(event["ResourceUri"].as_str().unwrap().ends_with(&format!(
        "/webhooks/v1/registration/validationEvents/{correlation}"
    )));
    let mut status = Value::Null;
    for _ in 0..50 {
        status = env
            .api(
                reqwest::Method::GET,
                &format!("/webhooks/v1/registration/validationEvents/{correlation}"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["results"][0]["responseCode"], "OK");
    assert_eq!(status["callbackUrl"], receiver.url.as_str());
    env.running.stop().await;
}

#[tokio::test]
async fn the_microsoft_side_works_over_http_and_seeding_is_deterministic() {
    let env = Env::default().await;
    let r = env
        .http
        .post(env.url("/_emulator/microsoft/referrals"))
        .json(&json!({"name": "From MS", "details": {"dealValue": 777}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        (
            created["direction"].as_str(),
            created["status"].as_str(),
            created["substatus"].as_str()
        ),
        (Some("Incoming"), Some("New"), Some("Pending"))
    );
    assert_eq!(
        created["inviteContext"]["invitedBy"]["organizationId"],
        "msft"
    );
    assert_eq!(created["details"]["dealValue"], 777);
    assert_eq!(
        created["details"]["currency"], "USD",
        "the rest of the template stays"
    );
    assert!(created["expirationDateTime"].is_string());
    let id = created["id"].as_str().unwrap();
    let base = env.url(&format!("/_emulator/microsoft/referrals/{id}"));
    let r = env
        .http
        .patch(&base)
        .json(&json!({"details": {"notes": "seller note"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["details"]["notes"],
        "seller note"
    );
    let r = env
        .http
        .post(format!("{base}/accept"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "Active");
    let r = env
        .http
        .post(format!("{base}/close"))
        .json(&json!({"won": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["substatus"], "Won");
    let r = env
        .http
        .post(format!("{base}/decline"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let other: Value = env
        .http
        .post(env.url("/_emulator/microsoft/referrals"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = env
        .http
        .post(env.url(&format!(
            "/_emulator/microsoft/referrals/{}/decline",
            other["id"].as_str().unwrap()
        )))
        .json(&json!({"statusReason": "Not a fit"}))
        .send()
        .await
        .unwrap();
    let declined: Value = r.json().await.unwrap();
    assert_eq!(
        (
            declined["substatus"].as_str(),
            declined["statusReason"].as_str()
        ),
        (Some("Declined"), Some("Not a fit"))
    );

    let r = env
        .http
        .post(env.url("/_emulator/microsoft/seed"))
        .json(&json!({"count": 16, "seed": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, page) = env.list(&[("$top", "100")]).await;
    assert_eq!(page["@odata.count"], 18);

    let a = PartnerCenter::new(PartnerCenterConfig::default());
    let b = PartnerCenter::new(PartnerCenterConfig::default());
    a.seed_demo_data(40, 42);
    b.seed_demo_data(40, 42);
    let strip = |v: Vec<Value>| -> Vec<(Value, Value, Value, Value)> {
        v.into_iter()
            .map(|r| {
                (
                    r["id"].clone(),
                    r["name"].clone(),
                    r["substatus"].clone(),
                    r["details"]["dealValue"].clone(),
                )
            })
            .collect()
    };
    let (ra, rb) = (strip(a.referrals()), strip(b.referrals()));
    assert_eq!(ra.len(), 40);
    assert_eq!(ra, rb);
    let states: HashSet<String> = a
        .referrals()
        .iter()
        .map(|r| format!("{}/{}/{}", r["direction"], r["status"], r["substatus"]))
        .collect();
    assert_eq!(states.len(), 8, "{states:?}");
    let c = PartnerCenter::new(PartnerCenterConfig::default());
    c.seed_demo_data(40, 43);
    assert_ne!(strip(c.referrals()), ra);
    env.running.stop().await;
}

#[tokio::test]
async fn api_faults_apply_but_control_endpoints_stay_up() {
    let env = Env::default().await;
    env.pc
        .faults()
        .set(FaultConfig {
            error_rate: 1.0,
            ..FaultConfig::default()
        })
        .unwrap();
    let (status, _) = env.list(&[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let clock = env
        .http
        .get(env.url("/_emulator/clock"))
        .send()
        .await
        .unwrap();
    assert_eq!(clock.status(), StatusCode::OK);
    let r = env
        .http
        .post(env.url("/_emulator/microsoft/referrals"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    env.running.stop().await;
}

#[tokio::test]
async fn the_reorder_fault_shuffles_queued_deliveries() {
    let env = Env::default().await;
    let mut receiver = Receiver::start(StatusCode::OK).await;
    let reg = json!({"WebhookUrl": receiver.url, "WebhookEvents": ["referral-created"]});
    register(&env, reg, reqwest::Method::POST).await;
    env.pc
        .faults()
        .set(FaultConfig {
            webhook_reorder: true,
            ..FaultConfig::default()
        })
        .unwrap();
    // The test runtime is single-threaded: all 30 events are queued before the deliverer runs,
    // so they form one batch, which the fault shuffles (with the emulator's fixed fault seed).
    let created: Vec<String> = (0..30)
        .map(|_| {
            env.pc.microsoft().create_incoming(json!({}))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut received = Vec::new();
    for _ in 0..30 {
        let (_, body) = receiver.next().await;
        let event: Value = serde_json::from_slice(&body).unwrap();
        let uri = event["ResourceUri"].as_str().unwrap();
        received.push(uri.rsplit('/').next().unwrap().to_owned());
    }
    assert_ne!(received, created, "delivered out of order");
    let (mut a, mut b) = (received.clone(), created.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "each event exactly once");
    env.running.stop().await;
}

/// With `webhook_concurrency`, a slow receiver gets several deliveries at once (never more than
/// the setting), and every event still arrives exactly once.
#[tokio::test]
async fn webhook_deliveries_run_concurrently_up_to_the_setting() {
    let env = Env::start(PartnerCenterConfig {
        webhook_concurrency: 4,
        ..PartnerCenterConfig::default()
    })
    .await;
    let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let app = {
        let (in_flight, most) = (in_flight.clone(), most.clone());
        Router::new().route(
            "/hook",
            post(move |body: Bytes| {
                let (in_flight, most, tx) = (in_flight.clone(), most.clone(), tx.clone());
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Slow enough that the next deliveries start before this one ends.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    let _ = tx.send(event["ResourceUri"].as_str().unwrap().to_owned());
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let reg = json!({"WebhookUrl": url, "WebhookEvents": ["referral-created"]});
    register(&env, reg, reqwest::Method::POST).await;
    let ms = env.pc.microsoft();
    let created: HashSet<String> = (0..12)
        .map(|_| {
            ms.create_incoming(json!({}))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut delivered = Vec::new();
    for _ in 0..12 {
        let uri = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
            .await
            .expect("every delivery within 20 s")
            .unwrap();
        delivered.push(uri.rsplit('/').next().unwrap().to_owned());
    }
    assert_eq!(delivered.iter().cloned().collect::<HashSet<_>>(), created);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "no event is delivered twice"
    );
    let most = most.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&most),
        "{most} deliveries were in flight at once"
    );
    env.running.stop().await;
}
