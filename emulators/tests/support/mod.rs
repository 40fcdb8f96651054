//! What the Dataverse emulator's HTTP tests share: a running emulator with cosell's columns
//! provisioned and a token, and readers of the documented error shape.

#![allow(dead_code)] // each test binary uses its own part

use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// A running Dataverse emulator with a token for its Web API.
pub struct Env {
    pub dv: Dataverse,
    pub running: RunningEmulator,
    pub http: reqwest::Client,
    pub token: String,
}

/// An emulator configured by `config`, cosell's columns provisioned, and a token.
pub async fn start_with(config: DataverseConfig) -> Env {
    let dv = Dataverse::new(config);
    dv.provision_cosell();
    let running = dv.serve().await.expect("serves");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let config = dv.config().clone();
    let response = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            running.url(),
            config.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("scope", "https://cosell-emulator.crm.dynamics.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap().to_owned();
    Env {
        dv,
        running,
        http,
        token,
    }
}

/// An emulator with the default configuration.
pub async fn start() -> Env {
    start_with(DataverseConfig::default()).await
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/api/data/v9.2/{path}", self.running.url())
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
    }

    pub async fn send(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let response = builder.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, b) = self.send(self.req(Method::GET, path)).await;
        (s, b)
    }

    /// Creates a row and returns its id (from `OData-EntityId`).
    pub async fn create(&self, set: &str, body: Value) -> String {
        let (status, headers, answer) = self.send(self.req(Method::POST, set).json(&body)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
        id_of(headers["OData-EntityId"].to_str().unwrap())
    }
}

pub fn id_of(entity_url: &str) -> String {
    let open = entity_url.rfind('(').unwrap();
    entity_url[open + 1..entity_url.len() - 1].to_owned()
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().expect("error shape")
}

pub fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().expect("error shape")
}
