//! The web console in a real browser: headless Chromium driven through chromedriver
//! (WebDriver), against a real `cosell serve` syncing the two emulators. An operator signs in
//! (a wrong token is refused), sees the steps, deploys a `.wasm` through the upload form,
//! compares two versions, is refused a rollback whose form lost its CSRF token, rolls back,
//! previews a pipeline, replays a dead letter, searches the audit trail and signs out; each
//! step is checked against the host's JSON API.
//!
//! Needs Debian's `chromium` and `chromium-driver` (the test fails, saying so, without them).
//! With `COSELL_CONSOLE_SCREENSHOTS=<dir>` (relative to the repository) it saves a PNG of
//! each page there; docs/console.md shows them.

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt as _;
use serde_json::json;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::backend::Backend;
use support::sync_env::{SyncEnv, wait_until};
use support::{TOKEN, guest, repo_root, with_custom_section};

/// How long a page may take to show what the test waits for.
const PAGE: Duration = Duration::from_secs(30);

/// The first of `candidates` that exists (an environment variable may name another).
fn binary(variable: &str, candidates: &[&str]) -> PathBuf {
    let found = std::env::var_os(variable)
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates.iter().map(PathBuf::from))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "the console's browser test needs headless Chromium and chromedriver: install them \
             with `apt-get install chromium chromium-driver` (Debian), or name them with \
             COSELL_CHROMIUM and COSELL_CHROMEDRIVER (looked for {variable} and {candidates:?})"
        )
    })
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    /// The browser's profile, deleted with the driver.
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Self {
        let chromedriver = binary("COSELL_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let port = support::free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().unwrap(),
        }
    }

    /// A headless Chromium session (retried while chromedriver starts listening).
    async fn session(&self) -> Client {
        let chromium = binary(
            "COSELL_CHROMIUM",
            &["/usr/lib/chromium/chromium", "/usr/bin/chromium"],
        );
        let profile = self.profile.path();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1024,768",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&self.url)
                .await
            {
                Ok(client) => return client,
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no session from chromedriver at {}: {last:?}", self.url)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves a screenshot of the page as `<name>.png` when COSELL_CONSOLE_SCREENSHOTS names a
/// directory.
async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("COSELL_CONSOLE_SCREENSHOTS") else {
        return;
    };
    let dir = repo_root().join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    match client
        .wait()
        .at_most(PAGE)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(err) => panic!(
            "no `{css}` on {:?} ({err}):\n{}",
            client.current_url().await.map(|u| u.to_string()),
            client.source().await.unwrap_or_default()
        ),
    }
}

/// Waits until the browser is on a page whose URL (path and query) contains `part`.
async fn wait_url(client: &Client, part: &str) {
    for _ in 0..300 {
        let url = client.current_url().await.unwrap();
        if url.as_str().contains(part) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the browser never reached a URL with `{part}`: {:?}",
        client.current_url().await.map(|u| u.to_string())
    );
}

/// Follows a link of the navigation bar.
async fn nav(client: &Client, path: &str) {
    click(client, &format!("nav a[href='{path}']")).await;
    wait_url(client, path).await;
}

async fn click(client: &Client, css: &str) {
    wait_for(client, css).await.click().await.unwrap();
}

async fn text(client: &Client, css: &str) -> String {
    wait_for(client, css).await.text().await.unwrap()
}

