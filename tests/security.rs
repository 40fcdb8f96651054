//! The security promises of issue 5, each proved against running hosts and printing its figures:
//!
//! - the admin API refuses every request without exactly the token (no header, another scheme,
//!   a prefix, an extension, the token in the query string) with the same 401, on every admin
//!   route, and listens on loopback unless `admin.allow_remote` says otherwise;
//! - no secret (client secrets, refresh and access tokens the emulators issued, the Dataverse
//!   webhook key, the admin token, wrong secrets an operator tried) appears in the host's log at
//!   trace level, in any CLI output or error, in the admin API's answers, in the audit trail,
//!   queue or dead letters in the state database, or in the records cosell wrote;
//! - a WASI guest deployed into a running host finds none of the host's files, environment
//!   variables, network or secrets;
//! - access tokens that expire while records flow both ways are refreshed, and every record
//!   still syncs exactly once.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::seller;
use support::sync_env::{SyncEnv, wait_until};
use support::{TOKEN, guest, start, start_stamp_host, with_custom_section};

/// Everything the host logs, minus the code generator's chatter (it logs no secrets and would
/// only make the log huge).
const FULL_LOG: &str = "trace,cranelift=info,wasmtime=info,regalloc2=info,wit_component=info,wit_parser=info,wasmparser=info";

// ---------------------------------------------------------------------------------------------
// Records, as the seller and the Microsoft seller create them.

/// A new opportunity with Sync = Yes; `extra` columns are set (or removed with `null`).
async fn new_opportunity(env: &SyncEnv, name: &str, postal: u32, extra: Value) -> String {
    seller::creates_opportunity(env, name, &format!("{postal:05}"), extra).await
}

/// A referral from a Microsoft seller; answers its id.
fn incoming_referral(env: &SyncEnv, name: &str, postal: u32) -> String {
    let referral = env.pc.microsoft().create_incoming(json!({
        "name": name,
        "customerProfile": {"name": format!("{name} Ltd"), "address": {"postalCode": format!("{postal:05}"), "country": "US"}},
        "details": {"dealValue": 10000, "currency": "USD"}
    }));
    referral["id"].as_str().unwrap().to_owned()
}

