//! The backfill (`cosell::sync::backfill`, `cosell backfill`) against both emulators, one module
//! per promise, under `backfill/`:
//!
//! - `write_modes.rs`: every referral becomes one opportunity with the mapped columns and
//!   lookups, closed ones closed, one account per customer, every pair linked for the sync
//!   engine; bulk (`CreateMultiple`), `$batch` and per-record modes write the same rows and
//!   report the same refusals and failures; a `CreateMultiple` refused for one record is written
//!   again as a `$batch` while bulk goes on, and where Dataverse takes no `CreateMultiple` a bulk
//!   run writes `$batch`es after one refused request; a re-run creates nothing;
//! - `created_once.rs`: a dry run writes nothing, and a run adopts the opportunity a stopped run
//!   left without its link; with the answers of applied writes lost, and under tight service
//!   protection limits (their `Retry-After` waited out), every opportunity, account and contact
//!   is created once;
//! - `next_to_the_host.rs`: `cosell backfill` next to a running `cosell serve` (the host's state
//!   in SQLite and in PostgreSQL) skips what the host synced, creates the rest once and reports
//!   the failed referral, and the live sync engine takes the backfilled pairs as synced.
//!
//! This file keeps what they share: the emulators and the host configuration (`Env`), the run
//! options, the referrals, and how the tests read and check what was written.

mod support;

#[path = "backfill/created_once.rs"]
mod created_once;
#[path = "backfill/next_to_the_host.rs"]
mod next_to_the_host;
#[path = "backfill/write_modes.rs"]
mod write_modes;

use cosell::config::{HostConfig, Secret};
use cosell::connections::dataverse::{DataverseClient, DataverseSettings};
use cosell::connections::telemetry::Observer;
use cosell::store::sqlite::SqliteStore;
use cosell::sync::backfill::{Backfill, BackfillReport, Mode, Options, referrals_from};
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use support::commands_env::CommandsEnv;

/// Every test is bounded.
const BOUND: Duration = Duration::from_secs(240);

/// A Dataverse user of its own for the test's reads, so they use none of the backfill's quota.
const READER: (&str, &str) = ("backfill-test-reader", "reader-secret");

/// How the test reads opportunities: with the lookups the mapping names by value.
const EXPANDED: &str = "$expand=customerid_account($select=name,address1_postalcode),parentcontactid($select=emailaddress1),transactioncurrencyid($select=isocurrencycode)";

/// Both emulators on loopback and a host configuration for them (no host running).
struct Env {
    pc: PartnerCenter,
    dv: Dataverse,
    config: HostConfig,
    reader: DataverseClient,
    _emulators: CommandsEnv,
}

impl Env {
    async fn start(dataverse: DataverseConfig) -> Self {
        let emulators = CommandsEnv::start_with(PartnerCenterConfig::default(), dataverse).await;
        emulators.dv.provision_cosell();
        let config = HostConfig::load(&emulators.config).unwrap();
        let reader = reader(&emulators.dv, &emulators.dv_server.url());
        Env {
            pc: emulators.pc.clone(),
            dv: emulators.dv.clone(),
            config,
            reader,
            _emulators: emulators,
        }
    }

    async fn backfill(&self, referrals: &[Value], options: Options) -> BackfillReport {
        let backfill = Backfill::from_config(&self.config).await.unwrap();
        backfill
            .run(referrals_from(referrals.to_vec()), &options, |_| {})
            .await
            .unwrap()
    }

    /// [`backfill`](Self::backfill) with `observer` watching the backfill's Dataverse requests.
    async fn backfill_observed(
        &self,
        referrals: &[Value],
        options: Options,
        observer: Arc<dyn Observer>,
    ) -> BackfillReport {
        let backfill = Backfill::from_config(&self.config).await.unwrap();
        backfill.dataverse.observe(observer);
        backfill
            .run(referrals_from(referrals.to_vec()), &options, |_| {})
            .await
            .unwrap()
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.config.state.sqlite_path().unwrap()).unwrap()
    }
}

/// A client of the test's own Dataverse user.
fn reader(dv: &Dataverse, url: &str) -> DataverseClient {
    dv.tokens().register_client(READER.0, READER.1);
    DataverseClient::new(DataverseSettings {
        url: url.to_owned(),
        token_url: format!("{url}/{}/oauth2/v2.0/token", dv.config().tenant_id),
        client_id: READER.0.into(),
        client_secret: Secret::new(READER.1),
        scope: None,
        timeout: Duration::from_secs(10),
        max_retries: 3,
        max_concurrency: 8,
    })
    .unwrap()
    .with_page_size(5000)
}

fn batch(size: usize, concurrency: usize) -> Options {
    Options {
        mode: Mode::Batch { size, concurrency },
        ..Options::default()
    }
}

fn bulk(size: usize, concurrency: usize) -> Options {
    Options {
        mode: Mode::Bulk { size, concurrency },
        ..Options::default()
    }
}

fn per_record(concurrency: usize) -> Options {
    Options {
        mode: Mode::PerRecord { concurrency },
        ..Options::default()
    }
}

