//! No secret appears anywhere a full run with a real `cosell serve` at trace level leaves
//! text: host logs, CLI output and errors, admin answers, the state database, the records.

use super::*;
use std::collections::BTreeMap;
use std::time::Instant;

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

    // A dead letter: Partner Center throttles everything (an outage, 503s, would pause the
    // engine instead, spending no attempts).
    env.throttle_partner_center_every_call();
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
    // While Partner Center refuses, a setup command fails: its error must not carry secrets.
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
        vec!["dataverse", "provision", "--solution", "cosell"],
    ] {
        let run = cosell(&[&args[..], &["--config", &config]].concat(), &[]);
        assert!(run.success, "{}: {}", run.what, run.text);
        keep(run, &mut places);
    }
    // And get wrong: a wrong admin token, wrong service credentials.
    const WRONG_ADMIN: &str = "wrong-admin-token-7f3a9c2e5b8d1f4a6c0e";
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
        vec!["dataverse", "provision", "--solution", "cosell"],
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
