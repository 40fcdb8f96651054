//! The two-step pipeline example (`guest-mappings/examples/two-step/`): its committed
//! `cosell.toml` fragment runs the default `referral-to-opportunity` mapping and then the
//! customer's own step (`dist/examples/stamp_team.wasm`, written with the SDK's typed
//! `Opportunity`). The output must carry both: everything the default mapping wrote, and the
//! customer's columns. This is the documented way to customise the mapping without forking it.

mod support;

use serde_json::Value;
use support::{Admin, repo_root, start};

/// The example's `cosell.toml` fragment, its repository-relative component paths made absolute,
/// with the admin API and state a test host needs.
fn example_config(dir: &std::path::Path) -> std::path::PathBuf {
    let fragment =
        std::fs::read_to_string(repo_root().join("guest-mappings/examples/two-step/cosell.toml"))
            .unwrap();
    let fragment = fragment.replace(
        "component = \"guest-mappings/",
        &format!("component = \"{}/guest-mappings/", repo_root().display()),
    );
    let path = dir.join("cosell.toml");
    std::fs::write(
        &path,
        format!("[admin]\nlisten = \"127.0.0.1:0\"\n[state]\npath = \"state.db\"\n\n{fragment}"),
    )
    .unwrap();
    path
}

/// The sample referral, from the case-directory fixtures (or the older flat layout).
fn sample_referral() -> Value {
    let fixtures = repo_root().join("guest-mappings/fixtures");
    let text =
        std::fs::read_to_string(fixtures.join("partner-center-to-crm/referral-sample/input.json"))
            .or_else(|_| std::fs::read_to_string(fixtures.join("referral-sample.json")))
            .expect("the referral-sample fixture");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_mapping_then_a_customer_step_gives_both_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(cosell::config::HostConfig::load(&example_config(dir.path())).unwrap()).await;
    let admin = Admin::new(&host);

    let (status, body) = admin.run("partner-center-to-crm", sample_referral()).await;
    assert_eq!(status, 200, "{body}");
    let steps: Vec<&str> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["referral-to-opportunity", "stamp-team"]);

    let opportunity = &body["document"];
    // The default mapping's fields, as it wrote them...
    assert_eq!(
        opportunity["name"], "Adventure Works Cycles - Secure Copilot rollout",
        "{opportunity}"
    );
    assert_eq!(opportunity["cosell_syncwithpartnercenter"], true);
    assert_eq!(
        opportunity["cosell_referralidentifier"],
        "0f9e8d7c-6b5a-4493-8271-605f4e3d2c1b"
    );
    assert_eq!(opportunity["customerid_account"]["address1_country"], "NL");
    assert_eq!(
        opportunity["customerid_account"]["contact_customer_accounts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(opportunity["estimatedvalue"], 312000);
    assert_eq!(
        opportunity["transactioncurrencyid"]["isocurrencycode"],
        "EUR"
    );
    assert!(
        opportunity["cosell_audit"]
            .as_str()
            .unwrap()
            .contains("created from Partner Center referral")
    );
    // ...and the customer step's columns, from its config (the region by the customer's country).
    assert_eq!(opportunity["contoso_owningteam"], "Benelux enterprise");
    assert_eq!(opportunity["contoso_region"], "EMEA-North");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_step_without_its_required_config_fails_the_record_and_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = example_config(dir.path());
    let toml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        toml.replace("owner-team = \"Benelux enterprise\", ", ""),
    )
    .unwrap();
    let host = start(cosell::config::HostConfig::load(&path).unwrap()).await;
    let admin = Admin::new(&host);

    let (status, body) = admin.run("partner-center-to-crm", sample_referral()).await;
    assert_ne!(status, 200, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("stamp-team") && text.contains("has no 'owner-team' in its config: set it"),
        "{body}"
    );
}
