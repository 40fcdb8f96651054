//! The open-loop workload of figures 3, 5 and 8: Microsoft sellers creating and updating referrals
//! in the Partner Center emulator at a fixed rate, and the moment each change lands in the
//! Dataverse emulator as the opportunity write it causes.
//!
//! Open loop: a change is made on schedule whether or not earlier ones have landed, so a slow
//! host shows up as latency and backlog, never as a politely lower offered rate. The start of a
//! change is the moment the referral changes in Partner Center (the emulator then signs and
//! delivers its webhook, as Microsoft would); its end is the commit of the opportunity write
//! in Dataverse (`Dataverse::observe_writes`), both on this process's monotonic clock.
//! Creates land as a `Create` of an opportunity named after the referral; updates change the
//! deal value to a number unique to the update and land when a write carries it.

use anyhow::Result;
use cosell_bench::stats::Summary;
use cosell_emulators::dataverse::{Dataverse, ObservedWrite};
use cosell_emulators::partner_center::PartnerCenter;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// The shape of the offered load.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Changes per second.
    pub rate: f64,
    /// How long changes are offered.
    pub duration: Duration,
    /// Share of changes that update an earlier referral (the rest create new ones).
    pub update_share: f64,
    /// Distinct customers the referrals are spread over (accounts the host finds or creates).
    pub customers: usize,
    /// How long to wait after the last change for the stragglers.
    pub drain: Duration,
    /// A prefix of the referral names, unique per run in one environment.
    pub run: String,
}

/// What happened to the offered changes.
#[derive(Debug, Default)]
pub struct WorkloadOutcome {
    /// Latencies of the changes that landed, creates and updates together.
    pub latencies: Vec<Duration>,
    pub creates_sent: usize,
    pub updates_sent: usize,
    /// Changes that had not landed when the drain ended.
    pub missing: usize,
    /// Referrals whose opportunity was created more than once (double-processed creates).
    pub duplicate_creates: usize,
    /// How long offering the changes took (close to `duration` unless the driver fell behind).
    pub offered_for: Duration,
    /// From the first change offered to the last one landing (zero if none landed).
    pub landed_within: Duration,
}

impl WorkloadOutcome {
    /// Changes offered, creates and updates.
    pub fn changes(&self) -> usize {
        self.creates_sent + self.updates_sent
    }

    /// Changes landed per second, from the first offered to the last landed.
    pub fn landed_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.landed_within.as_secs_f64().max(1e-9)
    }

    /// The latencies, in milliseconds.
    pub fn latency_ms(&self) -> Summary {
        Summary::new(
            self.latencies
                .iter()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect(),
        )
    }
}

#[derive(Default)]
struct Tracker {
    /// Referral name → when its create was made.
    creates: HashMap<String, Instant>,
    /// Referral name → its opportunity id, once created.
    opportunities: HashMap<String, String>,
    /// Creates seen per referral name (more than one is a double-processed record).
    create_counts: HashMap<String, usize>,
    /// Unique deal value → (the referral's index, when its update was made).
    updates: HashMap<i64, (usize, Instant)>,
    latencies: Vec<Duration>,
    /// When the latest write that landed a change committed.
    last_landed: Option<Instant>,
}

impl Tracker {
    fn landed(&mut self, at: Instant, sent: Instant) {
        self.latencies.push(at.saturating_duration_since(sent));
        self.last_landed = self.last_landed.max(Some(at));
    }

    fn observe(&mut self, write: &ObservedWrite, prefix: &str) {
        if write.entity != "opportunity" {
            return;
        }
        // The name as written carries the seller's ✔ mark after a space; ours have no spaces.
        if write.message == "Create"
            && let Some(name) = write.attributes.get("name").and_then(Value::as_str)
            && let Some(name) = name.split_whitespace().next()
            && name.starts_with(prefix)
        {
            *self.create_counts.entry(name.to_owned()).or_default() += 1;
            self.opportunities
                .insert(name.to_owned(), write.id.to_string());
            if let Some(sent) = self.creates.remove(name) {
                self.landed(write.at, sent);
            }
        }
        // An update made before its referral's create landed lands with the create.
        for value in write.attributes.values() {
            if let Some(n) = value.as_f64().map(|v| v as i64)
                && let Some((_, sent)) = self.updates.remove(&n)
            {
                self.landed(write.at, sent);
            }
        }
    }
}

