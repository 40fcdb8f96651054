//! Setting up Partner Center through the `cosell` binary against the emulators: the first
//! sign-in (`partner-center login`, the device-code flow) and its `--status`, which refresh
//! token a start uses (a changed configured token replaces the kept one; none at all names the
//! login command), and `register-webhooks` on a tenant whose one registration already holds
//! another application's events (kept, or removed with `--replace`; a POST answered 409 takes
//! the same path).

mod support;

use cosell::store::prelude::*;
use support::commands_env::CommandsEnv;

use cosell::connections::partner_center::PartnerCenterClient;
use cosell::connections::partner_center::webhooks::WebhookRegistration;
use cosell::setup::register_partner_center_webhooks;
use cosell::store::SyncStore;
use cosell::store::sqlite::SqliteStore;
use cosell_emulators::partner_center::PartnerCenterConfig;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::partner_center_settings;

const BOUND: Duration = Duration::from_secs(120);
const OUR_HOOK: &str = "http://127.0.0.1:9/webhooks/partner-center";

struct Setup(CommandsEnv);

impl std::ops::Deref for Setup {
    type Target = CommandsEnv;
    fn deref(&self) -> &CommandsEnv {
        &self.0
    }
}

impl Setup {
    /// Both emulators and a host configuration for them (no host runs: only commands).
    async fn start() -> Setup {
        Setup(
            CommandsEnv::start(PartnerCenterConfig {
                device_code_interval: Duration::from_secs(1),
                ..PartnerCenterConfig::default()
            })
            .await,
        )
    }

