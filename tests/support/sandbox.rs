//! `cosell sandbox` as a process, for the tests that run it as a user does: started on free
//! loopback ports, found through its `sandbox.json`, driven through the emulators' APIs, and
//! stopped with Ctrl-C (SIGINT).

use super::repo_root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `cosell sandbox`, killed if the test fails before it stops it.
pub struct Sandbox {
    pub child: Child,
    pub manifest_path: PathBuf,
    pub manifest: Value,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Sandbox {
    /// Starts `cosell sandbox` in `dir` with a small data set, every listener on a free port,
    /// and `extra` arguments, its log (standard error) in `dir/sandbox.log`; waits (up to
    /// `limit`) for its manifest.
    pub async fn start(dir: &Path, extra: &[&str], limit: Duration) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cosell"))
            .arg("sandbox")
            .arg("--data-dir")
            .arg(dir)
            .arg("--components-dir")
            .arg(repo_root().join("guest-mappings/dist"))
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--partner-center-listen", "127.0.0.1:0"])
            .args(["--partner-center-webhooks-listen", "127.0.0.1:0"])
            .args(["--webhooks-listen", "127.0.0.1:0"])
            .args(["--dataverse-listen", "127.0.0.1:0"])
            .args([
                "--referrals",
                "30",
                "--accounts",
                "5",
                "--opportunities",
                "30",
            ])
            .args(extra)
            .env_remove("COSELL_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sandbox.log")).unwrap())
            .spawn()
            .unwrap();
        let manifest_path = dir.join("sandbox.json");
        let started = Instant::now();
        while !manifest_path.exists() {
            if started.elapsed() > limit || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                // The log lives in the test's temporary directory: show it, or it is lost.
                let log = std::fs::read_to_string(dir.join("sandbox.log")).unwrap_or_default();
                panic!("the sandbox did not write sandbox.json; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let manifest =
            serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
        Self {
            child,
            manifest_path,
            manifest,
        }
    }

    /// Waits (up to `limit`) until the sandbox's log has a line containing `text`.
    pub async fn until_logged(&self, text: &str, limit: Duration) {
        let log = self.manifest_path.with_file_name("sandbox.log");
        let started = Instant::now();
        while !std::fs::read_to_string(&log).unwrap().contains(text) {
            assert!(
                started.elapsed() < limit,
                "the sandbox logged no `{text}` within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ctrl-C: SIGINT to the sandbox; waits up to `limit` for it to exit.
    pub async fn ctrl_c(&mut self, limit: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let stopping = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(
                stopping.elapsed() < limit,
                "the sandbox did not stop on Ctrl-C"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An app-only token of the Dataverse emulator.
    pub async fn dataverse_token(&self, http: &reqwest::Client) -> String {
        let dv = &self.manifest["dataverse"];
        token(
            http,
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
        .await
    }

    /// The README's walk-through: creates an opportunity with Sync with Partner Center = Yes
    /// and waits (up to `limit`) until its referral id comes back; answers the opportunity.
    pub async fn sync_an_opportunity(
        &self,
        http: &reqwest::Client,
        name: &str,
        limit: Duration,
    ) -> Value {
        let dv_token = self.dataverse_token(http).await;
        let api = format!(
            "{}/api/data/v9.2",
            self.manifest["dataverse"]["url"].as_str().unwrap()
        );
        let accounts = get_json(
            http,
            &format!("{api}/accounts?$select=accountid&$top=1"),
            &dv_token,
        )
        .await;
        let account = accounts["value"][0]["accountid"].as_str().unwrap();
        let created = http
            .post(format!("{api}/opportunities"))
            .bearer_auth(&dv_token)
            .json(&serde_json::json!({
                "name": name, "estimatedvalue": 50000, "cosell_syncwithpartnercenter": true,
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
        loop {
            let opportunity = get_json(http, &entity, &dv_token).await;
            if opportunity["cosell_referralidentifier"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
            {
                println!(
                    "sandbox: opportunity -> referral id written back in {:?}",
                    started.elapsed()
                );
                return opportunity;
            }
            assert!(
                started.elapsed() < limit,
                "no referral id came back: {opportunity}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// GET `url` with a bearer token; asserts 200 and answers the JSON.
pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    response.json().await.unwrap()
}

/// The access token a token endpoint answers to `form`.
pub async fn token(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> String {
    token_answer(http, url, form).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A token endpoint's whole answer to `form` (asserting 200).
pub async fn token_answer(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Value {
    let response = http.post(url).form(form).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "token endpoint {url}");
    response.json().await.unwrap()
}
