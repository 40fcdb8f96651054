//! The scale-out drill (docs/scale-out.md): three `cosell serve` replicas on one PostgreSQL
//! behind HAProxy, the emulators sending 5,000 changes from both sides (webhooks, and the
//! pollers as the safety net), while a random replica is killed (SIGKILL) about every 10 s,
//! the leader at least twice, and started again a moment later; in the middle, a deploy on one
//! replica and a rollback on another, and a restart of the PostgreSQL server.
//!
//! Verdict: no change lost, no referral, opportunity, account or contact created twice (the
//! reliability drills' workload and verdict, `support::drill`), every replica serving the
//! deployed and then the rolled-back version by its notice (the periodic check is put off for
//! an hour), and after each death of the leader the pollers running again on another replica.
//! How long each of those took is printed (docs/scale-out.md has the figures), never asserted:
//! a test waits [`support::NEVER`] before it calls a hang.
//!
//! The state is a PostgreSQL cluster of the drill's own (it restarts it; other tests share the
//! common one). `COSELL_DRILL_CHANGES` sends fewer (or more) changes, for a quick look while
//! working on it. The drill is `#[ignore]`d, so `cargo nextest run` stays quick; `make test`
//! (and so CI) runs it with `--run-ignored all`.

mod support;

use cosell_emulators::dataverse::{DataverseConfig, ServiceProtectionLimits};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use std::time::{Duration, Instant};
use support::NEVER;
use support::backend::Backend;
use support::drill::Drill;
use support::sync_env::{Options, SyncEnv};
use support::{Admin, TOKEN, guest, with_custom_section};

/// The seed of the workload and of the kills: a failure can be replayed.
const SEED: u64 = 0x5ca1e0;

/// How many changes the drill sends, unless `COSELL_DRILL_CHANGES` says otherwise.
const CHANGES: usize = 5_000;

/// How many replicas run.
const REPLICAS: usize = 3;

/// The rate the changes are sent at, per second (open loop: whether the earlier ones landed
/// or not).
const RATE: f64 = 25.0;

/// The step deployed on one replica and rolled back on another.
const STEP: &str = "referral-to-opportunity";

/// The cursor the leader's Dataverse poller saves at every round it completes.
const DATAVERSE_POLLED_AT: &str = "dataverse-opportunity-delta-at";

/// Requests the host's application user may make to Dataverse in 5 minutes. Dataverse counts
/// its service protection limits per user and per web server (6,000 each), and spreads an
/// organization's requests over its web servers; the emulator is one server, so the drill's
/// organization is given the budget of ten. With one server's, the drill measures Dataverse's
/// limit (see docs/scale-out.md), not the replicas.
const DATAVERSE_REQUESTS: usize = 60_000;

/// Quick retries.
/// The drill's host settings. The periodic check of deployed versions is put off past the
/// drill's end, so a replica can only learn of a deploy from its notice.
const HOST_SETTINGS: &str =
    "[sync]\nretry_base_ms = 200\nmax_attempts = 20\n[host]\ndeployment_check_secs = 3600\n";

/// What the chaos did, and what it measured.
#[derive(Default)]
struct Chaos {
    /// Kills, with whether the victim led.
    kills: Vec<(usize, bool)>,
    /// After each death of the leader: how long until another replica's pollers had run a
    /// round (measured in tasks of their own, collected at the end); `None`: not after
    /// [`NEVER`].
    takeovers: Vec<tokio::task::JoinHandle<Option<Duration>>>,
    /// How long every replica took to serve the deployed, then the rolled-back, version, and
    /// on which replica it was made; `None`: not after [`NEVER`].
    swaps: Vec<(Milestone, usize, Option<Duration>)>,
}

/// What happens at a point of the drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Milestone {
    /// A new version of [`STEP`] deployed on one replica.
    Deploy,
    /// [`STEP`] rolled back on another replica.
    Rollback,
    /// The PostgreSQL server restarted.
    RestartDatabase,
}

/// The time until the next kill: about 10 s.
fn kill_gap(rng: &mut StdRng) -> Duration {
    Duration::from_millis(rng.random_range(8_000..12_000))
}

/// A client of replica `i`'s own admin API.
fn replica_admin(env: &SyncEnv, i: usize) -> Admin {
    Admin {
        base: env.hosts.admin_url(i),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    }
}

/// Whether replica `i` says it leads (`false` when it does not answer: it may be starting).
async fn leads(env: &SyncEnv, i: usize) -> bool {
    let admin = replica_admin(env, i);
    let Ok(response) = admin
        .http
        .get(format!("{}/healthz", admin.base))
        .bearer_auth(TOKEN)
        .send()
        .await
    else {
        return false;
    };
    let body: Value = response.json().await.unwrap_or_default();
    body["leader"].as_bool() == Some(true)
}

