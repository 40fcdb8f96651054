//! Flow 7 and what an operator sees and does: a refused record shows ✖ and the reason to the
//! seller, does not loop, and syncs once fixed; dead letters are listed and replayed with the
//! CLI (and counted in the metrics and health); the queue is listed with `cosell queue` and
//! the admin API; the setup commands run next to a running host without stranding its
//! single-use refresh token.

use super::*;
use crate::support::backend::{Backend, on_both_backends};
use crate::support::sync_env::{SETTLE, wait_until};
use std::time::Duration;

on_both_backends!(
    flow7_a_failed_sync_is_shown_to_the_seller_and_retried_when_fixed,
    dead_letters_are_listed_and_replayed_with_the_cli,
    the_queue_is_listed_with_the_cli_and_the_admin_api,
    setup_commands_can_run_next_to_a_running_host,
);

async fn flow7_a_failed_sync_is_shown_to_the_seller_and_retried_when_fixed(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        // Help from Microsoft without a solution id: the mapping refuses it.
        let oid = seller_creates_opportunity_with(
            &env,
            "Wingtip helpdesk",
            Some(HELP_WORKLOAD),
            json!({"cosell_products": null}),
        )
        .await;
        let opp = env
            .wait_opportunity(&oid, "the failure mark", |o| {
                o["name"].as_str().is_some_and(|n| n.ends_with('✖'))
            })
            .await;
        let audit = opp["cosell_audit"].as_str().unwrap_or_default();
        assert!(
            audit.contains("could not sync"),
            "the reason is in the Audit column: {audit}"
        );
        assert!(referral_id_of(&opp).is_none());
        // Nothing loops while the record stays broken.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let etag = env.etag(&oid).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(env.etag(&oid).await, etag);
        // The seller fixes it: the record syncs.
        env.seller
            .update(
                "opportunities",
                &oid,
                &json!({"cosell_products": "SOL-1234"}),
                None,
            )
            .await
            .unwrap();
        let opp = env
            .wait_opportunity(&oid, "the referral after the fix", |o| {
                referral_id_of(o).is_some() && o["name"].as_str().is_some_and(|n| n.ends_with('✔'))
            })
            .await;
        assert!(env.pc.referral(&referral_id_of(&opp).unwrap()).is_some());
    })
    .await;
}

