//! `cosell sandbox` as a user runs it: it starts both emulators and the host, seeds them,
//! writes sandbox.json with working endpoints and credentials, and stops cleanly on Ctrl-C.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::sandbox::{Sandbox, get_json, token, token_answer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_starts_seeds_describes_itself_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::start(dir.path(), &[], Duration::from_secs(90)).await;
    let manifest = sandbox.manifest.clone();
    assert_eq!(manifest["pid"], sandbox.child.id());
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
    let dv_token = sandbox.dataverse_token(&http).await;
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
    let synced = sandbox
        .sync_an_opportunity(&http, "My first co-sell", Duration::from_secs(20))
        .await;
    let rid = synced["cosell_referralidentifier"].as_str().unwrap();
    let referral = get_json(&http, &format!("{referrals_url}/{rid}"), &pc_token).await;
    assert_eq!(referral["name"], "My first co-sell");

    // Ctrl-C stops everything cleanly and removes the now stale manifest.
    let exit = sandbox.ctrl_c(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}");
    assert!(
        !sandbox.manifest_path.exists(),
        "sandbox.json was left behind"
    );
}