/// Offers `workload` to the host through the emulators and waits for it to land.
pub async fn run(
    pc: &PartnerCenter,
    dv: &Dataverse,
    workload: &Workload,
) -> Result<WorkloadOutcome> {
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let mut writes = dv.observe_writes();
    let observer = {
        let (tracker, prefix) = (tracker.clone(), workload.run.clone());
        tokio::spawn(async move {
            loop {
                match writes.recv().await {
                    Ok(write) => tracker.lock().expect("tracker").observe(&write, &prefix),
                    Err(RecvError::Lagged(n)) => {
                        eprintln!("warning: the write observer missed {n} writes")
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        })
    };

    let microsoft = pc.microsoft();
    let total = (workload.rate * workload.duration.as_secs_f64()).round() as usize;
    let period = Duration::from_secs_f64(1.0 / workload.rate);
    let mut ticker = tokio::time::interval(period);
    // Burst: a late tick is made up at once, so the offered total and average rate hold.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut referrals: Vec<(String, String)> = Vec::new(); // (referral id, name)
    let (mut creates_sent, mut updates_sent) = (0, 0);
    let started = Instant::now();
    for n in 0..total {
        ticker.tick().await;
        let update =
            referrals.len() > 20 && (n % 100) < (workload.update_share * 100.0).round() as usize;
        // An earlier referral whose last update has landed (a second update before the first
        // lands would overwrite its value, which then never arrives).
        let target = update
            .then(|| {
                let t = tracker.lock().expect("tracker");
                (0..16)
                    .map(|k| (n * 7919 + k * 104_729) % (referrals.len() - 10))
                    .find(|&i| !t.updates.values().any(|(r, _)| *r == i))
            })
            .flatten();
        if let Some(index) = target {
            let (id, _) = &referrals[index];
            let value = 900_000_000 + n as i64;
            tracker
                .lock()
                .expect("tracker")
                .updates
                .insert(value, (index, Instant::now()));
            microsoft
                .update(id, json!({"details": {"dealValue": value}}))
                .map_err(|e| anyhow::anyhow!("updating referral {id} in the emulator: {e:?}"))?;
            updates_sent += 1;
        } else {
            let name = format!("{}-{n:06}", workload.run);
            let customer = n % workload.customers;
            tracker
                .lock()
                .expect("tracker")
                .creates
                .insert(name.clone(), Instant::now());
            let referral = microsoft.create_incoming(json!({
                "name": name,
                "customerProfile": {
                    "name": format!("Bench Customer {customer:03}"),
                    "address": {"postalCode": format!("{:05}", 10_000 + customer)},
                },
                "details": {"dealValue": 10_000 + n},
            }));
            referrals.push((referral["id"].as_str().unwrap_or_default().to_owned(), name));
            creates_sent += 1;
        }
    }
    let offered_for = started.elapsed();

    let deadline = Instant::now() + workload.drain;
    loop {
        let waiting = {
            let t = tracker.lock().expect("tracker");
            t.creates.len() + t.updates.len()
        };
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A last moment for a create to be written twice, if it was going to be.
    tokio::time::sleep(Duration::from_millis(500)).await;
    observer.abort();
    let tracker = tracker.lock().expect("tracker");
    Ok(WorkloadOutcome {
        latencies: tracker.latencies.clone(),
        creates_sent,
        updates_sent,
        missing: tracker.creates.len() + tracker.updates.len(),
        duplicate_creates: tracker.create_counts.values().filter(|&&c| c > 1).count(),
        offered_for,
        landed_within: tracker
            .last_landed
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(started)),
    })
}