fn referral_id_of(opportunity: &Value) -> Option<String> {
    opportunity["cosell_referralidentifier"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Waits up to `limit` for `probe` to answer `Some`; panics with `what` and the host log
/// otherwise.
async fn poll<T, F, Fut>(env: &SyncEnv, limit: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match wait_until(limit, probe).await {
        Some(value) => value,
        None => panic!(
            "timed out waiting for {what}\nhost log:\n{}",
            tail(&env.host_log(), 60)
        ),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The `cosell` binary, with everything it prints kept.

/// What one `cosell` command printed.
struct Run {
    what: String,
    success: bool,
    text: String,
}

/// Runs `cosell args` with `envs`, logging at trace level; keeps stdout and stderr.
fn cosell(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cosell"));
    command
        .args(args)
        .env("COSELL_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", FULL_LOG)
        .stdin(Stdio::null());
    for (k, v) in envs {
        command.env(k, v);
    }
    let output = command.output().expect("cosell runs");
    Run {
        what: format!("cosell {}", args.join(" ")),
        success: output.status.success(),
        text: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The admin API.

/// One admin route and a body that would change something if it got through.
struct Route {
    method: reqwest::Method,
    path: &'static str,
    body: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_every_request_without_exactly_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = start_stamp_host(dir.path()).await;
    let active = admin.active_version("pc-to-crm").await;
    let new_version = with_custom_section(
        &guest("testing/version_stamp.wasm"),
        "security",
        b"not deployed",
    );
    let json_body = |v: Value| v.to_string().into_bytes();
    use reqwest::Method;
    let routes = [
        Route {
            method: Method::GET,
            path: "/admin/v1/steps",
            body: vec![],
        },
        Route {
            method: Method::GET,
            path: "/admin/v1/steps/pc-to-crm/versions",
            body: vec![],
        },
        Route {
            method: Method::POST,
            path: "/admin/v1/steps/pc-to-crm/versions",
            body: new_version.clone(),
        },
        Route {
            method: Method::POST,
            path: "/admin/v1/steps/pc-to-crm/rollback",
            body: json_body(json!({"to": null})),
        },
        Route {
            method: Method::POST,
            path: "/admin/v1/pipelines/partner-center-to-crm/run",
            body: json_body(json!({"document": {"x": 1}})),
        },
        Route {
            method: Method::GET,
            path: "/admin/v1/queue",
            body: vec![],
        },
        Route {
            method: Method::GET,
            path: "/admin/v1/dead-letters",
            body: vec![],
        },
        Route {
            method: Method::POST,
            path: "/admin/v1/dead-letters/replay",
            body: json_body(json!({"all": true})),
        },
        Route {
            method: Method::GET,
            path: "/admin/v1/audit",
            body: vec![],
        },
    ];
    let prefix = &TOKEN[..TOKEN.len() - 1];
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{TOKEN}"))
    };
    // (what, Authorization header, query string)
    let header = |what: &'static str, value: String| (what, Some(value), String::new());
    let attempts: Vec<(&str, Option<String>, String)> = vec![
        ("no Authorization header", None, String::new()),
        header("an empty bearer token", "Bearer ".into()),
        header("another token", "Bearer not-the-admin-token".into()),
        header("the token without a scheme", TOKEN.into()),
        header("the token as Basic credentials", format!("Basic {basic}")),
        header("the token under another scheme", format!("Token {TOKEN}")),
        header(
            "the token without its last byte",
            format!("Bearer {prefix}"),
        ),
        header("the token's first byte", format!("Bearer {}", &TOKEN[..1])),
        header("the token and one byte more", format!("Bearer {TOKEN}x")),
        header("the token twice", format!("Bearer {TOKEN} {TOKEN}")),
        header(
            "the token upper-cased",
            format!("Bearer {}", TOKEN.to_uppercase()),
        ),
        // What some APIs accept; the admin API does not.
        (
            "the token in the query string",
            None,
            format!("?access_token={TOKEN}"),
        ),
    ];
    let http = reqwest::Client::new();
    let mut refused = 0;
    let mut bodies = std::collections::BTreeSet::new();
    for route in &routes {
        for (what, authorization, query) in &attempts {
            let mut request = http
                .request(
                    route.method.clone(),
                    format!("{}{}{query}", admin.base, route.path),
                )
                .header("content-type", "application/json")
                .body(route.body.clone());
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = response.text().await.unwrap();
            assert_eq!(
                status, 401,
                "{} {} with {what} was not refused: {body}",
                route.method, route.path
            );
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{what}");
            assert!(!body.contains(TOKEN), "{what}: the answer shows the token");
            bodies.insert(body);
            refused += 1;
        }
    }
    // Every refusal is the same answer: it says nothing about how close a guess was.
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    // Nothing got through: no version was stored or activated.
    let (_, versions) = admin.get("/admin/v1/steps/pc-to-crm/versions").await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    assert_eq!(admin.active_version("pc-to-crm").await, active);

    // With the token (the scheme is case-insensitive, RFC 7235), every route answers.
    let mut accepted = 0;
    for (i, route) in routes.iter().enumerate() {
        let scheme = if i % 2 == 0 { "Bearer" } else { "bearer" };
        let response = http
            .request(
                route.method.clone(),
                format!("{}{}", admin.base, route.path),
            )
            .header("authorization", format!("{scheme} {TOKEN}"))
            .header("content-type", "application/json")
            .body(route.body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        // The sync routes answer 404 on a host that does not sync; none answers 401.
        assert!(
            status != 401 && status < 500,
            "{} {} with the token: {status} {}",
            route.method,
            route.path,
            response.text().await.unwrap()
        );
        accepted += 1;
    }
    // The deploy with the token went through (and the rollback after it too).
    let (_, versions) = admin.get("/admin/v1/steps/pc-to-crm/versions").await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );

    // /healthz and /metrics are open (for probes and Prometheus) and carry no secret.
    for path in ["/healthz", "/metrics"] {
        let response = http
            .get(format!("{}{path}", admin.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(!response.text().await.unwrap().contains(TOKEN), "{path}");
    }
    drop(host);
    println!(
        "admin API: {refused} requests refused with 401 ({} routes x {} wrong credentials, one identical body), {accepted} accepted with the token, /healthz and /metrics open without it; 0 versions deployed without the token",
        routes.len(),
        attempts.len()
    );
}

/// A minimal configuration serving one step, its admin API on `listen` (plus `admin_extra`).
fn config_listening_on(dir: &Path, listen: &str, admin_extra: &str) -> std::path::PathBuf {
    let stamp = support::guest_path("testing/version_stamp.wasm");
    let text = format!(
        "[admin]\nlisten = \"{listen}\"\n{admin_extra}\n[state]\npath = \"{}\"\n\n[[pipelines.partner-center-to-crm]]\nstep = \"pc-to-crm\"\ncomponent = \"{}\"\n",
        dir.join("state.db").display(),
        stamp.display()
    );
    let path = dir.join(format!(
        "cosell-{}.toml",
        listen.replace([':', '[', ']'], "_")
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_listens_on_loopback_unless_remote_access_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut refused = 0;
    for listen in ["0.0.0.0:0", "[::]:0"] {
        // `cosell serve` refuses to start, and says what to do.
        let config = config_listening_on(dir.path(), listen, "");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cosell"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("COSELL_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let exited = wait_until(Duration::from_secs(30), || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await;
        let Some(status) = exited else {
            let _ = child.kill();
            panic!("cosell serve started on {listen} without admin.allow_remote");
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{listen}: {stderr}");
        assert!(
            stderr.contains("not a loopback address") && stderr.contains("admin.allow_remote"),
            "{listen}: {stderr}"
        );
        refused += 1;
        // With the key, the file is accepted (not started here: tests stay on loopback).
        let allowed = config_listening_on(dir.path(), listen, "allow_remote = true");
        cosell::config::HostConfig::load(&allowed).unwrap();
    }
    // A configuration built in code is held to the same rule by the server itself.
    let mut config =
        cosell::config::HostConfig::load(&config_listening_on(dir.path(), "127.0.0.1:0", ""))
            .unwrap();
    config.admin.listen = "0.0.0.0:0".parse().unwrap();
    let err = cosell::server::start(config.clone(), cosell::config::Secret::new(TOKEN))
        .await
        .err()
        .expect("the server refuses a non-loopback admin address");
    assert!(format!("{err:#}").contains("admin.allow_remote"), "{err:#}");
    refused += 1;
    // The default is loopback.
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    let host = start(config).await;
    assert!(host.admin_addr.ip().is_loopback());
    println!(
        "admin bind: {refused} non-loopback binds refused (2 by `cosell serve`, 1 by the server for a config built in code), allowed only with admin.allow_remote = true; loopback served at {}",
        host.admin_addr
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets in a full run.

/// Every secret of a run: (what, value).
fn secrets_of(env: &SyncEnv, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut secrets: Vec<(String, String)> = vec![
        ("admin token".into(), TOKEN.into()),
        (
            "Partner Center client secret".into(),
            env.pc.config().client_secret.clone(),
        ),
        (
            "Dataverse client secret".into(),
            env.dv.config().client_secret.clone(),
        ),
        (
            "Dataverse webhook key".into(),
            std::fs::read_to_string(env.dir.path().join("secrets/dataverse-webhook-key"))
                .unwrap()
                .trim()
                .to_owned(),
        ),
    ];
    let pc = env.pc.tokens().issued();
    let dv = env.dv.tokens().issued();
    for (i, t) in pc.access.iter().enumerate() {
        secrets.push((format!("Partner Center access token #{i}"), t.clone()));
    }
    for (i, t) in pc.refresh.iter().enumerate() {
        secrets.push((format!("Partner Center refresh token #{i}"), t.clone()));
    }
    for (i, t) in dv.access.iter().enumerate() {
        secrets.push((format!("Dataverse access token #{i}"), t.clone()));
    }
    for (what, value) in extra {
        secrets.push((what.to_string(), value.to_string()));
    }
    for (what, value) in &secrets {
        assert!(value.len() >= 8, "{what} is too short to grep for: {value}");
    }
    secrets
}

/// Every (place, secret) pair where a secret shows.
fn leaks(places: &[(String, String)], secrets: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (place, text) in places {
        for (what, value) in secrets {
            if text.contains(value.as_str()) {
                found.push(format!("{what} in {place}"));
            }
        }
    }
    found
}

/// The state database as text: every table but `credentials` (which holds the rotated
/// refresh token on purpose) and the stored components.
fn state_database_text(db: &Path) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for table in tables {
        if table == "credentials" || table == "mapping_versions" {
            continue;
        }
        let mut statement = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns = statement.column_count();
        let mut text = String::new();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                let value: rusqlite::types::Value = row.get(i).unwrap();
                text.push_str(&format!("{value:?}\t"));
            }
            text.push('\n');
        }
        out.push((format!("state database table {table}"), text));
    }
    out
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_errors_answers_or_the_audit_trail_of_a_full_run() {
    tokio::time::timeout(Duration::from_secs(280), full_run())
        .await
        .expect("the full run finished within its bound");
}

async fn full_run() {
    let started = Instant::now();
    // Webhooks only (no pollers): every CRM change reaches the host through the webhook key.
    let mut env =
        SyncEnv::start_polling_every("[sync]\nmax_attempts = 2\nretry_base_ms = 200\n", 0).await;
    let dir = env.dir.path().to_path_buf();
    let config = env.config_path.to_str().unwrap().to_owned();
    let mut places: Vec<(String, String)> = Vec::new();
    let keep = |run: Run, places: &mut Vec<(String, String)>| {
        places.push((run.what, run.text));
    };

    // Dataverse now authenticates its deliveries with a webhook key in the query string
    // (`?code=`), the kind a logged URL would leak; and Partner Center calls give up after one
    // retry, so a dead letter comes within seconds.
    env.kill_host();
    std::fs::rename(dir.join("host.log"), dir.join("host-setup.log")).unwrap();
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text
        .replace("kind = \"http-header\"", "kind = \"webhook-key\"")
        .replace("[partner_center]\n", "[partner_center]\nmax_retries = 1\n");
    std::fs::write(&env.config_path, text).unwrap();
    let dv_hook = format!("{}/webhooks/dataverse", env.webhooks_url);
    let pc_hook = format!("{}/webhooks/partner-center", env.webhooks_url);
    let run = cosell(
        &[
            "dataverse",
            "register-webhook",
            "--url",
            &dv_hook,
            "--config",
            &config,
        ],
        &[],
    );
    assert!(run.success, "{}", run.text);
    keep(run, &mut places);
    env.start_host_logging(FULL_LOG).await;

    // Flow 1 and 2: an opportunity becomes a referral; its change is patched onto it.
    let oid = new_opportunity(&env, "Security rollout", 101, json!({})).await;
    let rid = poll(
        &env,
        Duration::from_secs(20),
        "the referral of the opportunity",
        || async { referral_id_of(&env.opportunity(&oid).await) },
    )
    .await;
    env.seller
        .update(
            "opportunities",
            &oid,
            &json!({"estimatedvalue": 31000}),
            None,
        )
        .await
        .unwrap();
    poll(
        &env,
        Duration::from_secs(20),
        "the patched deal value",
        || async {
            env.pc
                .referral(&rid)
                .is_some_and(|r| r["details"]["dealValue"].as_f64() == Some(31000.0))
                .then_some(())
        },
    )
    .await;

    // Flow 3 and 4: a Microsoft referral becomes an opportunity; its update follows.
    let incoming = incoming_referral(&env, "Security inbound", 202);
    poll(
        &env,
        Duration::from_secs(20),
        "the opportunity of the referral",
        || async { (!env.opportunities_for_referral(&incoming).await.is_empty()).then_some(()) },
    )
    .await;
    env.pc
        .microsoft()
        .update(&incoming, json!({"details": {"dealValue": 12345}}))
        .unwrap();
    poll(
        &env,
        Duration::from_secs(20),
        "the updated opportunity",
        || async {
            env.opportunities_for_referral(&incoming)
                .await
                .first()
                .is_some_and(|o| o["estimatedvalue"].as_f64() == Some(12345.0))
                .then_some(())
        },
    )
    .await;

    // A refused record: help from Microsoft without a solution id.
    let refused = new_opportunity(
        &env,
        "Security refused",
        303,
        json!({"cosell_howcanmicrosofthelp": 100_000_000, "cosell_products": null}),
    )
    .await;
    poll(
        &env,
        Duration::from_secs(20),
        "the ✖ on the refused record",
        || async {
            env.opportunity(&refused).await["name"]
                .as_str()
                .is_some_and(|n| n.ends_with('✖'))
                .then_some(())
        },
    )
    .await;

    // A dead letter: Partner Center answers 503 to everything.
    env.pc
        .faults()
        .set(cosell_emulators::common::faults::FaultConfig {
            error_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    let dead = new_opportunity(&env, "Security dead letter", 404, json!({})).await;
    let admin = ["--admin-url", env.admin_url.as_str()];
    // Each attempt is one client retry (about 1 s of backoff) plus the queue's.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = cosell(&[&["dead-letters", "list"][..], &admin].concat(), &[]);
        let listed = run.success && run.text.contains(&dead);
        keep(run, &mut places);
        if listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter\nhost log:\n{}",
            tail(&env.host_log(), 60)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // While Partner Center is down, a setup command fails: its error must not carry secrets.
    let run = cosell(
        &[
            "partner-center",
            "register-webhooks",
            "--url",
            &pc_hook,
            "--overwrite",
            "--config",
            &config,
        ],
        &[],
    );
    assert!(!run.success, "{}", run.text);
    keep(run, &mut places);
    env.pc.faults().set(Default::default()).unwrap();
    let run = cosell(
        &[&["dead-letters", "replay", "--all"][..], &admin].concat(),
        &[],
    );
    assert!(run.success, "{}", run.text);
    keep(run, &mut places);
    poll(
        &env,
        Duration::from_secs(30),
        "the replayed dead letter",
        || async { referral_id_of(&env.opportunity(&dead).await) },
    )
    .await;

    // Every access token both services issued so far expires: the host refreshes both.
    let pc_before = env.pc.tokens().issued();
    env.pc.clock().advance(chrono::TimeDelta::hours(2));
    env.dv.clock().advance(chrono::TimeDelta::hours(2));
    let after_expiry = new_opportunity(&env, "Security after expiry", 505, json!({})).await;
    let incoming_after = incoming_referral(&env, "Security inbound after expiry", 606);
    poll(
        &env,
        Duration::from_secs(30),
        "records synced after the tokens expired",
        || async {
            (referral_id_of(&env.opportunity(&after_expiry).await).is_some()
                && !env
                    .opportunities_for_referral(&incoming_after)
                    .await
                    .is_empty())
            .then_some(())
        },
    )
    .await;
    let pc_after = env.pc.tokens().issued();
    assert!(
        pc_after.refresh.len() > pc_before.refresh.len(),
        "the host refreshed its Partner Center token"
    );

    // The commands an operator runs.
    for args in [
        vec!["dead-letters", "list"],
        vec!["audit"],
        vec!["audit", &format!("opportunity:{oid}")],
        vec!["audit", &format!("referral:{rid}")],
        vec!["mapping", "list"],
    ] {
        let args: Vec<&str> = args.iter().map(|s| s as &str).collect();
        let run = cosell(&[&args[..], &admin].concat(), &[]);
        assert!(run.success, "{}: {}", run.what, run.text);
        keep(run, &mut places);
    }
    for args in [
        vec![
            "partner-center",
            "register-webhooks",
            "--url",
            pc_hook.as_str(),
            "--overwrite",
            "--validate",
        ],
        vec!["dataverse", "register-webhook", "--url", dv_hook.as_str()],
        vec!["dataverse", "provision"],
    ] {
        let run = cosell(&[&args[..], &["--config", &config]].concat(), &[]);
        assert!(run.success, "{}: {}", run.what, run.text);
        keep(run, &mut places);
    }
    // And get wrong: a wrong admin token, wrong service credentials.
    const WRONG_ADMIN: &str = "wrong-admin-token-7f3a9c";
    const WRONG_DV: &str = "wrong-dataverse-secret-51c0e2";
    const WRONG_PC: &str = "wrong-partner-center-secret-8d2b4e";
    const WRONG_RT: &str = "rt-wrong-refresh-token-93ab17";
    let run = cosell(
        &[&["audit"][..], &admin].concat(),
        &[("COSELL_ADMIN_TOKEN", WRONG_ADMIN)],
    );
    assert!(!run.success, "{}", run.text);
    keep(run, &mut places);
    let wrong = dir.join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    for (name, value) in [("dv", WRONG_DV), ("pc", WRONG_PC), ("rt", WRONG_RT)] {
        std::fs::write(wrong.join(name), value).unwrap();
    }
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let mut wrong_config = String::new();
    let mut section = "";
    for line in text.lines() {
        if line.starts_with('[') {
            section = if line == "[dataverse]" {
                "dv"
            } else if line == "[partner_center]" {
                "pc"
            } else {
                ""
            };
        }
        let line = match (section, line) {
            (_, l) if l.starts_with("path = ") => "path = \"wrong/state.db\"".to_owned(),
            ("dv", l) if l.starts_with("client_secret") => {
                format!(
                    "client_secret = {{ file = \"{}\" }}",
                    wrong.join("dv").display()
                )
            }
            ("pc", l) if l.starts_with("client_secret") => {
                format!(
                    "client_secret = {{ file = \"{}\" }}",
                    wrong.join("pc").display()
                )
            }
            ("pc", l) if l.starts_with("refresh_token") => {
                format!(
                    "refresh_token = {{ file = \"{}\" }}",
                    wrong.join("rt").display()
                )
            }
            (_, l) => l.to_owned(),
        };
        wrong_config.push_str(&line);
        wrong_config.push('\n');
    }
    let wrong_config_path = dir.join("wrong.toml");
    std::fs::write(&wrong_config_path, wrong_config).unwrap();
    let wrong_config_path = wrong_config_path.to_str().unwrap();
    for args in [
        vec!["dataverse", "provision"],
        vec!["dataverse", "register-webhook", "--url", dv_hook.as_str()],
        vec![
            "partner-center",
            "register-webhooks",
            "--url",
            pc_hook.as_str(),
        ],
    ] {
        let run = cosell(&[&args[..], &["--config", wrong_config_path]].concat(), &[]);
        assert!(
            !run.success,
            "{} succeeded with wrong credentials",
            run.what
        );
        keep(run, &mut places);
    }

    // What the admin API answers, with and without the token.
    let http = reqwest::Client::new();
    for path in [
        "/healthz",
        "/metrics",
        "/admin/v1/steps",
        "/admin/v1/queue",
        "/admin/v1/dead-letters",
        "/admin/v1/audit?limit=10000",
    ] {
        for token in [Some(TOKEN), Some(WRONG_ADMIN), None] {
            let mut request = http.get(format!("{}{path}", env.admin_url));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            places.push((
                format!("GET {path} ({status})"),
                response.text().await.unwrap(),
            ));
        }
    }
    // The audit trail has what happened, so the grep below has something to look through.
    let audit = env.admin_get("/admin/v1/audit?limit=10000").await;
    let audit_lines = audit["audit"].as_array().map(Vec::len).unwrap_or(0);
    assert!(audit_lines >= 5, "{audit}");

    // What cosell wrote on both sides.
    let opportunities = env.seller.query("opportunities", "").await.unwrap();
    places.push((
        "every opportunity in Dataverse".into(),
        serde_json::to_string(&opportunities).unwrap(),
    ));
    places.push((
        "every referral in Partner Center".into(),
        serde_json::to_string(&env.pc.referrals()).unwrap(),
    ));
    places.extend(state_database_text(&dir.join("cosell.db")));

    // Let the last deliveries and writes reach the log, then stop the host and read it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.kill_host();
    for log in ["host-setup.log", "host.log"] {
        places.push((
            log.to_owned(),
            std::fs::read_to_string(dir.join(log)).unwrap(),
        ));
    }
    let host_log = &places.last().unwrap().1;
    // The log is at trace level and shows the requests, so its silence about secrets means
    // something: it saw the webhook deliveries, the token refreshes, the dead letter.
    for expected in [
        "Dataverse request",
        "Partner Center request",
        "dead-lettered",
        "answered 401",
    ] {
        assert!(
            host_log.contains(expected),
            "the host log has no `{expected}`"
        );
    }

    // The state database, which keeps the rotated refresh token, is its owner's only.
    #[cfg(unix)]
    for file in ["cosell.db", "cosell.db-wal", "cosell.db-shm"] {
        let path = dir.join(file);
        if path.exists() {
            assert_eq!(mode_of(&path), 0o600, "{file} is readable by others");
        }
    }

    let secrets = secrets_of(
        &env,
        &[
            ("a wrong admin token", WRONG_ADMIN),
            ("a wrong Dataverse client secret", WRONG_DV),
            ("a wrong Partner Center client secret", WRONG_PC),
            ("a wrong refresh token", WRONG_RT),
        ],
    );
    let found = leaks(&places, &secrets);
    let bytes: usize = places.iter().map(|(_, t)| t.len()).sum();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (what, _) in &secrets {
        let kind = what.split(" #").next().unwrap();
        *kinds.entry(kind).or_default() += 1;
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    let cli_runs = places
        .iter()
        .filter(|(p, _)| p.starts_with("cosell "))
        .count();
    println!(
        "secrets: {} secret values ({kinds:?}) searched in {} places ({cli_runs} CLI runs, 2 host logs at trace level, admin API answers, {} audit entries, the state database, every record on both sides), {bytes} bytes; leaks = 0; in {:?}",
        secrets.len(),
        places.len(),
        audit_lines,
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// A guest inside a running host.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_in_a_running_host_reaches_none_of_its_secrets() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        let dir = std::path::absolute(env.dir.path()).unwrap();
        // The secrets are there to be taken: in the host's environment, in files beside its
        // configuration, and the rotated refresh token in its state database.
        let pid = env.host_pid().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            String::from_utf8_lossy(&environ).contains(&format!("COSELL_ADMIN_TOKEN={TOKEN}")),
            "the host has the admin token in its environment"
        );
        let secret_files: Vec<String> = std::fs::read_dir(dir.join("secrets"))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        assert_eq!(secret_files.len(), 4, "{secret_files:?}");

        let http = reqwest::Client::new();
        let deployed = http
            .post(format!(
                "{}/admin/v1/steps/referral-to-opportunity/versions",
                env.admin_url
            ))
            .bearer_auth(TOKEN)
            .body(guest("testing/wasi_prober.wasm"))
            .send()
            .await
            .unwrap();
        assert_eq!(deployed.status(), 200, "the prober deploys");
        let deploy_answer = deployed.text().await.unwrap();

        let at = |p: &str| dir.join(p).display().to_string();
        let mut paths = secret_files.clone();
        paths.extend([
            at("secrets"),
            at("cosell.db"),
            at("cosell.db-wal"),
            at("cosell.toml"),
            "secrets/dataverse-webhook-key".into(),
            "../secrets/partner-center-refresh-token".into(),
            "cosell.db".into(),
            format!("/proc/{pid}/environ"),
            "/proc/self/environ".into(),
            "/proc/self/cmdline".into(),
            "/proc/self/mem".into(),
            "/etc/passwd".into(),
            "/etc/shadow".into(),
            "/".into(),
            ".".into(),
            "..".into(),
        ]);
        let env_names = [
            "COSELL_ADMIN_TOKEN",
            "RUST_LOG",
            "PATH",
            "HOME",
            "USER",
            "PWD",
            "CARGO_MANIFEST_DIR",
        ];
        let config_keys = [
            "token",
            "admin.token",
            "client_secret",
            "refresh_token",
            "partner_center.client_secret",
            "dataverse.client_secret",
            "webhooks.dataverse.value",
        ];
        let probe = json!({"probe": {"paths": paths, "env": env_names, "config": config_keys}});
        let ran = http
            .post(format!(
                "{}/admin/v1/pipelines/partner-center-to-crm/run",
                env.admin_url
            ))
            .bearer_auth(TOKEN)
            .json(&json!({"document": probe, "event": "security", "tenant": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(ran.status(), 200);
        let run_answer = ran.text().await.unwrap();
        let seen: Value = serde_json::from_str::<Value>(&run_answer).unwrap()["document"].clone();

        let files = seen["files"].as_object().expect("the prober reports files");
        assert_eq!(files.len(), paths.len(), "{seen:#}");
        for (path, result) in files {
            assert!(
                result.as_str().unwrap().starts_with("error: "),
                "the guest read {path}: {result}"
            );
        }
        assert_eq!(seen["preopens"], json!([]), "{seen:#}");
        assert_eq!(seen["env"], json!([]), "{seen:#}");
        assert_eq!(seen["args"], json!([]), "{seen:#}");
        for (name, value) in seen["env_lookup"].as_object().unwrap() {
            assert!(value.is_null(), "the guest read ${name}: {value}");
        }
        assert_eq!(seen["config_keys"], json!([]), "{seen:#}");
        for (key, value) in seen["config_lookup"].as_object().unwrap() {
            assert!(value.is_null(), "the guest read config `{key}`: {value}");
        }
        for network in ["tcp", "dns"] {
            assert!(
                seen[network].as_str().unwrap().starts_with("error"),
                "{network}: {seen:#}"
            );
        }

        // The same probe under `cosell mapping test`, run from the configuration's directory
        // (so the relative secret paths are right there) with the admin token in its
        // environment: the CLI gives the guest no more than the host does.
        let probe_file = dir.join("probe.json");
        std::fs::write(&probe_file, probe.to_string()).unwrap();
        let cli = Command::new(env!("CARGO_BIN_EXE_cosell"))
            .current_dir(&dir)
            .args(["mapping", "test", "--input"])
            .arg(&probe_file)
            .arg("--limits-from")
            .arg(&env.config_path)
            .arg(support::guest_path("testing/wasi_prober.wasm"))
            .env("COSELL_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        let cli_stdout = String::from_utf8_lossy(&cli.stdout).into_owned();
        let cli_stderr = String::from_utf8_lossy(&cli.stderr).into_owned();
        assert!(cli.status.success(), "{cli_stderr}");
        let cli_seen: Value = serde_json::from_str(&cli_stdout).unwrap();
        for (path, result) in cli_seen["files"].as_object().unwrap() {
            assert!(
                result.as_str().unwrap().starts_with("error: "),
                "under mapping test the guest read {path}: {result}"
            );
        }
        assert_eq!(cli_seen["env"], json!([]), "{cli_seen:#}");
        assert_eq!(cli_seen["preopens"], json!([]), "{cli_seen:#}");

        // The guest's stdout reached the host log: the log was written while it ran.
        let logged = wait_until(Duration::from_secs(5), || async {
            let log = env.host_log();
            log.contains("hello from stdout").then_some(log)
        })
        .await
        .expect("the guest's output is in the host log");
        let mut secrets = secrets_of(&env, &[]);
        // And what the secret files hold, whatever their name.
        for file in &secret_files {
            secrets.push((
                format!("the contents of {file}"),
                std::fs::read_to_string(file).unwrap().trim().to_owned(),
            ));
        }
        let places = vec![
            ("the deploy answer".to_owned(), deploy_answer),
            ("the pipeline run answer".to_owned(), run_answer),
            ("host.log".to_owned(), logged),
            ("cosell mapping test stdout".to_owned(), cli_stdout),
            ("cosell mapping test stderr".to_owned(), cli_stderr),
        ];
        let found = leaks(&places, &secrets);
        assert!(found.is_empty(), "secrets reached the guest:\n{}", found.join("\n"));
        println!(
            "guest in a running host (pid {pid}): {} paths tried (the 4 secret files, the state database, the config, /proc/<host>/environ, /etc/shadow, ...) -> {} opened; {} environment variables looked up -> 0 found; {} config keys -> 0 found; tcp and dns refused; the same under `cosell mapping test`; {} secret values absent from its output, the host log and the CLI's output",
            files.len(),
            files.values().filter(|r| !r.as_str().unwrap().starts_with("error")).count(),
            env_names.len(),
            config_keys.len(),
            secrets.len()
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Tokens expiring mid-run.

/// Whether every opportunity has its referral and every referral its opportunity, each with
/// the last value written on its own side.
async fn all_synced(
    env: &SyncEnv,
    outbound: &[(String, f64)],
    inbound: &[(String, f64)],
) -> Option<()> {
    for (oid, value) in outbound {
        let rid = referral_id_of(&env.opportunity(oid).await)?;
        let r = env.pc.referral(&rid)?;
        if r["details"]["dealValue"].as_f64() != Some(*value) {
            return None;
        }
    }
    for (rid, value) in inbound {
        let found = env.opportunities_for_referral(rid).await;
        if found.first()?["estimatedvalue"].as_f64() != Some(*value) {
            return None;
        }
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_expiring_mid_run_are_refreshed_without_losing_work() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        const ROUNDS: u32 = 4;
        const PER_ROUND: u32 = 5;
        let started = Instant::now();
        let pc_before = env.pc.tokens().issued();
        let mut outbound: Vec<(String, f64)> = Vec::new();
        let mut inbound: Vec<(String, f64)> = Vec::new();
        let mut updates = 0;
        // Round 0 warms the host up (both tokens cached); each later round jumps the clocks.
        for round in 0..=ROUNDS {
            // Updates of the previous round's records, in flight with this round's creates.
            let previous_out = outbound.len().saturating_sub(PER_ROUND as usize);
            for (oid, value) in outbound.iter_mut().skip(previous_out) {
                *value += 1000.0;
                env.seller
                    .update("opportunities", oid, &json!({"estimatedvalue": *value}), None)
                    .await
                    .unwrap();
                updates += 1;
            }
            let previous_in = inbound.len().saturating_sub(PER_ROUND as usize);
            for (rid, value) in inbound.iter_mut().skip(previous_in) {
                *value += 1000.0;
                env.pc
                    .microsoft()
                    .update(rid, json!({"details": {"dealValue": *value}}))
                    .unwrap();
                updates += 1;
            }
            for i in 0..PER_ROUND {
                let postal = 10_000 + round * 100 + i;
                let oid =
                    new_opportunity(&env, &format!("Expiry out {round}-{i}"), postal, json!({}))
                        .await;
                outbound.push((oid, 25000.0));
                let rid = incoming_referral(&env, &format!("Expiry in {round}-{i}"), postal + 50);
                inbound.push((rid, 10000.0));
            }
            if round > 0 {
                // While this round's records are in flight, every access token either service
                // has issued expires (they live an hour). The host's cache still thinks its
                // tokens good, so its next calls get 401s.
                env.pc.clock().advance(chrono::TimeDelta::seconds(3601));
                env.dv.clock().advance(chrono::TimeDelta::seconds(3601));
            }
            // The round settles before the next, so the next jump again catches tokens in use.
            let done = wait_until(Duration::from_secs(60), || {
                all_synced(&env, &outbound, &inbound)
            })
            .await;
            assert!(
                done.is_some(),
                "round {round}: not every record synced after the tokens expired\nhost log:\n{}",
                tail(&env.host_log(), 80)
            );
        }
        let total = ((ROUNDS + 1) * PER_ROUND) as usize;
        // No duplicates: one referral per opportunity, one opportunity per referral.
        let referrals = env.pc.referrals();
        let mut duplicates = 0;
        for (oid, _) in &outbound {
            let n = referrals
                .iter()
                .filter(|r| r["externalReferenceId"] == oid.as_str())
                .count();
            duplicates += n - 1;
        }
        for (rid, _) in &inbound {
            duplicates += env.opportunities_for_referral(rid).await.len() - 1;
        }
        assert_eq!(duplicates, 0);
        // Nothing dead-lettered, nothing left in the queue.
        let dead = env.admin_get("/admin/v1/dead-letters").await;
        assert_eq!(dead["dead_letters"], json!([]), "{dead}");
        let queue = env.admin_get("/admin/v1/queue").await;
        assert_eq!(queue["dead"].as_u64().unwrap_or(0), 0, "{queue}");

        let log = env.host_log();
        let pc_401 = log.matches("Partner Center answered 401").count();
        let dv_401 = log.matches("Dataverse answered 401").count();
        let pc_after = env.pc.tokens().issued();
        let pc_refreshes = pc_after.refresh.len() - pc_before.refresh.len();
        // Every jump caught the host with tokens in use, on both sides.
        assert!(pc_401 >= ROUNDS as usize, "{pc_401} Partner Center 401s");
        assert!(dv_401 >= ROUNDS as usize, "{dv_401} Dataverse 401s");
        assert!(pc_refreshes as u32 >= ROUNDS, "{pc_refreshes} Partner Center refreshes");
        println!(
            "token expiry: {total} records CRM -> PC and {total} PC -> CRM, {updates} updates, {ROUNDS} clock jumps past the 1 h token lifetime with records in flight; 401s met by the host: Partner Center {pc_401}, Dataverse {dv_401}; Partner Center token refreshes (rotated refresh tokens): {pc_refreshes}; losses = 0, duplicates = 0, dead letters = 0; in {:?}",
            started.elapsed()
        );
    })
    .await;
}
