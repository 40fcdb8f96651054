//! The web console's security over plain HTTP (no browser): signing in sets a session cookie
//! that scripts cannot read and other sites cannot send (`HttpOnly`, `SameSite=Strict`), and
//! that only travels over TLS when the host says it is behind TLS (`Secure`); a wrong token
//! gets no session and repeated failures are throttled; a change without the session's CSRF
//! token, or sent from another site, is refused with 403 and changes nothing; a session expires
//! when idle, and signing out ends it on the host, not just in the browser. Two versions
//! compared side by side run the sample at one call time, so only the versions differ.

mod support;

use cosell::config::HostConfig;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use std::time::Duration;
use support::{Admin, TOKEN, guest, stamp_host_config, start, with_custom_section};

/// A client that shows redirects instead of following them and keeps no cookies: each test
/// sends exactly the cookie it means to.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Starts a stamp host with `adjust` applied to its configuration.
async fn host(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut HostConfig),
) -> (cosell::server::RunningHost, Admin) {
    let mut config = stamp_host_config(dir);
    adjust(&mut config);
    let host = start(config).await;
    let admin = Admin::new(&host);
    (host, admin)
}

/// Signs in with `token`; answers the status, the headers and the session cookie (`name=value`).
async fn sign_in(base: &str, token: &str) -> (StatusCode, HeaderMap, Option<String>) {
    let response = client()
        .post(format!("{base}/console/sign-in"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let cookie = headers
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (response.status(), headers, cookie)
}

/// GET `path` with `cookie`.
async fn get(base: &str, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// The session's CSRF token, from the hidden field of a page's forms.
async fn csrf_of(base: &str, cookie: &str) -> String {
    let page = get(base, "/console/mappings/pc-to-crm", cookie)
        .await
        .text()
        .await
        .unwrap();
    let start = page
        .find(r#"name="_csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in\n{page}"))
        + r#"name="_csrf" value=""#.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

const BOUNDARY: &str = "console-test-boundary-7d1f";

/// A `multipart/form-data` body with `wasm` as the file field, after a `_csrf` field when
/// `csrf` is given.
fn upload_with(csrf: Option<&str>, wasm: &[u8]) -> Vec<u8> {
    let mut body = csrf
        .map(|token| {
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n{token}\r\n"
            )
        })
        .unwrap_or_default()
        .into_bytes();
    body.extend_from_slice(format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"v3.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
    ).as_bytes());
    body.extend_from_slice(wasm);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The same without the token.
fn upload(wasm: &[u8]) -> Vec<u8> {
    upload_with(None, wasm)
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn set_cookie(headers: &HeaderMap) -> String {
    headers
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_secure_only_behind_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |_| {}).await;
    let (status, headers, cookie) = sign_in(&admin.base, TOKEN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let attributes = set_cookie(&headers);
    assert!(attributes.starts_with("cosell_session="), "{attributes}");
    assert!(attributes.contains("; HttpOnly"), "{attributes}");
    assert!(attributes.contains("; SameSite=Strict"), "{attributes}");
    assert!(attributes.contains("; Path=/console"), "{attributes}");
    assert!(!attributes.contains("Secure"), "plain HTTP: {attributes}");
    // The session opens the console, whose pages load nothing from elsewhere.
    let overview = get(&admin.base, "/console/overview", &cookie.unwrap()).await;
    assert_eq!(overview.status(), StatusCode::OK);
    let csp = overview.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(overview.text().await.unwrap().contains("pc-to-crm"));

    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |c| c.admin.behind_tls = true).await;
    let (_, headers, _) = sign_in(&admin.base, TOKEN).await;
    let attributes = set_cookie(&headers);
    assert!(attributes.contains("; Secure"), "behind TLS: {attributes}");
    assert!(attributes.contains("; HttpOnly"), "{attributes}");
}

#[tokio::test]
async fn a_wrong_token_gets_no_session_and_repeated_failures_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |_| {}).await;
    let unsigned = get(&admin.base, "/console/overview", "").await;
    assert_eq!(unsigned.status(), StatusCode::SEE_OTHER);
    assert!(location(&unsigned).starts_with("/console/sign-in"));
    for wrong in [
        "",
        "not-the-token",
        &TOKEN[..TOKEN.len() - 1],
        &format!("{TOKEN}x"),
    ] {
        let (status, headers, _) = sign_in(&admin.base, wrong).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {wrong:?}");
        assert!(set_cookie(&headers).is_empty(), "token {wrong:?}");
    }
    // The fifth failure in a minute; then even the right token waits.
    let (status, _, _) = sign_in(&admin.base, "fifth-wrong-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = sign_in(&admin.base, TOKEN).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie(&headers).is_empty());
}

#[tokio::test]
async fn a_change_without_the_csrf_token_or_from_another_site_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |_| {}).await;
    let v1 = admin.active_version("pc-to-crm").await;
    let (status, _) = admin
        .deploy(
            "pc-to-crm",
            with_custom_section(&guest("testing/version_stamp.wasm"), "v", b"2"),
        )
        .await;
    assert_eq!(status, 200);
    let v2 = admin.active_version("pc-to-crm").await;
    assert_ne!(v1, v2);
    let (_, _, cookie) = sign_in(&admin.base, TOKEN).await;
    let cookie = cookie.unwrap();
    let csrf = csrf_of(&admin.base, &cookie).await;
    let rollback = format!("{}/console/mappings/pc-to-crm/rollback", admin.base);
    let post = |form: Vec<(&'static str, String)>| {
        client()
            .post(&rollback)
            .header("cookie", &cookie)
            .form(&form)
    };

    // No token, a wrong one, the right one from another site.
    let refused = [
        post(vec![("to", v1.clone())]),
        post(vec![("_csrf", "guess".into()), ("to", v1.clone())]),
        post(vec![("_csrf", String::new()), ("to", v1.clone())]),
        post(vec![("_csrf", csrf.clone()), ("to", v1.clone())])
            .header("sec-fetch-site", "cross-site"),
        post(vec![("_csrf", csrf.clone()), ("to", v1.clone())])
            .header("origin", "http://evil.example"),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let page = response.text().await.unwrap();
        assert!(page.contains("nothing was changed"), "{page}");
        assert_eq!(admin.active_version("pc-to-crm").await, v2);
    }
    // An upload without the token is refused before the file is looked at.
    let wasm = with_custom_section(&guest("testing/version_stamp.wasm"), "v", b"3");
    let response = client()
        .post(format!("{}/console/mappings/pc-to-crm/deploy", admin.base))
        .header("cookie", &cookie)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(upload(&wasm))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(admin.active_version("pc-to-crm").await, v2);
    let (_, versions) = admin.get("/admin/v1/steps/pc-to-crm/versions").await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );

    // The same form with the session's token does the change.
    let response = post(vec![("_csrf", csrf), ("to", v1.clone())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(admin.active_version("pc-to-crm").await, v1);
}

#[tokio::test]
async fn an_idle_session_expires_and_goes_back_to_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |c| c.admin.session_idle_secs = 1).await;
    let (_, _, cookie) = sign_in(&admin.base, TOKEN).await;
    let cookie = cookie.unwrap();
    assert_eq!(
        get(&admin.base, "/console/overview", &cookie)
            .await
            .status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = get(&admin.base, "/console/overview", &cookie).await;
    assert_eq!(expired.status(), StatusCode::SEE_OTHER);
    assert!(location(&expired).starts_with("/console/sign-in"));
    // A change with the expired session does nothing either.
    let v = admin.active_version("pc-to-crm").await;
    let response = client()
        .post(format!(
            "{}/console/mappings/pc-to-crm/rollback",
            admin.base
        ))
        .header("cookie", &cookie)
        .form(&[("to", "anything")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(admin.active_version("pc-to-crm").await, v);
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |_| {}).await;
    let (_, _, cookie) = sign_in(&admin.base, TOKEN).await;
    let cookie = cookie.unwrap();
    let csrf = csrf_of(&admin.base, &cookie).await;
    let response = client()
        .post(format!("{}/console/sign-out", admin.base))
        .header("cookie", &cookie)
        .form(&[("_csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(response.headers()).contains("Max-Age=0"));
    // A copy of the cookie kept by the browser (or stolen) opens nothing any more.
    let after = get(&admin.base, "/console/overview", &cookie).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert!(location(&after).starts_with("/console/sign-in"));
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |c| c.admin.console = false).await;
    let (status, _, cookie) = sign_in(&admin.base, TOKEN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(cookie.is_none());
}

#[tokio::test]
async fn an_upload_that_fails_validation_shows_why_and_the_active_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |_| {}).await;
    let active = admin.active_version("pc-to-crm").await;
    let (_, _, cookie) = sign_in(&admin.base, TOKEN).await;
    let cookie = cookie.unwrap();
    let csrf = csrf_of(&admin.base, &cookie).await;
    let deploy = |wasm: Vec<u8>| {
        client()
            .post(format!("{}/console/mappings/pc-to-crm/deploy", admin.base))
            .header("cookie", &cookie)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(upload_with(Some(&csrf), &wasm))
    };
    let response = deploy(b"not a component".to_vec()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("Deploy refused"), "{page}");
    assert!(page.contains("version refused for step"), "{page}");
    assert_eq!(admin.active_version("pc-to-crm").await, active);
    // A good one through the same form is activated, with its validation report.
    let response = deploy(with_custom_section(
        &guest("testing/version_stamp.wasm"),
        "v",
        b"console",
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("Validation report"), "{page}");
    assert_ne!(admin.active_version("pc-to-crm").await, active);
}

#[tokio::test]
async fn comparing_a_version_with_itself_shows_the_same_output_even_when_it_reads_the_call_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, admin) = host(dir.path(), |_| {}).await;
    let active = admin.active_version("pc-to-crm").await;
    let (_, _, cookie) = sign_in(&admin.base, TOKEN).await;
    let cookie = cookie.unwrap();
    // The stamp guest copies the call's timestamp (to the millisecond) into its output, and
    // each side compiles its version first: two call times would always differ.
    let page = get(
        &admin.base,
        &format!("/console/mappings/pc-to-crm/compare?a={active}&b={active}"),
        &cookie,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(page.contains("&#34;timestamp&#34;"), "{page}");
    assert!(
        page.contains("Both versions give the same output."),
        "{page}"
    );
}
