//! An end-to-end environment for the sync flows: both emulators in this process on loopback,
//! a real `cosell serve` process on a real SQLite file or PostgreSQL database
//! ([`super::backend`]), set up with the real setup commands
//! (`cosell dataverse provision`, `cosell partner-center register-webhooks`,
//! `cosell dataverse register-webhook`), and a seller's Dataverse client.

use super::backend::{Backend, TestState};
use super::hosts::Hosts;
use super::{TOKEN, free_port, guest_path};
use cosell::config::Secret;
use cosell::connections::dataverse::{DataverseClient, DataverseSettings};
use cosell::sandbox::wiring::{Emulators, HostWiring, default_pipelines, write_host_config};
use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use cosell_emulators::partner_center::RunningPartnerCenter;
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a whole end-to-end test may take.
pub const BOUND: Duration = Duration::from_secs(150);

/// The seller's own application user in the Dataverse emulator.
const SELLER_CLIENT_ID: &str = "seller-app";
const SELLER_CLIENT_SECRET: &str = "seller-secret";

/// How long a flow may take to show its effect before the test fails.
pub const SETTLE: Duration = Duration::from_secs(20);

pub struct SyncEnv {
    pub pc: PartnerCenter,
    pub dv: Dataverse,
    /// The seller's own Dataverse client (what the CRM's UI would do).
    pub seller: DataverseClient,
    pub admin_url: String,
    pub webhooks_url: String,
    /// The Partner Center emulator's base URL.
    pub pc_url: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The `cosell serve` processes: one host, or replicas behind HAProxy.
    pub hosts: Hosts,
    pub pc_server: RunningPartnerCenter,
    _dv_server: RunningEmulator,
    /// The host's state database; after `host`, so the host is stopped before it goes.
    state: TestState,
}

/// How a [`SyncEnv`] is set up.
pub struct Options {
    /// TOML added to the host configuration (e.g. `[sync.conflicts]`).
    pub extra: String,
    /// How often the pollers run, in seconds (0: off, so only the webhooks and the queue move
    /// records).
    pub poll_secs: u64,
    /// The Dataverse emulator's configuration (its listen address is always loopback port 0).
    pub dataverse: DataverseConfig,
    /// How long the whole test may take.
    pub bound: Duration,
    /// Where the host keeps its state.
    pub backend: Backend,
    /// How many replicas of the host run (more than 1: on a PostgreSQL backend, behind
    /// HAProxy, whose frontends are the environment's `admin_url` and `webhooks_url`).
    pub replicas: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            extra: String::new(),
            poll_secs: 2,
            dataverse: DataverseConfig::default(),
            bound: BOUND,
            backend: Backend::Sqlite,
            replicas: 1,
        }
    }
}

impl SyncEnv {
    /// Starts everything, configured as `cosell sandbox` configures its host; `extra` is TOML
    /// added to the host configuration (e.g. `[sync.conflicts]`). The pollers run every 2 s
    /// as a safety net.
    pub async fn start(extra: &str) -> Self {
        Self::start_polling_every(extra, 2).await
    }

    /// [`SyncEnv::start`] with the pollers every `poll_secs` seconds (0: off, so only the
    /// webhooks and the queue move records).
    pub async fn start_polling_every(extra: &str, poll_secs: u64) -> Self {
        Self::start_with(Options {
            extra: extra.to_owned(),
            poll_secs,
            ..Options::default()
        })
        .await
    }