async fn dead_letters_are_listed_and_replayed_with_the_cli(backend: Backend) {
    SyncEnv::run_on(
        backend,
        "[sync]\nmax_attempts = 2\nretry_base_ms = 200\n",
        |env| async move {
            // Partner Center throttles every call: it answers, so this is no outage (that
            // would pause the engine and spend no attempts, see `reliability.rs`), and every
            // create fails.
            env.throttle_partner_center_every_call();
            let oid = seller_creates_opportunity(&env, "Relecloud backup", None).await;
            // Each attempt is the client's own retries (a second's `Retry-After` each) plus the
            // queue's.
            let listed = wait_until(Duration::from_secs(60), || async {
                let out = env.cosell_admin(&["dead-letters", "list"]);
                out.contains(&oid).then_some(out)
            })
            .await
            .unwrap_or_else(|| panic!("no dead letter\n{}", env.host_log()));
            assert!(listed.contains("gave up after 2 attempts"), "{listed}");
            let opp = env.opportunity(&oid).await;
            assert!(opp["name"].as_str().unwrap().ends_with('✖'));
            env.pc
                .faults()
                .set(Default::default())
                .expect("valid faults");
            let metrics = reqwest::get(format!("{}/metrics", env.admin_url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                metrics
                    .lines()
                    .any(|l| l.starts_with("cosell_queue_events{state=\"dead\"}")
                        && !l.ends_with(" 0")),
                "{metrics}"
            );
            let health: serde_json::Value = reqwest::get(format!("{}/healthz", env.admin_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                health["sync"]["queue"]["dead"].as_u64().unwrap_or(0) >= 1,
                "{health}"
            );
            env.cosell_admin(&["dead-letters", "replay", "--all"]);
            env.wait_opportunity(&oid, "the referral after the replay", |o| {
                referral_id_of(o).is_some()
            })
            .await;
        },
    )
    .await;
}

/// The events of `record` that `GET /admin/v1/queue/events?state=<state>` lists.
async fn queued(env: &SyncEnv, state: &str, record: &str) -> Vec<Value> {
    let answer = env
        .admin_get(&format!("/admin/v1/queue/events?state={state}&limit=100"))
        .await;
    answer["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["record_id"] == record)
        .cloned()
        .collect()
}

/// `cosell queue` and `GET /admin/v1/queue/events`: an opportunity whose referral Partner
/// Center keeps throttling is listed as running (on PostgreSQL: by this replica), then as
/// pending with its attempt, when it runs again and why it failed; a state that is not one of
/// the queue's is refused, saying which are.
async fn the_queue_is_listed_with_the_cli_and_the_admin_api(backend: Backend) {
    SyncEnv::run_on(
        backend,
        // The first retry waits 5 minutes: the event stays pending while the test looks.
        "[sync]\nmax_attempts = 5\nretry_base_ms = 300000\n",
        |env| async move {
            // Every call throttled (an answer, not an outage): each attempt is the client's
            // own retries, a second each, and then fails.
            env.throttle_partner_center_every_call();
            let oid = seller_creates_opportunity(&env, "Queue listing", None).await;
            let running = wait_until(Duration::from_secs(30), || async {
                queued(&env, "running", &oid).await.pop()
            })
            .await
            .unwrap_or_else(|| panic!("never listed as running\n{}", env.host_log()));
            assert_eq!(running["side"], "dataverse", "{running}");
            assert_eq!(running["attempts"], 1, "{running}");
            assert!(running["lease_until"].is_string(), "{running}");
            let health = env.admin_get("/healthz").await;
            match backend {
                Backend::Sqlite => assert!(running["claimed_by"].is_null(), "{running}"),
                _ => assert_eq!(running["claimed_by"], health["replica_id"], "{running}"),
            }

            // Settled: the record's one event (a change noticed by the poller while the first
            // attempt ran has been folded into it) waits for its retry.
            let pending = wait_until(Duration::from_secs(60), || async {
                let mut all = queued(&env, "all", &oid).await;
                let settled = all.len() == 1
                    && all[0]["state"] == "pending"
                    && all[0]["last_error"].is_string();
                settled.then(|| all.remove(0))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "never settled pending after its attempt\n{}",
                    env.host_log()
                )
            });
            assert_eq!(pending["attempts"], 1, "{pending}");
            assert!(pending["claimed_by"].is_null(), "{pending}");
            let error = pending["last_error"].as_str().expect("the attempt's error");
            let next =
                chrono::DateTime::parse_from_rfc3339(pending["available_at"].as_str().unwrap())
                    .unwrap();
            assert!(
                next > chrono::Utc::now() + chrono::Duration::minutes(3),
                "{pending}"
            );
            let all = env.admin_get("/admin/v1/queue/events").await;
            assert!(all["counts"]["pending"].as_u64() >= Some(1), "{all}");
            assert!(
                all["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["record_id"] == oid.as_str()),
                "{all}"
            );

            // The table: the record, its state, attempts and the start of its error.
            let table = env.cosell_admin(&["queue", "--state", "pending"]);
            println!("cosell queue --state pending:\n{table}");
            let row = table
                .lines()
                .find(|l| l.contains(&oid))
                .unwrap_or_else(|| panic!("{oid} not in\n{table}"));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(
                cells[1..4],
                ["pending", "dataverse", oid.as_str()],
                "{table}"
            );
            assert_eq!(cells[4], "1", "{table}");
            let error_start: String = error
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(30)
                .collect();
            assert!(
                row.contains(&error_start),
                "{error_start:?} not in\n{table}"
            );
            assert!(table.lines().any(|l| l.starts_with("pending ")), "{table}");
            let json: Value =
                serde_json::from_str(&env.cosell_admin(&["queue", "--json"])).unwrap();
            assert!(
                json["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["record_id"] == oid.as_str()),
                "{json}"
            );

            // A state the queue does not list is refused, naming those it does.
            let refused = reqwest::Client::new()
                .get(format!(
                    "{}/admin/v1/queue/events?state=dead",
                    env.admin_url
                ))
                .bearer_auth(support::TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), 400);
            let message: Value = refused.json().await.unwrap();
            assert!(
                message["error"]
                    .as_str()
                    .unwrap()
                    .contains("pending, running or all"),
                "{message}"
            );
            let cli = std::process::Command::new(env!("CARGO_BIN_EXE_cosell"))
                .args(["queue", "--state", "dead", "--admin-url", &env.admin_url])
                .env("COSELL_ADMIN_TOKEN", support::TOKEN)
                .output()
                .unwrap();
            assert!(!cli.status.success());
            let stderr = String::from_utf8_lossy(&cli.stderr);
            assert!(
                stderr.contains("possible values: pending, running, all"),
                "{stderr}"
            );
        },
    )
    .await;
}

async fn setup_commands_can_run_next_to_a_running_host(backend: Backend) {
    SyncEnv::run_on(backend, "", |env| async move {
        // Partner Center sends a test event to the running host, which answers it.
        let hook = format!("{}/webhooks/partner-center", env.webhooks_url);
        env.cosell(&[
            "partner-center",
            "register-webhooks",
            "--url",
            &hook,
            "--overwrite",
            "--validate",
        ]);
        // Provisioning again changes nothing.
        let out = env.cosell(&["dataverse", "provision", "--solution", "cosell"]);
        assert!(out.contains("nothing to do"), "{out}");
        // The command redeemed the refresh token the host holds (they are single use). Once the
        // host's access token expires, it takes the newer one the command kept in the state.
        env.pc.clock().advance(chrono::TimeDelta::hours(2));
        let referral = env
            .pc
            .microsoft()
            .create_incoming(json!({"name": "After the setup"}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = wait_until(SETTLE, || opportunity_for_referral(&env, &rid)).await;
        assert!(
            opp.is_some(),
            "the host kept working with Partner Center\n{}",
            env.host_log()
        );
    })
    .await;
}
