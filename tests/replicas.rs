//! Several replicas on one PostgreSQL state: exactly one leader, which runs the pollers, and
//! another taking over when it stops or its process is killed; a deployment or rollback made on one replica served by
//! every other one within a second; a missed activation notice made up by the periodic check.
//!
//! Hosts run in this process (`server::start`), or as `cosell serve` processes, on a schema of their own of the tests'
//! PostgreSQL server (`COSELL_TEST_POSTGRES_URL`, or a throwaway cluster, see
//! `host/src/store/testing/postgres.rs`), each with its own artifact cache. Every wait is
//! bounded.

mod support;

use cosell::config::HostConfig;
use cosell::sandbox::wiring::{
    Emulators, HostWiring, default_pipelines, provision, write_host_config,
};
use cosell::server::RunningHost;
use cosell::store::test_postgres::{TestSchema, execute};
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::backend::Backend;
use support::sync_env::{Options, SyncEnv, wait_until};
use support::{
    Admin, NEVER, TOKEN, guest, guest_path, stamp_host_config_with, with_custom_section,
};

/// The cursor the Dataverse poller saves at every round it completes.
const DATAVERSE_POLLED_AT: &str = "dataverse-opportunity-delta-at";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// `config` as replica `id` of the state in `schema`, with an artifact cache of its own in
/// `dir`.
fn as_replica(mut config: HostConfig, schema: &TestSchema, id: &str, dir: &Path) -> HostConfig {
    config.state.path = None;
    config.state.url = Some(schema.url.clone());
    config.host.replica_id = Some(id.to_owned());
    config.artifact_cache.dir = Some(dir.join(format!("compiled-{id}")));
    config.deploy.watch_dir = None;
    config
}

/// A replica of the `version_stamp` host (no sync) on `schema`.
async fn stamp_replica(
    schema: &TestSchema,
    dir: &Path,
    id: &str,
    extra: &str,
) -> (RunningHost, Admin) {
    let replica_dir = dir.join(id);
    std::fs::create_dir_all(&replica_dir).unwrap();
    let config = as_replica(stamp_host_config_with(&replica_dir, extra), schema, id, dir);
    let host = support::start(config).await;
    let admin = Admin::new(&host);
    (host, admin)
}

