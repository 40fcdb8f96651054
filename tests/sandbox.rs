//! `cosell sandbox` as a user runs it: it starts both emulators and the host, seeds them,
//! writes sandbox.json with working endpoints and credentials, and stops cleanly on Ctrl-C.

mod support;

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::repo_root;

async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    response.json().await.unwrap()
}

async fn token(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> String {
    token_answer(http, url, form).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn token_answer(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Value {
    let response = http.post(url).form(form).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "token endpoint {url}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_starts_seeds_describes_itself_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .arg("sandbox")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--components-dir")
        .arg(repo_root().join("guest-mappings/dist"))
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--partner-center-listen",
            "127.0.0.1:0",
            "--partner-center-webhooks-listen",
            "127.0.0.1:0",
            "--webhooks-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--dataverse-listen",
            "127.0.0.1:0",
            "--referrals",
            "30",
            "--accounts",
            "5",
        ])
        .args(["--opportunities", "30"])
        .env_remove("COSELL_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let manifest_path = dir.path().join("sandbox.json");
    let started = Instant::now();
    while !manifest_path.exists() {
        if started.elapsed() > Duration::from_secs(90) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the sandbox did not write sandbox.json");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["pid"], child.id());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // The host serves the default mappings.
    let health: Value = http
        .get(format!(
            "{}/healthz",
            manifest["host"]["admin_url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["steps"].as_array().unwrap().len(), 2, "{health}");

    // Partner Center: a delegated token from the published refresh token lists the seed.
    let pc = &manifest["partner_center"];
    let answer = token_answer(
        &http,
        pc["token_url"].as_str().unwrap(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", pc["refresh_token"].as_str().unwrap()),
            ("resource", "https://api.partner.microsoft.com"),
        ],
    )
    .await;
    let pc_token = answer["access_token"].as_str().unwrap().to_owned();
    // The Webhooks API is another host, with tokens for its own resource (the rotated refresh
    // token redeems one): the host's webhook is registered there.
    let webhooks_token = token(
        &http,
        pc["token_url"].as_str().unwrap(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", answer["refresh_token"].as_str().unwrap()),
            ("resource", "https://api.partnercenter.microsoft.com"),
        ],
    )
    .await;
    let webhooks_api = pc["webhooks_url"].as_str().expect("webhooks_url");
    assert_ne!(webhooks_api, pc["url"].as_str().unwrap());
    let registration = get_json(
        &http,
        &format!("{webhooks_api}/webhooks/v1/registration"),
        &webhooks_token,
    )
    .await;
    assert!(
        registration["WebhookUrl"]
            .as_str()
            .unwrap()
            .ends_with("/webhooks/partner-center"),
        "{registration}"
    );
    let referrals_url = format!("{}/v1.0/engagements/referrals", pc["url"].as_str().unwrap());
    let referrals = get_json(&http, &referrals_url, &pc_token).await;
    assert!(
        !referrals["value"].as_array().unwrap().is_empty(),
        "{referrals}"
    );

    // Dataverse: an app-only token lists the seeded opportunities.
    let dv = &manifest["dataverse"];
    let dv_token = token(
        &http,
        dv["token_url"].as_str().unwrap(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", dv["client_id"].as_str().unwrap()),
            ("client_secret", dv["client_secret"].as_str().unwrap()),
            (
                "scope",
                &format!("{}/.default", dv["url"].as_str().unwrap()),
            ),
        ],
    )
    .await;
    let opportunities_url = format!(
        "{}/api/data/v9.2/opportunities",
        dv["url"].as_str().unwrap()
    );
    let opportunities = get_json(&http, &opportunities_url, &dv_token).await;
    assert!(
        !opportunities["value"].as_array().unwrap().is_empty(),
        "{opportunities}"
    );

    // The README's walk-through: an opportunity created with Sync with Partner Center = Yes
    // becomes a referral, and its id comes back to the opportunity.
    let api = format!("{}/api/data/v9.2", dv["url"].as_str().unwrap());
    let accounts = get_json(
        &http,
        &format!("{api}/accounts?$select=accountid&$top=1"),
        &dv_token,
    )
    .await;
    let account = accounts["value"][0]["accountid"].as_str().unwrap();
    let created = http
        .post(format!("{api}/opportunities"))
        .bearer_auth(&dv_token)
        .json(&serde_json::json!({
            "name": "My first co-sell", "estimatedvalue": 50000, "cosell_syncwithpartnercenter": true,
            "customerid_account@odata.bind": format!("/accounts({account})"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 204);
    let entity = created.headers()["odata-entityid"]
        .to_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    let synced = loop {
        let opportunity = get_json(&http, &entity, &dv_token).await;
        if opportunity["cosell_referralidentifier"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
        {
            break opportunity;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no referral id came back: {opportunity}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "sandbox: opportunity -> referral id written back in {:?}",
        started.elapsed()
    );
    let rid = synced["cosell_referralidentifier"].as_str().unwrap();
    let referral = get_json(&http, &format!("{referrals_url}/{rid}"), &pc_token).await;
    assert_eq!(referral["name"], "My first co-sell");

    // Ctrl-C stops everything cleanly and removes the now stale manifest.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(30),
            "the sandbox did not stop on Ctrl-C"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(!manifest_path.exists(), "sandbox.json was left behind");
}