/// `count` realistic referrals in every state (Partner Center's demo data), oldest first.
fn seeded(pc: &PartnerCenter, count: usize, seed: u64) -> Vec<Value> {
    pc.seed_demo_data(count, seed);
    let mut referrals = pc.referrals();
    referrals.sort_by_key(|r| r["createdDateTime"].as_str().unwrap_or_default().to_owned());
    referrals
}

/// A copy of `referral` with a new id and `changes` merged in.
fn variant(referral: &Value, changes: Value) -> Value {
    let mut copy = referral.clone();
    copy["id"] = json!(cosell::domain::ids::new_uuid());
    merge(&mut copy, &changes);
    copy
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (k, v) in patch {
                merge(target.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn id(referral: &Value) -> String {
    referral["id"].as_str().unwrap().to_owned()
}

fn is_closed(referral: &Value) -> bool {
    referral["status"] == "Closed"
}

/// Every opportunity, by the referral id it carries (each must carry one, once).
async fn opportunities(reader: &DataverseClient) -> BTreeMap<String, Value> {
    let rows = reader.query("opportunities", EXPANDED).await.unwrap();
    let mut by_referral = BTreeMap::new();
    for row in rows {
        let rid = row["cosell_referralidentifier"]
            .as_str()
            .expect("every opportunity carries a referral id")
            .to_owned();
        let opportunity = row["opportunityid"].clone();
        if let Some(first) = by_referral.insert(rid.clone(), row) {
            panic!(
                "referral {rid} has two opportunities: {} and {opportunity}",
                first["opportunityid"]
            );
        }
    }
    by_referral
}

/// The native default mapping of `referral` (what the component computes).
fn mapped(referral: &Value) -> Map<String, Value> {
    let context = mapping_rules::Context {
        direction: mapping_rules::Direction::PartnerCenterToCrm,
        event: "backfill".into(),
        tenant: "default".into(),
        mapping_name: "referral-to-opportunity".into(),
        mapping_version: String::new(),
        timestamp: chrono::Utc::now().to_rfc3339(),
    };
    let config: BTreeMap<String, String> = BTreeMap::new();
    let text =
        mapping_rules::referral_to_opportunity(&context, &referral.to_string(), None, &config)
            .expect("the referral maps");
    serde_json::from_str(&text).unwrap()
}

fn same_value(held: &Value, wanted: &Value) -> bool {
    match (held.as_f64(), wanted.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        _ => held == wanted,
    }
}

/// Checks that `opportunity` holds every column the mapping gives `referral`, its lookups
/// resolved, named with the ✔ mark, and closed as the referral is.
fn assert_mapped(referral: &Value, opportunity: &Value) {
    let rid = id(referral);
    for (column, wanted) in mapped(referral) {
        let held = &opportunity[&column];
        match column.as_str() {
            "name" => assert_eq!(
                held,
                &json!(format!("{} ✔", wanted.as_str().unwrap())),
                "{rid}"
            ),
            "cosell_audit" => assert!(
                held.as_str().is_some_and(|a| a.contains(&rid)),
                "{rid}: the audit line names the referral: {held}"
            ),
            "transactioncurrencyid" => {
                assert_eq!(held["isocurrencycode"], wanted["isocurrencycode"], "{rid}")
            }
            "customerid_account" => {
                for field in ["name", "address1_postalcode"] {
                    assert_eq!(held[field], wanted[field], "{rid}: account {field}");
                }
                let email = &wanted["contact_customer_accounts"][0]["emailaddress1"];
                assert_eq!(
                    opportunity["parentcontactid"]["emailaddress1"], *email,
                    "{rid}: the primary contact"
                );
            }
            _ => assert!(
                same_value(held, &wanted),
                "{rid}: {column} is {held}, the mapping wants {wanted}"
            ),
        }
    }
    let state = opportunity["statecode"].as_i64().unwrap();
    assert_eq!(
        state != 0,
        is_closed(referral),
        "{rid}: closed as the referral is"
    );
}

/// An opportunity as compared across runs: its columns without ids, stamps and the audit line
/// (which carries the time), its lookups by their names.
fn comparable(opportunity: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in opportunity.as_object().unwrap() {
        let volatile = [
            "opportunityid",
            "createdon",
            "modifiedon",
            "versionnumber",
            "actualclosedate",
            "cosell_audit",
        ];
        if k.starts_with('_') || k.contains('@') || volatile.contains(&k.as_str()) {
            continue;
        }
        let v = match v {
            Value::Object(lookup) => Value::Object(
                lookup
                    .iter()
                    .filter(|(k, _)| !k.ends_with("id") && !k.contains('@'))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            v => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// Accounts by name and postal code, and how many of each.
async fn accounts(reader: &DataverseClient) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for row in reader
        .query("accounts", "$select=name,address1_postalcode")
        .await
        .unwrap()
    {
        let key = (
            row["name"].as_str().unwrap_or_default().to_owned(),
            row["address1_postalcode"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}