    /// Starts everything as `options` say.
    pub async fn start_with(options: Options) -> Self {
        let pc = PartnerCenter::new(PartnerCenterConfig::default());
        let pc_server = pc
            .serve()
            .await
            .expect("the Partner Center emulator starts");
        let dv = Dataverse::new(options.dataverse);
        let dv_server = dv.serve().await.expect("the Dataverse emulator starts");
        let dir = tempfile::tempdir().unwrap();
        let webhooks_port = free_port();
        let admin_port = free_port();
        let pipelines = default_pipelines(
            &guest_path("referral_to_opportunity.wasm"),
            &guest_path("opportunity_to_referral.wasm"),
        );
        let emulators = Emulators::running(&pc, &pc_server, &dv, &dv_server);
        let state = TestState::new(options.backend);
        let wiring = HostWiring {
            admin_listen: format!("127.0.0.1:{admin_port}").parse().unwrap(),
            webhooks_listen: format!("127.0.0.1:{webhooks_port}").parse().unwrap(),
            dataverse_poll_secs: options.poll_secs,
            partner_center_poll_secs: options.poll_secs,
            extra: options.extra,
            pipelines,
            state_url: state.url(),
        };
        let config_path = write_host_config(dir.path(), &emulators, &wiring)
            .await
            .expect("the configuration is written");
        // The seller is a user of their own: service protection limits count per user, so
        // the seller's requests neither use up nor hide the host's.
        dv.tokens()
            .register_client(SELLER_CLIENT_ID, SELLER_CLIENT_SECRET);
        let seller = DataverseClient::new(DataverseSettings {
            url: dv_server.url(),
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                dv_server.url(),
                dv.config().tenant_id
            ),
            client_id: SELLER_CLIENT_ID.into(),
            client_secret: Secret::new(SELLER_CLIENT_SECRET.to_owned()),
            scope: None,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            max_concurrency: 8,
        })
        .unwrap();
        let webhooks_url = format!("http://127.0.0.1:{webhooks_port}");
        let admin_url = format!("http://127.0.0.1:{admin_port}");
        let hosts = if options.replicas > 1 {
            assert_ne!(
                options.backend,
                Backend::Sqlite,
                "replicas share a PostgreSQL state"
            );
            Hosts::replicas(
                dir.path(),
                &config_path,
                &admin_url,
                &webhooks_url,
                options.replicas,
            )
        } else {
            Hosts::single(dir.path(), &config_path, &admin_url, &webhooks_url)
        };
        let mut env = SyncEnv {
            pc,
            dv,
            seller,
            admin_url,
            pc_url: pc_server.url(),
            webhooks_url,
            dir,
            config_path,
            hosts,
            pc_server,
            _dv_server: dv_server,
            state,
        };
        env.cosell(&["dataverse", "provision", "--solution", "cosell"]);
        let pc_hook = format!("{}/webhooks/partner-center", env.webhooks_url);
        env.cosell(&["partner-center", "register-webhooks", "--url", &pc_hook]);
        let dv_hook = format!("{}/webhooks/dataverse", env.webhooks_url);
        env.cosell(&["dataverse", "register-webhook", "--url", &dv_hook]);
        env.start_host().await;
        if options.backend != Backend::Sqlite {
            assert!(
                !env.dir.path().join("cosell.db").exists(),
                "a host configured with [state] url made a SQLite file"
            );
        }
        env
    }

    /// Runs `test` on a fresh environment (see [`SyncEnv::start`]), bounded by [`BOUND`].
    pub async fn run<F, Fut>(extra: &str, test: F)
    where
        F: FnOnce(SyncEnv) -> Fut,
        Fut: Future<Output = ()>,
    {
        Self::run_polling_every(extra, 2, test).await
    }

    /// [`SyncEnv::run`] with the pollers every `poll_secs` seconds (0: off).
    pub async fn run_polling_every<F, Fut>(extra: &str, poll_secs: u64, test: F)
    where
        F: FnOnce(SyncEnv) -> Fut,
        Fut: Future<Output = ()>,
    {
        Self::run_polling_every_on(Backend::Sqlite, extra, poll_secs, test).await
    }

    /// [`SyncEnv::run`] with the host's state on `backend`.
    pub async fn run_on<F, Fut>(backend: Backend, extra: &str, test: F)
    where
        F: FnOnce(SyncEnv) -> Fut,
        Fut: Future<Output = ()>,
    {
        Self::run_polling_every_on(backend, extra, 2, test).await
    }

    /// [`SyncEnv::run_polling_every`] with the host's state on `backend`.
    pub async fn run_polling_every_on<F, Fut>(
        backend: Backend,
        extra: &str,
        poll_secs: u64,
        test: F,
    ) where
        F: FnOnce(SyncEnv) -> Fut,
        Fut: Future<Output = ()>,
    {
        let options = Options {
            extra: extra.to_owned(),
            poll_secs,
            backend,
            ..Options::default()
        };
        Self::run_with(options, test).await
    }

    /// Runs `test` on an environment set up as `options` say, bounded by `options.bound`.
    pub async fn run_with<F, Fut>(options: Options, test: F)
    where
        F: FnOnce(SyncEnv) -> Fut,
        Fut: Future<Output = ()>,
    {
        let bound = options.bound;
        tokio::time::timeout(bound, async {
            test(SyncEnv::start_with(options).await).await
        })
        .await
        .expect("the test finished within its bound");
    }

    /// The host's state store, opened as another process would open it (`[state]` of the
    /// host's configuration, SQLite or PostgreSQL).
    pub fn state_store(&self) -> cosell::store::StateStore {
        let config = cosell::config::HostConfig::load(&self.config_path).unwrap();
        cosell::store::open(&config.state).expect("the host's state store opens")
    }

    /// Runs a `cosell` command with this environment's configuration; panics on failure.
    pub fn cosell(&self, args: &[&str]) -> String {
        run_cosell(args, &["--config", self.config_path.to_str().unwrap()])
    }

    /// Partner Center answers every call 429 with a second's `Retry-After`: it answers, so
    /// this is no outage (which would pause the engine and spend no attempts), and every
    /// write to it fails: the way to make a dead letter.
    pub fn throttle_partner_center_every_call(&self) {
        self.pc
            .faults()
            .set(cosell_emulators::common::faults::FaultConfig {
                throttle_rate: 1.0,
                retry_after_secs: 1,
                ..Default::default()
            })
            .expect("valid faults");
    }

    /// The id of a transaction currency (`EUR`, …) in the emulated CRM.
    pub async fn currency_id(&self, code: &str) -> String {
        let rows = self
            .seller
            .query(
                "transactioncurrencies",
                &format!("$select=transactioncurrencyid&$filter=isocurrencycode eq '{code}'"),
            )
            .await
            .unwrap();
        rows[0]["transactioncurrencyid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Runs a `cosell` admin command (it talks to the host's admin API).
    pub fn cosell_admin(&self, args: &[&str]) -> String {
        run_cosell(args, &["--admin-url", &self.admin_url])
    }

    /// Starts `cosell serve` and waits until both listeners answer.
    pub async fn start_host(&mut self) {
        self.start_host_logging("cosell=debug,info").await
    }

    /// [`SyncEnv::start_host`] with this `RUST_LOG` filter (the security tests log everything).
    pub async fn start_host_logging(&mut self, rust_log: &str) {
        self.hosts.start_all(rust_log).await;
        for url in [
            format!("{}/healthz", self.admin_url),
            format!("{}/healthz", self.webhooks_url),
        ] {
            assert!(
                answers(&url, Duration::from_secs(60)).await,
                "the host did not come up: {}",
                self.host_log()
            );
        }
    }

    /// The running host's process id (the first replica's).
    pub fn host_pid(&self) -> Option<u32> {
        self.hosts.pid(0)
    }

    /// Kills the host process (SIGKILL): every replica, and their balancer.
    pub fn kill_host(&mut self) {
        self.hosts.kill_all();
    }

    /// Restarts the state's PostgreSQL server (a cluster of the test's own:
    /// [`Backend::OwnPostgres`]).
    pub fn restart_state_server(&self) {
        self.state.restart_server();
    }

    /// Copies the host's log (all of it, across restarts) out of the environment's temporary
    /// directory, which is removed when the test ends; answers where it is.
    pub fn keep_host_log(&self, test: &str) -> PathBuf {
        let kept = std::env::temp_dir().join(format!("cosell-{test}-host.log"));
        let _ = std::fs::write(&kept, self.host_log());
        kept
    }

    /// The host's log (every replica's, each headed by its id).
    pub fn host_log(&self) -> String {
        self.hosts.log()
    }

    /// A genuine Partner Center delivery about `referral`, signed as the emulator signs, to
    /// this host's webhook listener.
    pub fn signed_delivery(&self, referral: &str) -> reqwest::RequestBuilder {
        use cosell_emulators::partner_center::signing::SigningMaterial;
        use cosell_emulators::partner_center::webhooks::WebhookEvent;
        let uri = format!("{}/v1.0/engagements/referrals/{referral}", self.pc_url);
        let event = WebhookEvent::new("referral-updated", "referral", uri, chrono::Utc::now());
        let body = serde_json::to_vec(&event).unwrap();
        let signature = format!("Signature {}", SigningMaterial::get().sign_base64(&body));
        reqwest::Client::new()
            .post(format!("{}/webhooks/partner-center", self.webhooks_url))
            .header("content-type", "application/json")
            .header("authorization", signature)
            .header(
                "x-ms-certificate-url",
                format!(
                    "{}{}",
                    self.pc_url,
                    cosell_emulators::partner_center::signing::CERTIFICATE_PATH
                ),
            )
            .header("x-ms-signature-algorithm", "rsa-sha256")
            .body(body)
    }

    /// An admin API GET.
    pub async fn admin_get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.admin_url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The host's `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The sum of the samples of metric `name` whose labels include every pair of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(['{', ' ']))
            })
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum()
    }

    /// The opportunities that carry referral `rid`'s id (none if the query fails).
    pub async fn opportunities_for_referral(&self, rid: &str) -> Vec<Value> {
        self.seller
            .query(
                "opportunities",
                &format!("$filter=cosell_referralidentifier eq '{rid}'"),
            )
            .await
            .unwrap_or_default()
    }

    /// An opportunity as the seller sees it.
    pub async fn opportunity(&self, id: &str) -> Value {
        self.seller
            .get("opportunities", id, "")
            .await
            .unwrap()
            .expect("the opportunity exists")
            .body
    }

    /// The opportunity's current `@odata.etag`.
    pub async fn etag(&self, id: &str) -> Option<String> {
        self.seller
            .get("opportunities", id, "")
            .await
            .unwrap()
            .expect("the opportunity exists")
            .etag
    }

    /// Waits for the opportunity to satisfy `check`; panics with the host log otherwise.
    pub async fn wait_opportunity(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let found = wait_until(SETTLE, || async {
            let o = self.opportunity(id).await;
            check(&o).then_some(o)
        })
        .await;
        match found {
            Some(o) => o,
            None => panic!(
                "timed out waiting for {what}; opportunity: {:#}\nhost log:\n{}",
                self.opportunity(id).await,
                self.host_log()
            ),
        }
    }

    /// Waits for a referral to satisfy `check`.
    pub async fn wait_referral(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let found = wait_until(SETTLE, || async {
            self.pc.referrals().into_iter().find(|r| check(r))
        })
        .await;
        found.unwrap_or_else(|| {
            let seen: Vec<String> = self
                .pc
                .referrals()
                .iter()
                .map(|r| {
                    format!(
                        "{} ext={} target={} {}/{}",
                        r["id"], r["externalReferenceId"], r["target"], r["status"], r["substatus"]
                    )
                })
                .collect();
            panic!(
                "timed out waiting for {what}; referrals: {seen:#?}\nhost log:\n{}",
                self.host_log()
            )
        })
    }
}

/// Runs `cosell args extra`; panics unless it succeeds; answers its stdout.
fn run_cosell(args: &[&str], extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .args(args)
        .args(extra)
        .env("COSELL_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("cosell runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cosell {args:?} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for SyncEnv {
    fn drop(&mut self) {
        self.kill_host();
    }
}

/// Whether `url` answers a GET with a success within `limit` (asked every 50 ms).
pub async fn answers(url: &str, limit: Duration) -> bool {
    let ready = wait_until(limit, || async {
        reqwest::get(url)
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    ready.is_some()
}

/// Polls `probe` every 50 ms until it answers `Some`, or `limit` passes.
pub async fn wait_until<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(value) = probe().await {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