    /// Removes `[partner_center] refresh_token` from the configuration.
    fn drop_configured_refresh_token(&self) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("refresh_token ="))
            .collect();
        std::fs::write(&self.config, kept.join("\n")).unwrap();
    }

    /// The file `[partner_center] refresh_token` names.
    fn refresh_token_file(&self) -> PathBuf {
        self.config
            .parent()
            .unwrap()
            .join("secrets/partner-center-refresh-token")
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.config.parent().unwrap().join("cosell.db")).unwrap()
    }

    fn cosell(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cosell"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("cosell runs")
    }

    /// The registration as the emulator holds it: URL and events.
    fn registration(&self) -> (String, Vec<String>) {
        let r = self.pc.webhooks().registration().expect("a registration");
        (r.webhook_url, r.webhook_events)
    }

    fn client(&self) -> PartnerCenterClient {
        PartnerCenterClient::new(partner_center_settings(&self.pc, &self.pc_server)).unwrap()
    }

    /// Another application's registration of the tenant.
    async fn register_other_application(&self) {
        self.client()
            .replace_webhook_registration(&WebhookRegistration {
                url: "https://billing.example/hooks".into(),
                events: vec!["subscription-updated".into(), "referral-created".into()],
                signature_in_ms_header: false,
            })
            .await
            .expect("the other application registers");
    }

    /// `cosell partner-center login`, completed in the "browser" as `user` (or declined).
    async fn login(&self, user: Option<&str>) -> Output {
        let child = Command::new(env!("CARGO_BIN_EXE_cosell"))
            .args(["partner-center", "login", "--config"])
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cosell login starts");
        let http = reqwest::Client::new();
        let control = format!("{}/_emulator/device-codes", self.pc_server.url());
        let mut code = None;
        for _ in 0..200 {
            let pending: Value = http
                .get(&control)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(c) = pending[0]["user_code"].as_str() {
                code = Some(c.to_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let code = code.expect("the login started a device-code sign-in");
        let decision = match user {
            Some(user) => http
                .post(format!("{control}/{code}/approve"))
                .json(&json!({ "user": user })),
            None => http.post(format!("{control}/{code}/deny")),
        };
        assert!(decision.send().await.unwrap().status().is_success());
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(BOUND, test).await.expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_webhooks_keeps_other_applications_events_and_replace_removes_them() {
    bounded(async {
        let setup = Setup::start().await;
        setup.register_other_application().await;

        let merged = setup.cosell(&["partner-center", "register-webhooks", "--url", OUR_HOOK]);
        let stderr = text(&merged.stderr);
        assert!(merged.status.success(), "{stderr}");
        assert!(
            stderr.contains("subscription-updated") && stderr.contains("kept"),
            "says what it kept: {stderr}"
        );
        let (url, events) = setup.registration();
        assert_eq!(url, OUR_HOOK);
        for event in [
            "referral-created",
            "referral-updated",
            "related-referral-created",
            "related-referral-updated",
            "subscription-updated",
        ] {
            assert!(events.iter().any(|e| e == event), "{event} in {events:?}");
        }

        let replaced = setup.cosell(&[
            "partner-center",
            "register-webhooks",
            "--url",
            OUR_HOOK,
            "--replace",
        ]);
        let stderr = text(&replaced.stderr);
        assert!(replaced.status.success(), "{stderr}");
        assert!(
            stderr.contains("removed subscription-updated"),
            "says what it removes: {stderr}"
        );
        let (_, events) = setup.registration();
        assert!(
            !events.iter().any(|e| e == "subscription-updated"),
            "{events:?}"
        );
        assert_eq!(events.len(), 4, "{events:?}");
        setup.0.pc_server.stop().await;
    })
    .await;
}

/// A registration that appears between the read and the POST (409) is merged, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answered_409_takes_the_merge_path() {
    bounded(async {
        let puts: Arc<Mutex<Vec<Value>>> = Arc::default();
        let gets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (put_log, get_count) = (puts.clone(), gets.clone());
        let app = axum::Router::new()
            .route(
                "/tenant/oauth2/token",
                axum::routing::post(|| async {
                    axum::Json(
                        json!({"access_token": "at", "expires_in": 3600, "refresh_token": "rt2"}),
                    )
                }),
            )
            .route(
                "/webhooks/v1/registration",
                axum::routing::get(move || {
                    let n = get_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({})))
                        } else {
                            (
                                axum::http::StatusCode::OK,
                                axum::Json(json!({"WebhookUrl": "https://other.example/h",
                                                  "WebhookEvents": ["invoice-ready"]})),
                            )
                        }
                    }
                })
                .post(|| async {
                    (
                        axum::http::StatusCode::CONFLICT,
                        axum::Json(json!({"code": 409, "description": "already registered"})),
                    )
                })
                .put(move |axum::Json(body): axum::Json<Value>| {
                    put_log.lock().unwrap().push(body.clone());
                    async move { axum::Json(body) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client =
            PartnerCenterClient::new(cosell::connections::partner_center::PartnerCenterSettings {
                base_url: url.clone(),
                webhooks_url: url.clone(),
                token_url: format!("{url}/tenant/oauth2/token"),
                client_id: "client".into(),
                client_secret: cosell::config::Secret::new("secret"),
                refresh_token: cosell::config::Secret::new("rt1"),
                timeout: Duration::from_secs(5),
                max_retries: 1,
                sign_in_command: "cosell partner-center login --config c.toml".into(),
            })
            .unwrap();
        let said = Mutex::new(Vec::new());
        let outcome = register_partner_center_webhooks(&client, OUR_HOOK, false, false, |note| {
            said.lock().unwrap().push(note.to_owned())
        })
        .await
        .expect("merged after the 409");
        assert_eq!(outcome.kept, vec!["invoice-ready".to_owned()]);
        assert!(
            said.lock()
                .unwrap()
                .iter()
                .any(|n| n.contains("invoice-ready")),
            "says what it keeps"
        );
        let puts = puts.lock().unwrap().clone();
        assert_eq!(puts.len(), 1, "{puts:?}");
        assert_eq!(puts[0]["WebhookUrl"], OUR_HOOK);
        let events = puts[0]["WebhookEvents"].as_array().unwrap();
        assert!(events.contains(&json!("invoice-ready")), "{events:?}");
        assert!(events.contains(&json!("referral-updated")), "{events:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_keeps_a_named_users_sign_in_that_the_commands_then_use() {
    bounded(async {
        let setup = Setup::start().await;
        setup.drop_configured_refresh_token();

        // Neither a configured nor a kept token: the error names the command that fixes it.
        let none = setup.cosell(&["partner-center", "register-webhooks", "--url", OUR_HOOK]);
        assert!(!none.status.success());
        let expected = format!(
            "cosell partner-center login --config {}",
            setup.config.display()
        );
        assert!(
            text(&none.stderr).contains(&expected),
            "{}",
            text(&none.stderr)
        );
        // The host refuses to start, saying the same.
        let serve = Command::new(env!("CARGO_BIN_EXE_cosell"))
            .args(["serve", "--config"])
            .arg(&setup.config)
            .env(
                "COSELL_ADMIN_TOKEN",
                "setup-test-admin-token-9c4e1a7b2d5f8e30",
            )
            .output()
            .expect("cosell serve runs");
        assert!(!serve.status.success());
        assert!(
            text(&serve.stderr).contains(&expected),
            "{}",
            text(&serve.stderr)
        );

        let declined = setup.login(None).await;
        assert!(!declined.status.success());
        assert!(
            text(&declined.stderr).contains("declined"),
            "{}",
            text(&declined.stderr)
        );

        let login = setup.login(Some("alice@contoso.example")).await;
        let stdout = text(&login.stdout);
        assert!(login.status.success(), "{stdout}{}", text(&login.stderr));
        assert!(
            stdout.contains("enter the code"),
            "the sign-in message: {stdout}"
        );
        assert!(stdout.contains("alice@contoso.example"), "{stdout}");

        let status = setup.cosell(&["partner-center", "login", "--status"]);
        let shown = text(&status.stdout);
        assert!(status.status.success(), "{shown}");
        assert!(shown.contains("alice@contoso.example"), "{shown}");
        assert!(shown.contains("last refreshed: never"), "{shown}");

        // The kept sign-in works without [partner_center] refresh_token.
        let registered = setup.cosell(&["partner-center", "register-webhooks", "--url", OUR_HOOK]);
        assert!(registered.status.success(), "{}", text(&registered.stderr));
        let status = setup.cosell(&["partner-center", "login", "--status"]);
        let shown = text(&status.stdout);
        assert!(
            !shown.contains("last refreshed: never"),
            "refreshed since: {shown}"
        );
        assert!(shown.contains("alice@contoso.example"), "{shown}");
        for token in setup.pc.tokens().issued().refresh {
            assert!(!shown.contains(&token), "the status never shows a token");
        }
        setup.0.pc_server.stop().await;
    })
    .await;
}

/// Puts `token` where `[partner_center] refresh_token` points.
fn configure_refresh_token(setup: &Setup, token: &str) {
    std::fs::write(setup.refresh_token_file(), token).unwrap();
}

fn keep_refresh_token(store: &dyn SyncStore, token: &str) {
    store
        .set_credential("partner-center-refresh-token", token)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_configured_refresh_token_replaces_a_stale_kept_one() {
    bounded(async {
        let setup = Setup::start().await;
        let register = || setup.cosell(&["partner-center", "register-webhooks", "--url", OUR_HOOK]);
        let first = register();
        assert!(first.status.success(), "{}", text(&first.stderr));
        // The kept token is revoked (simulated: replaced by one the tenant never issued).
        keep_refresh_token(&setup.store(), "rt-revoked");
        let stale = register();
        assert!(!stale.status.success());
        let stderr = text(&stale.stderr);
        assert!(
            stderr.contains(&format!(
                "cosell partner-center login --config {}",
                setup.config.display()
            )),
            "{stderr}"
        );
        assert!(
            !stderr.contains("rt-revoked"),
            "the token is not echoed: {stderr}"
        );
        // The operator puts a new token in the configuration: it wins over the kept one.
        configure_refresh_token(&setup, &setup.pc.refresh_token());
        let fresh = register();
        assert!(fresh.status.success(), "{}", text(&fresh.stderr));
        // The state records only a hash of the configured value, never the value again.
        let record = setup
            .store()
            .credential("partner-center-sign-in")
            .unwrap()
            .unwrap();
        let configured = std::fs::read_to_string(setup.refresh_token_file()).unwrap();
        assert!(!record.contains(&configured), "{record}");
        setup.0.pc_server.stop().await;
    })
    .await;
}
