//! The admin API refuses every request without exactly the token, with the same 401 on every
//! route, and listens on loopback unless `admin.allow_remote` says otherwise.

use super::*;
use crate::support::{guest, start, start_stamp_host, with_custom_section};

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
            path: "/admin/v1/queue/events?state=pending",
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
        let mut serve = Command::new(env!("CARGO_BIN_EXE_cosell"));
        serve
            .args(["serve", "--config"])
            .arg(&config)
            .env("COSELL_ADMIN_TOKEN", TOKEN);
        let (status, stderr) = refused_at_start(serve).await;
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

/// Runs `command`, which should exit at once; its exit status and stderr. A command still
/// running after 30 s (it started although it should not have) is killed and fails the test.
async fn refused_at_start(mut command: Command) -> (std::process::ExitStatus, String) {
    let mut child = command
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
        let _ = child.wait();
        panic!("{command:?} started instead of refusing to");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_admin_tokens_and_tokens_on_the_command_line_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let short = "local-dev-token";
    let short_file = dir.path().join("short-token");
    std::fs::write(&short_file, format!("{short}\n")).unwrap();
    // A short token refuses `cosell serve` from the environment and from admin.token_file,
    // and `cosell sandbox`, each saying how to make a good one and never printing it.
    let env_config = config_listening_on(dir.path(), "127.0.0.1:0", "");
    let file_dir = dir.path().join("file");
    std::fs::create_dir(&file_dir).unwrap();
    let file_config = config_listening_on(
        &file_dir,
        "127.0.0.1:0",
        &format!("token_file = \"{}\"", short_file.display()),
    );
    let mut refusals = Vec::new();
    for config in [&env_config, &file_config] {
        let mut serve = Command::new(env!("CARGO_BIN_EXE_cosell"));
        serve.args(["serve", "--config"]).arg(config);
        refusals.push((serve, "cosell serve"));
    }
    let mut sandbox = Command::new(env!("CARGO_BIN_EXE_cosell"));
    sandbox
        .arg("sandbox")
        .arg("--data-dir")
        .arg(dir.path().join("sandbox"));
    refusals.push((sandbox, "cosell sandbox"));
    for (mut command, what) in refusals {
        command.env("COSELL_ADMIN_TOKEN", short);
        let (status, stderr) = refused_at_start(command).await;
        assert!(!status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains("at least 32") && stderr.contains("openssl rand -hex 32"),
            "{what}: {stderr}"
        );
        assert!(
            !stderr.contains(short),
            "{what} printed the token: {stderr}"
        );
    }
    // The server itself refuses one given in code.
    let config = cosell::config::HostConfig::load(&env_config).unwrap();
    let err = cosell::server::start(config, cosell::config::Secret::new(short))
        .await
        .err()
        .expect("the server refuses a short admin token");
    assert!(format!("{err:#}").contains("at least 32"), "{err:#}");

    // A token on the command line is refused, even the right one, with what to do instead;
    // from a file (`--token-file`) the same token works.
    let host_dir = dir.path().join("host");
    std::fs::create_dir(&host_dir).unwrap();
    let (host, _admin) = support::start_stamp_host(&host_dir).await;
    let url = format!("http://{}", host.admin_addr);
    for flag in ["--token", "--admin-token"] {
        let output = Command::new(env!("CARGO_BIN_EXE_cosell"))
            .args(["mapping", "list", "--admin-url", &url, flag, TOKEN])
            .env("COSELL_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag}: {stderr}");
        assert!(
            stderr.contains("COSELL_ADMIN_TOKEN") && stderr.contains("--token-file"),
            "{flag}: {stderr}"
        );
    }
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .args(["mapping", "list", "--admin-url", &url, "--token-file"])
        .arg(&token_file)
        .env_remove("COSELL_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "admin token: a {}-character token refused by `cosell serve` (environment and file), `cosell sandbox` and the server; --token and --admin-token refused; --token-file accepted",
        short.len()
    );
}