async fn health(admin: &Admin) -> Value {
    let (status, body) = admin.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Whether `/healthz` says this replica leads (a missing field fails the test).
async fn leads(admin: &Admin) -> bool {
    let body = health(admin).await;
    body["leader"]
        .as_bool()
        .unwrap_or_else(|| panic!("/healthz has no `leader`: {body}"))
}

/// Polls `admin` every 10 ms until step `step` serves `version` (a hang after [`NEVER`]);
/// answers how long that took.
async fn until_served(admin: &Admin, step: &str, version: &str) -> Duration {
    let start = Instant::now();
    while start.elapsed() < NEVER {
        if admin.active_version(step).await == version {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{} still serves {} of `{step}` after {NEVER:?}, not {version}",
        admin.base,
        admin.active_version(step).await
    );
}

/// Exactly one of `admins` leads, and stays the only one over several contention rounds;
/// answers its index.
async fn the_one_leader(admins: &[&Admin]) -> usize {
    let mut leader = None;
    for _ in 0..100 {
        let mut leading = Vec::new();
        for (i, admin) in admins.iter().enumerate() {
            if leads(admin).await {
                leading.push(i);
            }
        }
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if let [one] = leading[..] {
            leader = Some(one);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = leader.expect("no replica became the leader within 10 s");
    // Others retry every 2 s: over three rounds, still this one alone.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (i, admin) in admins.iter().enumerate() {
            assert_eq!(leads(admin).await, i == leader, "replica {i}'s leadership");
        }
    }
    leader
}

#[test]
fn one_replica_leads_and_runs_the_pollers_and_another_takes_over_when_it_stops() {
    let schema = TestSchema::new();
    runtime().block_on(async {
        let pc = PartnerCenter::new(PartnerCenterConfig::default());
        let pc_server = pc.serve().await.unwrap();
        let dv = Dataverse::new(DataverseConfig::default());
        let dv_server = dv.serve().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let emulators = Emulators::running(&pc, &pc_server, &dv, &dv_server);
        let wiring = HostWiring {
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            webhooks_listen: "127.0.0.1:0".parse().unwrap(),
            dataverse_poll_secs: 1,
            partner_center_poll_secs: 1,
            extra: String::new(),
            state_url: None,
            pipelines: default_pipelines(
                &guest_path("referral_to_opportunity.wasm"),
                &guest_path("opportunity_to_referral.wasm"),
            ),
        };
        let path = write_host_config(dir.path(), &emulators, &wiring)
            .await
            .unwrap();
        let config = HostConfig::load(&path).unwrap();
        provision(&config).await.unwrap();

        let a = support::start(as_replica(config.clone(), &schema, "a", dir.path())).await;
        let b = support::start(as_replica(config.clone(), &schema, "b", dir.path())).await;
        let (admin_a, admin_b) = (Admin::new(&a), Admin::new(&b));
        assert_eq!(health(&admin_a).await["replica_id"], "a");
        assert_eq!(health(&admin_b).await["replica_id"], "b");
        let leader = the_one_leader(&[&admin_a, &admin_b]).await;
        let metrics = admin_a
            .http
            .get(format!("{}/metrics", admin_a.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let gauge = if leader == 0 {
            "cosell_leader 1"
        } else {
            "cosell_leader 0"
        };
        assert!(
            metrics.contains(gauge),
            "no `{gauge}` in /metrics:\n{metrics}"
        );

        // The leader polls (the store is shared: read it as a third process would).
        let store =
            cosell::store::open(&as_replica(config.clone(), &schema, "reader", dir.path()).state)
                .unwrap()
                .sync;
        let polled_at = || store.cursor(DATAVERSE_POLLED_AT).unwrap();
        for _ in 0..100 {
            if polled_at().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(polled_at().is_some(), "the leader never polled Dataverse");

        let (stopped, survivor, survivor_admin) = match leader {
            0 => (a, b, admin_b),
            _ => (b, a, admin_a),
        };
        stopped.shutdown().await.unwrap();
        let stopped_at = Instant::now();
        let before = chrono::Utc::now();
        while !leads(&survivor_admin).await {
            assert!(
                stopped_at.elapsed() < NEVER,
                "no take-over within {NEVER:?} of the leader stopping"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "take-over after the leader stopped: {:?}",
            stopped_at.elapsed()
        );
        // Only the new leader is left to poll: the cursor moves on.
        let polled_since = || {
            polled_at()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .is_some_and(|t| t > before)
        };
        for _ in 0..100 {
            if polled_since() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(polled_since(), "the new leader's pollers did not run");
        survivor.shutdown().await.unwrap();
    });
}

#[test]
fn a_deploy_on_one_replica_is_served_by_the_other_by_its_notice_and_a_rollback_too() {
    let schema = TestSchema::new();
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // The periodic check is put off for an hour: only the notice can bring the version.
        let notice_only = "[host]\ndeployment_check_secs = 3600\n";
        let (a, admin_a) = stamp_replica(&schema, dir.path(), "a", notice_only).await;
        let (b, admin_b) = stamp_replica(&schema, dir.path(), "b", notice_only).await;
        let first = admin_a.active_version("pc-to-crm").await;
        assert_eq!(admin_b.active_version("pc-to-crm").await, first);

        let wasm = with_custom_section(&guest("testing/version_stamp.wasm"), "replicas", b"2");
        let (status, body) = admin_a.deploy("pc-to-crm", wasm).await;
        assert_eq!(status, 200, "{body}");
        let second = body["version"].as_str().unwrap().to_owned();
        assert_ne!(second, first);
        let took = until_served(&admin_b, "pc-to-crm", &second).await;
        println!("deploy on replica a served by replica b after {took:?}");
        // B serves it: its pipeline runs the new version.
        let (status, body) = admin_b
            .run("partner-center-to-crm", serde_json::json!({"n": 1}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["steps"][0]["version"], second.as_str());
        let steps = health(&admin_b).await["steps"].clone();
        assert!(steps.to_string().contains(&second), "{steps}");

        let (status, body) = admin_b.rollback("pc-to-crm", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["version"], first.as_str());
        let took = until_served(&admin_a, "pc-to-crm", &first).await;
        println!("rollback on replica b served by replica a after {took:?}");
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    });
}

#[test]
fn an_activation_whose_notice_was_missed_is_picked_up_by_the_periodic_check() {
    let schema = TestSchema::new();
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let every = "[host]\ndeployment_check_secs = 1\n";
        let (a, admin_a) = stamp_replica(&schema, dir.path(), "a", every).await;
        let (b, admin_b) = stamp_replica(&schema, dir.path(), "b", every).await;
        let first = admin_a.active_version("pc-to-crm").await;
        let wasm = with_custom_section(&guest("testing/version_stamp.wasm"), "replicas", b"3");
        let (status, body) = admin_a.deploy("pc-to-crm", wasm).await;
        assert_eq!(status, 200, "{body}");
        let second = body["version"].as_str().unwrap().to_owned();
        until_served(&admin_b, "pc-to-crm", &second).await;

        // An activation written without its notice, as one made while the replicas'
        // notification connections were down.
        execute(
            &schema.url,
            &format!(
                "INSERT INTO mapping_activations (step, version, reason, activated_at)
                 VALUES ('pc-to-crm', '{first}', 'rollback', '2026-12-05T00:00:00.000Z')"
            ),
        )
        .unwrap();
        let took_a = until_served(&admin_a, "pc-to-crm", &first).await;
        let took_b = until_served(&admin_b, "pc-to-crm", &first).await;
        println!(
            "missed notice made up by the periodic check after {took_a:?} (a), {took_b:?} (b)"
        );
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    });
}

/// A `cosell serve` process, killed (SIGKILL) when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cosell serve --replica-id <id>` on the `version_stamp` steps and `schema`; answers
/// the process and a client of the admin API it printed.
fn serve_replica(schema: &TestSchema, dir: &Path, id: &str) -> (Served, Admin) {
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[state]\nurl = \"{url}\"\n\
             [artifact_cache]\ndir = \"compiled-{id}\"\n\
             [[pipelines.partner-center-to-crm]]\nstep = \"pc-to-crm\"\ncomponent = \"{stamp}\"\n",
            url = schema.url,
            stamp = guest_path("testing/version_stamp.wasm").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .env_remove("RUST_LOG")
        .env("COSELL_ADMIN_TOKEN", TOKEN)
        .args(["serve", "--replica-id", id, "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("admin API on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_owned());
            }
        }
    });
    let served = Served(child);
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("cosell serve did not start within 60 s");
    let admin = Admin {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };
    (served, admin)
}

#[test]
fn a_killed_leader_process_is_replaced() {
    let schema = TestSchema::new();
    let dir = tempfile::tempdir().unwrap();
    // Started in turn: the first creates the schema's tables, the second finds them.
    let (a, admin_a) = serve_replica(&schema, dir.path(), "a");
    let (b, admin_b) = serve_replica(&schema, dir.path(), "b");
    runtime().block_on(async {
        assert_eq!(health(&admin_b).await["replica_id"], "b");
        let leader = the_one_leader(&[&admin_a, &admin_b]).await;
        let (killed, survivor) = match leader {
            0 => (a, &admin_b),
            _ => (b, &admin_a),
        };
        // SIGKILL: no shutdown, the operating system closes its connections.
        drop(killed);
        let killed_at = Instant::now();
        while !leads(survivor).await {
            assert!(
                killed_at.elapsed() < NEVER,
                "no take-over within {NEVER:?} of the leader's death"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "take-over after the leader was killed: {:?}",
            killed_at.elapsed()
        );
    });
}

/// A second `cosell serve` on `env`'s configuration and state: listeners on ports of its own,
/// and its drop directory and artifact cache beside its own copy of the configuration.
async fn second_replica(env: &SyncEnv) -> (Served, String) {
    let port = |url: &str| url.rsplit(':').next().unwrap().to_owned();
    let (admin, webhooks) = (port(&env.admin_url), port(&env.webhooks_url));
    let (admin_b, webhooks_b) = (support::free_port(), support::free_port());
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace(
            &format!("listen = \"127.0.0.1:{admin}\""),
            &format!("listen = \"127.0.0.1:{admin_b}\""),
        )
        .replace(
            &format!("listen = \"127.0.0.1:{webhooks}\""),
            &format!("listen = \"127.0.0.1:{webhooks_b}\""),
        );
    let dir = env.dir.path().join("replica-b");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cosell.toml");
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.join("host.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .args(["serve", "--replica-id", "b", "--config"])
        .arg(&config)
        .env("COSELL_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "cosell=debug,info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let served = Served(child);
    let admin_url = format!("http://127.0.0.1:{admin_b}");
    let health = format!("{admin_url}/healthz");
    let up = wait_until(Duration::from_secs(60), || async {
        reqwest::get(&health)
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    assert!(
        up.is_some(),
        "replica b did not come up: {}",
        std::fs::read_to_string(dir.join("host.log")).unwrap_or_default()
    );
    (served, admin_url)
}

/// Two `cosell serve` processes on one PostgreSQL schema, leases of 300 s. Replica A runs a
/// referral's event, held up by a Partner Center that answers no request within the client's
/// timeout, and is killed (SIGKILL) while it runs it; replica B, alive all along, syncs that
/// referral within seconds (printed): without the liveness lock it would wait for the lease.
#[test]
fn a_killed_replicas_running_event_is_synced_by_the_other_before_its_lease_ends() {
    use cosell_emulators::common::faults::FaultConfig;
    let options = Options {
        extra: "[sync]\nlease_secs = 300\n".into(),
        poll_secs: 0,
        backend: Backend::Postgres,
        bound: Duration::from_secs(300),
        ..Options::default()
    };
    runtime().block_on(SyncEnv::run_with(options, |mut env| async move {
        let queue = |url: String| async move {
            let (status, body) = Admin {
                base: url,
                http: reqwest::Client::new(),
            }
            .get("/admin/v1/queue")
            .await;
            assert_eq!(status, 200, "{body}");
            body
        };
        env.pc
            .faults()
            .set(FaultConfig {
                latency_ms: 120_000,
                ..FaultConfig::default()
            })
            .unwrap();
        let referral = env
            .pc
            .microsoft()
            .create_incoming(serde_json::json!({"name": "Killed replica deal"}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let running = wait_until(NEVER, || async {
            (queue(env.admin_url.clone()).await["running"] == 1).then_some(())
        })
        .await;
        assert!(
            running.is_some(),
            "A never ran the event\n{}",
            env.host_log()
        );
        let (_b, admin_b) = second_replica(&env).await;
        let now = queue(admin_b.clone()).await;
        assert!(
            now["running"] == 1 && env.opportunities_for_referral(&rid).await.is_empty(),
            "A must still be running the event when it is killed: {now}"
        );
        env.kill_host();
        let killed_at = Instant::now();
        env.pc.faults().set(FaultConfig::default()).unwrap();
        let synced = wait_until(NEVER, || async {
            let found = env.opportunities_for_referral(&rid).await;
            (!found.is_empty()).then_some(found)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "B did not sync the killed replica's event within {NEVER:?} (lease 300 s); its log:\n{}",
                replica_b_log(&env)
            )
        });
        println!(
            "killed replica's running event synced by the other after {:?}",
            killed_at.elapsed()
        );
        assert_eq!(synced.len(), 1, "one opportunity");
    }));
}

/// The log of replica B (see [`second_replica`]).
fn replica_b_log(env: &SyncEnv) -> String {
    std::fs::read_to_string(env.dir.path().join("replica-b/host.log")).unwrap_or_default()
}