/// The running replica that leads now, if one does.
async fn leader(env: &SyncEnv) -> Option<usize> {
    for i in 0..env.hosts.len() {
        if env.hosts.is_running(i) && leads(env, i).await {
            return Some(i);
        }
    }
    None
}

/// A task answering how long after `since` the pollers completed a round that began after it
/// (the Dataverse poller's cursor is the time its round began), or `None` if they had not
/// after [`NEVER`].
fn pollers_back(env: &SyncEnv, since: Instant) -> tokio::task::JoinHandle<Option<Duration>> {
    let store = env.state_store().sync;
    let wall = chrono::Utc::now();
    tokio::spawn(async move {
        loop {
            let polled = tokio::task::block_in_place(|| store.cursor(DATAVERSE_POLLED_AT))
                .ok()
                .flatten()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
            if polled.is_some_and(|t| t > wall) {
                return Some(since.elapsed());
            }
            if since.elapsed() > NEVER {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

impl Chaos {
    /// Kills a replica (the leader on every other kill until it has died twice, else one at
    /// random among those running); answers which, to be started again later.
    async fn kill(&mut self, env: &mut SyncEnv, rng: &mut StdRng) -> usize {
        let leader_kills = self.kills.iter().filter(|(_, led)| *led).count();
        let leader = leader(env).await;
        let running: Vec<usize> = (0..env.hosts.len())
            .filter(|&i| env.hosts.is_running(i))
            .collect();
        let victim = match leader {
            Some(l) if leader_kills < 2 && self.kills.len().is_multiple_of(2) => l,
            _ => running[rng.random_range(0..running.len())],
        };
        env.hosts.kill(victim);
        let led = leader == Some(victim);
        if led {
            self.takeovers.push(pollers_back(env, Instant::now()));
        }
        self.kills.push((victim, led));
        victim
    }

    /// Deploys a new version of [`STEP`] (the same mapping, another content hash) on replica
    /// `on`, or rolls it back there, and records how long until every replica served it
    /// (`None`: not after [`NEVER`]).
    async fn swap(&mut self, env: &SyncEnv, what: Milestone, on: usize) {
        let admin = replica_admin(env, on);
        let (status, body) = match what {
            Milestone::Deploy => {
                let wasm = with_custom_section(
                    &guest("referral_to_opportunity.wasm"),
                    "scale-out-drill",
                    b"2",
                );
                admin.deploy(STEP, wasm).await
            }
            _ => admin.rollback(STEP, None).await,
        };
        assert_eq!(status, 200, "{what:?} on replica {on}: {body}");
        let version = body["version"].as_str().unwrap().to_owned();
        let started = Instant::now();
        let replicas: Vec<Admin> = (0..env.hosts.len())
            .map(|i| replica_admin(env, i))
            .collect();
        loop {
            let mut serving = 0;
            for replica in &replicas {
                if replica.active_version(STEP).await == version {
                    serving += 1;
                }
            }
            if serving == replicas.len() {
                self.swaps.push((what, on, Some(started.elapsed())));
                return;
            }
            if started.elapsed() > NEVER {
                self.swaps.push((what, on, None));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How many changes to send.
fn changes() -> usize {
    std::env::var("COSELL_DRILL_CHANGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CHANGES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a drill of several minutes: make test runs it"]
async fn replicas_killed_at_random_lose_nothing_and_agree_on_every_deployment() {
    let changes = changes();
    let options = Options {
        extra: HOST_SETTINGS.into(),
        poll_secs: 1,
        bound: Duration::from_secs(1_500),
        backend: Backend::OwnPostgres,
        replicas: REPLICAS,
        dataverse: DataverseConfig {
            limits: ServiceProtectionLimits {
                requests: DATAVERSE_REQUESTS,
                // Ten web servers' execution time too: the emulator charges each operation
                // its emulated execution time, and 25 changes/s use most of one server's.
                execution_time: chrono::Duration::minutes(20 * 10),
                ..ServiceProtectionLimits::default()
            },
            ..DataverseConfig::default()
        },
    };
    SyncEnv::run_with(options, |mut env| async move {
        let mut drill = Drill::new(&env, SEED).await;
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut chaos = Chaos::default();
        let started = Instant::now();
        let mut next_kill = started + kill_gap(&mut rng);
        let mut restarts: Vec<(usize, Instant)> = Vec::new();
        // Milestones, by changes sent: the deploy, the rollback, the database's restart.
        let mut milestones = vec![
            (changes * 3 / 10, Milestone::Deploy),
            (changes / 2, Milestone::Rollback),
            (changes * 7 / 10, Milestone::RestartDatabase),
        ]
        .into_iter()
        .peekable();
        let mut database_back = None;
        while drill.sent.total() < changes {
            drill.step(&env).await;
            // Open loop at RATE: changes are made on schedule.
            let due = started + Duration::from_secs_f64(drill.sent.total() as f64 / RATE);
            tokio::time::sleep_until(due.into()).await;

            // Killed replicas start again 1-4 s after their death.
            restarts.retain(|&(i, at)| {
                let due = Instant::now() >= at;
                if due {
                    env.hosts.spawn(i);
                }
                !due
            });
            if Instant::now() >= next_kill {
                let victim = chaos.kill(&mut env, &mut rng).await;
                let back = Instant::now() + Duration::from_millis(rng.random_range(1_000..4_000));
                restarts.push((victim, back));
                next_kill = Instant::now() + kill_gap(&mut rng);
            }
            let Some((_, milestone)) =
                milestones.next_if(|(at, _)| drill.sent.total() >= *at)
            else {
                continue;
            };
            match milestone {
                Milestone::Deploy | Milestone::Rollback => {
                    // Every replica up, so each one's switch is measured.
                    for (i, _) in restarts.drain(..) {
                        env.hosts.spawn(i);
                    }
                    for i in 0..env.hosts.len() {
                        env.hosts.until_healthy(i, Duration::from_secs(60)).await;
                    }
                    let on = rng.random_range(0..REPLICAS);
                    // The rollback on another replica than the deploy.
                    let on = match (milestone, chaos.swaps.first()) {
                        (Milestone::Rollback, Some(&(_, deployed_on, _))) if deployed_on == on => {
                            (on + 1) % REPLICAS
                        }
                        _ => on,
                    };
                    chaos.swap(&env, milestone, on).await;
                    next_kill = Instant::now() + kill_gap(&mut rng);
                }
                Milestone::RestartDatabase => {
                    let restarting = Instant::now();
                    tokio::task::block_in_place(|| env.restart_state_server());
                    database_back = Some(pollers_back(&env, restarting));
                }
            }
        }
        let sending = started.elapsed();
        for (i, _) in restarts.drain(..) {
            env.hosts.spawn(i);
        }
        let settled = drill.settle(&env, Duration::from_secs(600)).await;
        let mut takeovers = Vec::new();
        for takeover in chaos.takeovers.drain(..) {
            takeovers.push(takeover.await.unwrap());
        }
        let database_back = match database_back {
            Some(back) => Some(back.await.unwrap()),
            None => None,
        };
        let leader_kills = chaos.kills.iter().filter(|(_, led)| *led).count();
        let dataverse = env.dv.service_protection();
        println!(
            "scale-out drill: {} in {:.0} s over {REPLICAS} replicas; {} SIGKILLs ({leader_kills} \
             of the leader); pollers back after each leader death: {takeovers:?}; every replica \
             serving the new version: {:?}; PostgreSQL restarted, pollers back after {:?}; {settled}; \
             Dataverse requests (host and seller): {} admitted, {} refused",
            drill.sent,
            sending.as_secs_f64(),
            chaos.kills.len(),
            chaos.swaps,
            database_back,
            dataverse.admitted,
            dataverse.refused,
        );
        let log = env.keep_host_log("scale-out-drill");
        assert!(
            settled.clean(),
            "{:#?}\n{}\nhost logs: {}",
            settled.verdict,
            settled.queue,
            log.display()
        );
        assert!(drill.sent.total() >= changes, "{}", drill.sent);
        assert!(leader_kills >= 2, "the leader was killed {leader_kills} times");
        // Another replica took the lead: nothing else would run the pollers again (the events
        // a dead leader held wait out a lease of 300 s, five times the wait).
        assert!(
            takeovers.iter().all(Option::is_some),
            "the pollers did not run again after every death of the leader: {takeovers:?}"
        );
        assert_eq!(chaos.swaps.len(), 2, "a deploy and a rollback");
        // Every replica served each swap by its notice: the periodic check is put off an hour.
        for (what, on, took) in &chaos.swaps {
            assert!(
                took.is_some(),
                "the {what:?} on replica {on} never reached every replica"
            );
        }
        let database_back = database_back.expect("PostgreSQL was restarted");
        assert!(
            database_back.is_some(),
            "the pollers never ran again after PostgreSQL's restart"
        );
    })
    .await;
}
