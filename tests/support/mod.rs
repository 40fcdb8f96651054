//! Helpers shared by the integration tests: locating the built guests and fixtures, starting
//! a host on a free loopback port, talking to its admin API, connecting to the Partner Center
//! emulator, `cosell sandbox` as a process ([`sandbox`]), the end-to-end sync environment
//! ([`sync_env`]) on either state backend
//! ([`backend`]), its host processes, one or replicas behind HAProxy ([`hosts`]), and the
//! reliability drills' workload ([`drill`]), and following a document's shell sessions
//! ([`walkthrough`]).
#![allow(dead_code)]

pub mod backend;
pub mod commands_env;
pub mod drill;
pub mod hosts;
pub mod sandbox;
pub mod seller;
pub mod sync_env;
pub mod walkthrough;

use cosell::config::{HostConfig, Secret};
use cosell::runtime::{Direction, MappingCall};
use cosell::server::RunningHost;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const TOKEN: &str = "test-admin-token-6f1c2a9e4b7d3c8a5e0f";

/// How long a test waits for something that must happen before it calls it a hang.
///
/// Never a promise about speed: a test that waits this long arranges that the behaviour it
/// checks is the only way the awaited thing can happen at all (any fallback that could stand
/// in for it, such as a periodic check or an event's lease, is set far beyond this), so a slow
/// machine makes the test slower, not red.
pub const NEVER: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// One cargo target directory for every Rust guest project the tests build (the scaffolds and the
/// authoring guide's walk-through), so the standard library (built from source where no wasm
/// target is installed) and the SDK's dependencies are compiled once, not once per project.
pub fn shared_guest_target() -> PathBuf {
    repo_root().join("target/scaffold-guests")
}

/// Bytes of a built guest, e.g. `referral_to_opportunity.wasm` or `testing/panics.wasm`.
/// A free loopback port for a process a test is about to start, the operating system's choice,
/// and never one this test process has been given before.
///
/// A port chosen by binding port 0 is free when answered, not reserved: until the process it
/// is for binds it, the operating system may answer it again, and two listeners of one host
/// given the same port make that host fail to start. Remembering what was given rules that
/// out within a test.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Held until the loop ends, so a port answered again is not answered a third time.
    let mut held = Vec::new();
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().unwrap().port();
        if given.insert(port) {
            return port;
        }
        held.push(listener);
    }
    panic!("the operating system answered 100 ports this test had already been given")
}

/// [`free_port`] as a loopback address.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))
}

pub fn guest(name: &str) -> Vec<u8> {
    let path = guest_path(name);
    std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read {} ({err}): build the guests first with `make guests` (guest-mappings/build.sh)",
            path.display()
        )
    })
}

pub fn guest_path(name: &str) -> PathBuf {
    repo_root().join("guest-mappings/dist").join(name)
}

pub fn fixture(name: &str) -> String {
    let path = repo_root().join("guest-mappings/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// The same core module with one more custom section: same behaviour, a new content hash.
/// Lets a test deploy "version 2" of a guest without a second build.
pub fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// A host configuration in `dir` whose two steps, `pc-to-crm` and `crm-to-pc`, both run the
/// `version_stamp` test guest (which writes the step name, version and config into its output).
pub fn stamp_host_config(dir: &Path) -> HostConfig {
    stamp_host_config_with(dir, "")
}

/// [`stamp_host_config`] with more TOML tables (`[deploy]`, `[limits]`) added.
pub fn stamp_host_config_with(dir: &Path, extra_tables: &str) -> HostConfig {
    let stamp = guest_path("testing/version_stamp.wasm");
    let text = format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[state]
path = "{state}"

{extra_tables}

[[pipelines.partner-center-to-crm]]
step = "pc-to-crm"
component = "{stamp}"
[pipelines.partner-center-to-crm.config]
greeting = "hello"

[[pipelines.crm-to-partner-center]]
step = "crm-to-pc"
component = "{stamp}"
"#,
        state = dir.join("state.db").display(),
        stamp = stamp.display(),
    );
    let path = dir.join("cosell.toml");
    std::fs::write(&path, text).unwrap();
    HostConfig::load(&path).unwrap()
}

/// Starts a host on [`stamp_host_config`] and returns it with a client for its admin API.
pub async fn start_stamp_host(dir: &Path) -> (RunningHost, Admin) {
    let host = start(stamp_host_config(dir)).await;
    let admin = Admin::new(&host);
    (host, admin)
}

/// A call of step `step` on `input` with a fixed context (2026-11-24T12:00:00Z).
pub fn test_call<'a>(step: &str, input: &'a str) -> MappingCall<'a> {
    MappingCall {
        mapping_name: Arc::from(step),
        direction: Direction::PartnerCenterToCrm,
        event: "test",
        tenant: "t",
        timestamp: "2026-11-24T12:00:00Z".parse().unwrap(),
        input,
        current: None,
        config: Default::default(),
    }
}

pub async fn start(config: HostConfig) -> RunningHost {
    cosell::server::start(config, Secret::new(TOKEN))
        .await
        .expect("the host starts")
}

/// A client for one host's admin API.
#[derive(Clone)]
pub struct Admin {
    pub base: String,
    pub http: reqwest::Client,
}

impl Admin {
    pub fn new(host: &RunningHost) -> Self {
        Self {
            base: format!("http://{}", host.admin_addr),
            // A deploy answers once the component is compiled: the JavaScript example
            // (~10 MB) took over a minute on a loaded two-core machine.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(180))
                .build()
                .unwrap(),
        }
    }

    pub async fn deploy(&self, step: &str, wasm: Vec<u8>) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}/admin/v1/steps/{step}/versions", self.base))
            .bearer_auth(TOKEN)
            .body(wasm)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn rollback(&self, step: &str, to: Option<&str>) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}/admin/v1/steps/{step}/rollback", self.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "to": to }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Runs `document` through the pipeline of `direction`.
    pub async fn run(
        &self,
        direction: &str,
        document: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}/admin/v1/pipelines/{direction}/run", self.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "document": document, "event": "test", "tenant": "t" }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// The version a step serves, from `/admin/v1/steps`.
    pub async fn active_version(&self, step: &str) -> String {
        let (_, body) = self.get("/admin/v1/steps").await;
        body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .unwrap_or_else(|| panic!("no step {step} in {body}"))["active_version"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Settings of the host's Partner Center client for a running Partner Center emulator.
pub fn partner_center_settings(
    pc: &cosell_emulators::partner_center::PartnerCenter,
    running: &cosell_emulators::partner_center::RunningPartnerCenter,
) -> cosell::connections::partner_center::PartnerCenterSettings {
    let url = running.url();
    cosell::connections::partner_center::PartnerCenterSettings {
        base_url: url.clone(),
        webhooks_url: running.webhooks_url(),
        token_url: format!("{url}/{}/oauth2/token", pc.config().tenant_id),
        client_id: pc.config().client_id.clone(),
        client_secret: Secret::new(pc.config().client_secret.clone()),
        refresh_token: Secret::new(pc.refresh_token()),
        timeout: Duration::from_secs(5),
        max_retries: 8,
        sign_in_command: "cosell partner-center login --config test.toml".into(),
    }
}
