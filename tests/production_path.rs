//! docs/production.md, followed as a new operator would, against the emulators of both
//! services standing in for the tenant: the page's configuration with the tenant's values
//! filled in, then every `cosell` command of the page in the order written, then a seller's
//! opportunity that must become a referral. Only what the page cannot know is supplied here:
//! the emulators' URLs and credentials (what the app registrations give an operator), local
//! paths and free ports, the emulator's self-signed webhook certificate, and the browser step
//! of the device-code sign-in (done through the emulator's control endpoint).

mod support;

use cosell::config::Secret;
use cosell::connections::dataverse::{DataverseClient, DataverseSettings};
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::sync_env::wait_until;
use support::{TOKEN, free_port, guest_path, repo_root};

/// The public URL the page uses for the webhook listener.
const PUBLIC: &str = "https://cosell.example.com";

/// The page's code blocks of one language, in order.
fn blocks(doc: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() == fence {
            out.push(
                lines
                    .by_ref()
                    .take_while(|l| l.trim() != "```")
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    }
    out
}

/// Every `cosell …` command of the page's shell blocks, split into arguments.
fn commands(doc: &str) -> Vec<Vec<String>> {
    blocks(doc, "sh")
        .iter()
        .flat_map(|b| b.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|l| l.trim().strip_prefix("cosell ").map(str::to_owned))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Writes `value` to a 0600 file in `dir`; answers its path.
fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

struct Tenant {
    pc: PartnerCenter,
    pc_url: String,
    pc_webhooks_url: String,
    dv: Dataverse,
    dv_url: String,
}

/// The page's configuration with this tenant's values; answers (file, public webhook base).
async fn configuration(doc: &str, tenant: &Tenant, dir: &Path) -> (PathBuf, String, String) {
    let toml_block = blocks(doc, "toml")
        .into_iter()
        .next()
        .expect("the page has a configuration");
    let mut config: toml::Table =
        toml::from_str(&toml_block).expect("the page's configuration is TOML");
    let (admin_port, webhooks_port) = (free_port(), free_port());
    let pc = tenant.pc.config();
    let dv = tenant.dv.config();
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let file = |name: &str, value: &str| {
        toml::Value::Table(toml::Table::from_iter([(
            "file".to_owned(),
            toml::Value::String(secret_file(&secrets, name, value).display().to_string()),
        )]))
    };
    let set = |config: &mut toml::Table, path: &[&str], value: toml::Value| {
        let mut table = config;
        for key in &path[..path.len() - 1] {
            table = table
                .entry(key.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .unwrap();
        }
        table.insert(path[path.len() - 1].to_owned(), value);
    };
    let s = |v: String| toml::Value::String(v);
    set(
        &mut config,
        &["admin", "listen"],
        s(format!("127.0.0.1:{admin_port}")),
    );
    set(
        &mut config,
        &["admin", "token_file"],
        s(secret_file(&secrets, "admin-token", TOKEN)
            .display()
            .to_string()),
    );
    set(
        &mut config,
        &["state", "path"],
        s(dir.join("state/cosell.db").display().to_string()),
    );
    set(
        &mut config,
        &["webhooks", "listen"],
        s(format!("127.0.0.1:{webhooks_port}")),
    );
    set(
        &mut config,
        &["webhooks", "dataverse", "value"],
        file("dv-webhook-key", "webhook-key-of-this-test"),
    );
    set(
        &mut config,
        &["partner_center", "base_url"],
        s(tenant.pc_url.clone()),
    );
    set(
        &mut config,
        &["partner_center", "webhooks_url"],
        s(tenant.pc_webhooks_url.clone()),
    );
    set(
        &mut config,
        &["partner_center", "token_url"],
        s(format!(
            "{}/{}/oauth2/v2.0/token",
            tenant.pc_url, pc.tenant_id
        )),
    );
    set(
        &mut config,
        &["partner_center", "client_id"],
        s(pc.client_id.clone()),
    );
    set(
        &mut config,
        &["partner_center", "client_secret"],
        file("pc-client-secret", &pc.client_secret),
    );
    set(&mut config, &["dataverse", "url"], s(tenant.dv_url.clone()));
    set(
        &mut config,
        &["dataverse", "token_url"],
        s(format!(
            "{}/{}/oauth2/v2.0/token",
            tenant.dv_url, dv.tenant_id
        )),
    );
    set(
        &mut config,
        &["dataverse", "client_id"],
        s(dv.client_id.clone()),
    );
    set(
        &mut config,
        &["dataverse", "client_secret"],
        file("dv-client-secret", &dv.client_secret),
    );
    for (direction, component) in [
        ("partner-center-to-crm", "referral_to_opportunity.wasm"),
        ("crm-to-partner-center", "opportunity_to_referral.wasm"),
    ] {
        let steps = config["pipelines"][direction].as_array().cloned().unwrap();
        let mut steps = steps;
        steps[0].as_table_mut().unwrap().insert(
            "component".into(),
            s(guest_path(component).display().to_string()),
        );
        set(
            &mut config,
            &["pipelines", direction],
            toml::Value::Array(steps),
        );
    }
    // The emulator signs its webhooks with a self-signed certificate served over http on
    // loopback: trusted explicitly, as `cosell sandbox` does.
    let certificate = reqwest::get(format!("{}/_emulator/certificate.pem", tenant.pc_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let certificate = secret_file(dir, "pc-emulator.pem", &certificate);
    // The emulators' APIs are plain http on loopback, which the guide's https-only
    // configuration refuses until each service allows it.
    for service in ["partner_center", "dataverse"] {
        set(
            &mut config,
            &[service, "allow_http"],
            toml::Value::Boolean(true),
        );
    }
    set(
        &mut config,
        &["partner_center", "webhooks", "certificate_hosts"],
        toml::Value::Array(vec![s("127.0.0.1".into())]),
    );
    set(
        &mut config,
        &["partner_center", "webhooks", "allow_http"],
        toml::Value::Boolean(true),
    );
    set(
        &mut config,
        &["partner_center", "webhooks", "trusted_certificates"],
        toml::Value::Array(vec![s(certificate.display().to_string())]),
    );
    let path = dir.join("cosell.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    (
        path,
        format!("http://127.0.0.1:{webhooks_port}"),
        format!("http://127.0.0.1:{admin_port}"),
    )
}

fn cosell(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cosell"));
    command
        .args(args)
        .env("COSELL_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "info");
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `cosell partner-center login`, with the user's browser step done at the emulator.
async fn login(args: &[String], pc_url: &str) -> Output {
    let child = cosell(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let control = format!("{pc_url}/_emulator/device-codes");
    let code = wait_until(Duration::from_secs(30), || async {
        let pending: Value = http.get(&control).send().await.ok()?.json().await.ok()?;
        pending[0]["user_code"].as_str().map(str::to_owned)
    })
    .await
    .expect("the login started a device-code sign-in");
    let approved = http
        .post(format!("{control}/{code}/approve"))
        .json(&json!({"user": "referrals.admin@partner.example"}))
        .send()
        .await
        .unwrap();
    assert!(approved.status().is_success());
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_the_production_guide_against_the_emulators_syncs_a_referral() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let doc = std::fs::read_to_string(repo_root().join("docs/production.md")).unwrap();
        let pc = PartnerCenter::new(PartnerCenterConfig {
            device_code_interval: Duration::from_secs(1),
            ..PartnerCenterConfig::default()
        });
        let pc_server = pc.serve().await.unwrap();
        let dv = Dataverse::new(DataverseConfig::default());
        let dv_server = dv.serve().await.unwrap();
        let tenant = Tenant {
            pc_url: pc_server.url(),
            pc_webhooks_url: pc_server.webhooks_url(),
            pc,
            dv_url: dv_server.url(),
            dv,
        };
        let dir = tempfile::tempdir().unwrap();
        let (config, public, admin) = configuration(&doc, &tenant, dir.path()).await;
        let config_text = config.display().to_string();

        let steps = commands(&doc);
        let names: Vec<String> = steps.iter().map(|c| c[..2].join(" ")).collect();
        assert_eq!(
            names,
            [
                "config check", "partner-center login", "dataverse provision", "serve --config",
                "partner-center register-webhooks", "dataverse register-webhook", "config check",
            ],
            "the page's commands changed: update this test with it"
        );
        let mut host = None;
        for step in steps {
            let args: Vec<String> = step
                .iter()
                .map(|a| match a.as_str() {
                    "/etc/cosell/cosell.toml" => config_text.clone(),
                    a => a.replace(PUBLIC, &public),
                })
                .collect();
            let name = args[..2].join(" ");
            match name.as_str() {
                "partner-center login" => {
                    let out = login(&args, &tenant.pc_url).await;
                    assert!(out.status.success(), "{name}: {}", text(&out));
                    assert!(text(&out).contains("referrals.admin@partner.example"), "{}", text(&out));
                }
                "serve --config" => {
                    let log = std::fs::File::create(dir.path().join("host.log")).unwrap();
                    host = Some(Host(cosell(&args).stdout(Stdio::null()).stderr(log).spawn().unwrap()));
                    let up = wait_until(Duration::from_secs(60), || async {
                        reqwest::get(format!("{admin}/healthz")).await.ok().filter(|r| r.status().is_success())
                    })
                    .await;
                    assert!(up.is_some(), "the host started: {}", std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default());
                }
                _ => {
                    let out = cosell(&args).output().unwrap();
                    assert!(out.status.success(), "{name}: {}", text(&out));
                }
            }
        }
        assert!(host.is_some(), "the page starts the host");

        // A seller marks an opportunity for Partner Center; it becomes a referral.
        let seller = DataverseClient::new(DataverseSettings {
            url: tenant.dv_url.clone(),
            token_url: format!("{}/{}/oauth2/v2.0/token", tenant.dv_url, tenant.dv.config().tenant_id),
            client_id: tenant.dv.config().client_id.clone(),
            client_secret: Secret::new(tenant.dv.config().client_secret.clone()),
            scope: None,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            max_concurrency: 4,
        })
        .unwrap();
        let account = seller
            .create("accounts", &json!({"name": "Contoso Production", "address1_postalcode": "98052", "address1_country": "US"}))
            .await
            .unwrap();
        let opportunity = seller
            .create(
                "opportunities",
                &json!({"name": "First production co-sell", "estimatedvalue": 42000, "cosell_syncwithpartnercenter": true,
                        "customerid_account@odata.bind": format!("/accounts({account})")}),
            )
            .await
            .unwrap();
        let referral = wait_until(Duration::from_secs(30), || async {
            let row = seller.get("opportunities", &opportunity, "$select=cosell_referralidentifier").await.ok()??;
            row.body["cosell_referralidentifier"].as_str().map(str::to_owned)
        })
        .await
        .unwrap_or_else(|| panic!("no referral: {}", std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default()));
        let made = tenant.pc.referral(&referral).expect("the referral is in Partner Center");
        assert_eq!(made["name"], "First production co-sell");
        drop(host);
        pc_server.stop().await;
        dv_server.stop().await;
    })
    .await
    .expect("bounded");
}
