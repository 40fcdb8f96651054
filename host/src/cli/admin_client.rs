//! `cosell mapping deploy | list | rollback | pin | unpin` (and the helpers other admin commands share):
//! talk to a running host's admin API.

use super::AdminArgs;
use anyhow::{Context as _, Result};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

pub(super) fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")
}

pub(super) fn url(admin: &AdminArgs, path: &str) -> String {
    format!("{}/admin/v1{path}", admin.admin_url.trim_end_matches('/'))
}

/// Sends the request; prints the JSON answer on stdout on success, the error on stderr.
pub(super) async fn send(request: reqwest::RequestBuilder, admin: &AdminArgs) -> Result<i32> {
    send_with(request, admin, |body| {
        println!("{}", serde_json::to_string_pretty(body)?);
        Ok(())
    })
    .await
}

/// Sends the request; hands the JSON answer to `show` on success, prints the error on stderr.
pub(super) async fn send_with(
    request: reqwest::RequestBuilder,
    admin: &AdminArgs,
    show: impl FnOnce(&Value) -> Result<()>,
) -> Result<i32> {
    let token = admin.token()?;
    let response = request
        .bearer_auth(token.expose())
        .send()
        .await
        .with_context(|| {
            format!(
                "reaching the cosell admin API at {} (is `cosell serve` running? see --admin-url)",
                admin.admin_url
            )
        })?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("reading the admin API's answer (HTTP {status})"))?;
    if status.is_success() {
        show(&body)?;
        Ok(0)
    } else {
        let message = body["error"].as_str().unwrap_or("no error message");
        eprintln!("error: HTTP {status}: {message}");
        Ok(1)
    }
}

pub(super) async fn deploy(admin: &AdminArgs, step: &str, component: &Path) -> Result<i32> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let request = client()?
        .post(url(admin, &format!("/steps/{step}/versions")))
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .body(bytes);
    send(request, admin).await
}

pub(super) async fn list(admin: &AdminArgs, step: Option<&str>) -> Result<i32> {
    let path = match step {
        Some(step) => format!("/steps/{step}/versions"),
        None => "/steps".to_owned(),
    };
    send(client()?.get(url(admin, &path)), admin).await
}

/// Pins (`pinned`) or unpins a stored version.
pub(super) async fn pin(admin: &AdminArgs, step: &str, version: &str, pinned: bool) -> Result<i32> {
    let url = url(admin, &format!("/steps/{step}/versions/{version}/pin"));
    let client = client()?;
    let request = if pinned {
        client.put(url)
    } else {
        client.delete(url)
    };
    send(request, admin).await
}

pub(super) async fn rollback(admin: &AdminArgs, step: &str, to: Option<&str>) -> Result<i32> {
    let request = client()?
        .post(url(admin, &format!("/steps/{step}/rollback")))
        .json(&serde_json::json!({ "to": to }));
    send(request, admin).await
}
