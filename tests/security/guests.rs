//! A WASI guest deployed into a running host reaches none of its files, environment
//! variables, configuration, network or secrets.

use super::*;
use crate::support::guest;

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