/// The text of `css` once it contains `needle`, for an element the page being left has too:
/// after a form is submitted, the old page may still answer, or its element go stale while it
/// is read. Answers the last text seen when `needle` does not show within [`PAGE`].
async fn text_containing(client: &Client, css: &str, needle: &str) -> String {
    let started = std::time::Instant::now();
    let mut last = String::new();
    while started.elapsed() < PAGE {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if text.contains(needle) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_host_from_the_console() {
    let options = support::sync_env::Options {
        extra: "[sync]\nmax_attempts = 2\nretry_base_ms = 200\n".into(),
        backend: Backend::Sqlite,
        bound: Duration::from_secs(240),
        ..Default::default()
    };
    SyncEnv::run_with(options, |env| async move {
        let driver = Driver::start();
        let client = driver.session().await;
        let outcome = AssertUnwindSafe(walk_through(&env, &client))
            .catch_unwind()
            .await;
        let _ = client.close().await;
        drop(driver);
        if let Err(panic) = outcome {
            eprintln!("host log:\n{}", env.host_log());
            std::panic::resume_unwind(panic);
        }
    })
    .await;
}

async fn walk_through(env: &SyncEnv, client: &Client) {
    let base = &env.admin_url;
    // A dead letter in the making: Partner Center throttles every call, so the opportunity's
    // create fails both attempts (see sync_flows' dead-letter test).
    env.throttle_partner_center_every_call();
    let currency = env.currency_id("EUR").await;
    let oid = support::seller::creates_opportunity(
        env,
        "Console dead letter",
        "98052",
        json!({"transactioncurrencyid@odata.bind": format!("/transactioncurrencies({currency})")}),
    )
    .await;

    // A wrong token is refused.
    client
        .goto(&format!("{base}/console/sign-in"))
        .await
        .unwrap();
    wait_for(client, "#token")
        .await
        .send_keys("not-the-admin-token")
        .await
        .unwrap();
    click(client, "#sign-in button").await;
    assert!(
        text(client, "#message")
            .await
            .contains("not the admin token"),
        "{}",
        client.source().await.unwrap()
    );
    screenshot(client, "sign-in").await;

    // The right one opens the overview.
    wait_for(client, "#token")
        .await
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(client, "#sign-in button").await;
    wait_url(client, "/console/overview").await;
    wait_for(client, "#services").await;
    let steps = text(client, "#steps").await;
    assert!(steps.contains("referral-to-opportunity"), "{steps}");
    assert!(steps.contains("opportunity-to-referral"), "{steps}");

    // Mappings: the steps, then one step's versions.
    nav(client, "/console/mappings").await;
    let steps = text(client, "#steps").await;
    assert!(steps.contains("referral-to-opportunity"), "{steps}");
    screenshot(client, "mappings").await;
    let step = "referral-to-opportunity";
    let api = support::Admin {
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    let v1 = api.active_version(step).await;
    click(
        client,
        &format!("a.step-link[href='/console/mappings/{step}']"),
    )
    .await;
    wait_for(client, "#versions").await;

    // Deploy a new version through the upload form.
    let upload = env.dir.path().join("referral_to_opportunity-v2.wasm");
    std::fs::write(
        &upload,
        with_custom_section(&guest("referral_to_opportunity.wasm"), "console", b"v2"),
    )
    .unwrap();
    wait_for(client, "#wasm")
        .await
        .send_keys(upload.to_str().unwrap())
        .await
        .unwrap();
    click(client, "#deploy button").await;
    let status = text(client, "#report-status").await;
    assert_eq!(status, "Activated", "{}", client.source().await.unwrap());
    assert_eq!(text(client, "#report-sample").await, "ok");
    let v2 = api.active_version(step).await;
    assert_ne!(v1, v2, "the upload did not change the active version");
    screenshot(client, "deploy").await;

    // The sample record through both versions, side by side.
    client
        .goto(&format!("{base}/console/mappings/{step}"))
        .await
        .unwrap();
    click(client, "#compare button").await;
    let summary = text(client, "#compare-summary").await;
    assert!(summary.contains("same output"), "{summary}");
    assert_eq!(
        client
            .find_all(Locator::Css("pre.output"))
            .await
            .unwrap()
            .len(),
        2
    );
    screenshot(client, "compare").await;

    // The rollback form without its CSRF token (as a forged form would come) is refused
    // and changes nothing.
    client
        .goto(&format!("{base}/console/mappings/{step}"))
        .await
        .unwrap();
    wait_for(client, "#rollback").await;
    client
        .execute(
            "document.querySelector('#rollback').form.querySelector('input[name=_csrf]').remove()",
            vec![],
        )
        .await
        .unwrap();
    click(client, "#rollback").await;
    let refused = text_containing(client, "main", "Refused").await;
    assert!(refused.contains("Refused"), "{refused}");
    assert_eq!(
        api.active_version(step).await,
        v2,
        "a refused form changes nothing"
    );

    // Roll back to the version before.
    client
        .goto(&format!("{base}/console/mappings/{step}"))
        .await
        .unwrap();
    click(client, "#rollback").await;
    assert_eq!(text(client, "#report-status").await, "Activated");
    assert_eq!(api.active_version(step).await, v1);

    // Preview the built-in sample referral.
    nav(client, "/console/preview").await;
    click(client, "#preview button").await;
    let output = text(client, "#output").await;
    assert!(output.contains('{'), "{output}");
    screenshot(client, "preview").await;

    // The dead letter: listed, replayed once Partner Center answers again.
    let listed = wait_until(Duration::from_secs(90), || async {
        let (_, body) = api.get("/admin/v1/dead-letters").await;
        body["dead_letters"]
            .as_array()
            .is_some_and(|l| l.iter().any(|d| d["record_id"] == oid.as_str()))
            .then_some(())
    })
    .await;
    assert!(listed.is_some(), "no dead letter for {oid}");
    env.pc
        .faults()
        .set(Default::default())
        .expect("valid faults");
    nav(client, "/console/dead-letters").await;
    let letters = text(client, "#dead-letters").await;
    assert!(letters.contains(&oid), "{letters}");
    screenshot(client, "dead-letters").await;
    click(client, "#dead-letters button.replay").await;
    let flash = text(client, "#flash").await;
    assert!(flash.contains("1 dead letter(s) queued again"), "{flash}");
    env.wait_opportunity(&oid, "the referral after the replay", |o| {
        o["cosell_referralidentifier"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    })
    .await;

    // The audit trail of that opportunity shows the dead letter.
    nav(client, "/console/audit").await;
    wait_for(client, "#audit-search input[name=record]")
        .await
        .send_keys(&format!("opportunity:{oid}"))
        .await
        .unwrap();
    click(client, "#audit-search button").await;
    wait_url(client, "record=opportunity").await;
    let trail = text(client, "#audit").await;
    assert!(trail.contains("dead-letter"), "{trail}");
    assert!(trail.contains("created"), "{trail}");
    // Narrowed to one outcome, only its lines are left.
    wait_for(client, "#audit-search select[name=outcome]")
        .await
        .select_by_value("dead-letter")
        .await
        .unwrap();
    click(client, "#audit-search button").await;
    wait_url(client, "outcome=dead-letter").await;
    let rows = client
        .find_all(Locator::Css("#audit tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{}", text(client, "#audit").await);
    assert_eq!(
        rows[0].attr("class").await.unwrap().as_deref(),
        Some("outcome-dead-letter")
    );
    screenshot(client, "audit").await;

    // Preview on a recent record: the opportunity as it was last synced.
    nav(client, "/console/preview").await;
    click(
        client,
        &format!("a[href='/console/preview?record=opportunity%3A{oid}']"),
    )
    .await;
    wait_url(client, "record=opportunity").await;
    let direction = wait_for(client, "#direction")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(direction.as_deref(), Some("crm-to-partner-center"));
    let document = wait_for(client, "#document")
        .await
        .prop("value")
        .await
        .unwrap();
    assert!(document.unwrap_or_default().contains(&oid));
    click(client, "#preview button").await;
    wait_for(client, "#output, #stopped").await;

    // The overview reads the queue from the host's metrics (a syncing host has them all).
    nav(client, "/console/overview").await;
    for stat in ["pending", "running", "dead"] {
        let value = text(client, &format!("#stat-{stat} .value")).await;
        assert!(value.parse::<u64>().is_ok(), "{stat}: {value:?}");
    }
    screenshot(client, "overview").await;

    // Signing out ends the session: the console asks to sign in again.
    click(client, "#sign-out").await;
    assert!(text(client, "#message").await.contains("signed out"));
    client
        .goto(&format!("{base}/console/overview"))
        .await
        .unwrap();
    wait_url(client, "/console/sign-in").await;
    wait_for(client, "#sign-in").await;
}
