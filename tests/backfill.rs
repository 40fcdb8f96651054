//! The backfill (`cosell::sync::backfill`, `cosell backfill`) against both emulators: every
//! referral becomes one opportunity with the mapped columns and lookups, closed ones closed;
//! `$batch` and per-record modes write the same rows; a re-run, a run next to the host and a run
//! after a stopped one create nothing twice; a dry run writes nothing; refused and failed
//! referrals are reported and the rest written; tight service protection limits are waited
//! out; and the live sync engine takes the backfilled pairs as synced (with the host's state in
//! SQLite and in PostgreSQL).

mod support;

use cosell::config::{HostConfig, Secret};
use cosell::connections::dataverse::{DataverseClient, DataverseSettings};
use cosell::connections::telemetry::Observer;
use cosell::store::SyncStore;
use cosell::store::sqlite::SqliteStore;
use cosell::sync::backfill::{
    Backfill, BackfillReport, ClosedReferrals, Mode, Options, referrals_from,
};
use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig, ServiceProtectionLimits};
use cosell_emulators::partner_center::webhooks::WebhookEvent;
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use support::backend::{Backend, on_both_backends};
use support::commands_env::CommandsEnv;
use support::sync_env::{Options as EnvOptions, SETTLE, SyncEnv, wait_until};

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

/// Counts the Dataverse requests a client sends, by operation.
#[derive(Default)]
struct Operations(std::sync::Mutex<BTreeMap<&'static str, u64>>);

impl Operations {
    fn count(&self, operation: &str) -> u64 {
        self.0.lock().unwrap().get(operation).copied().unwrap_or(0)
    }
}

impl Observer for Operations {
    fn request(&self, _: &'static str, operation: &'static str, _: Option<u16>, _: Duration) {
        *self.0.lock().unwrap().entry(operation).or_default() += 1;
    }

    fn token(&self, _: &'static str, _: Result<(), &str>) {}
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
    copy["id"] = json!(cosell::connections::retry::new_uuid());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_batch_and_per_record_modes_create_the_same_opportunities_and_report_the_same_refusals()
 {
    tokio::time::timeout(BOUND, async {
        let (a, b, c) = (
            Env::start(DataverseConfig::default()).await,
            Env::start(DataverseConfig::default()).await,
            Env::start(DataverseConfig::default()).await,
        );
        let good = seeded(&a.pc, 160, 7);
        let template = good[0].clone();
        let bad_country = json!({"customerProfile": {"address": {"country": "Atlantis"}}});
        let refused = variant(&template, bad_country);
        let no_currency = variant(&template, json!({"details": {"currency": "ZZZ"}}));
        let microsoft_half = variant(
            &template,
            json!({"target": [{"type": "BusinessProfileLocation", "id": "msft"}]}),
        );
        let mut referrals = good.clone();
        referrals.extend([refused.clone(), no_currency.clone(), microsoft_half, good[3].clone()]);

        let by_batch = a.backfill(&referrals, batch(32, 3)).await;
        let one_by_one = b.backfill(&referrals, per_record(6)).await;
        let by_bulk = c.backfill(&referrals, bulk(32, 3)).await;

        let closed = good.iter().filter(|r| is_closed(r)).count() as u64;
        assert!(closed > 0 && closed < 160, "the demo data has both open and closed referrals");
        for report in [&by_batch, &one_by_one, &by_bulk] {
            assert_eq!((report.created, report.closed), (160, closed), "{report:#?}");
            assert_eq!(report.already_there, 0);
            assert_eq!(report.refused.len(), 1, "{report:#?}");
            assert_eq!(report.refused[0].referral_id, id(&refused));
            assert!(report.refused[0].reason.contains("country"), "{report:#?}");
            assert_eq!(report.failed.len(), 1, "{report:#?}");
            assert_eq!(report.failed[0].referral_id, id(&no_currency));
            assert!(report.failed[0].reason.contains("ZZZ is not set up"), "{report:#?}");
            let skipped: Vec<&str> = report.skipped.keys().map(String::as_str).collect();
            assert_eq!(report.skipped_total(), 2, "{report:#?}");
            assert!(skipped.iter().any(|r| r.contains("Microsoft-targeted")), "{skipped:?}");
            assert!(skipped.iter().any(|r| r.contains("listed twice")), "{skipped:?}");
            assert_eq!(report.processed(), referrals.len() as u64);
        }
        println!(
            "backfill of {} referrals: $batch {} requests, {} 429s, {:.0} referrals/s; per record {} requests, {} 429s, {:.0} referrals/s",
            referrals.len(),
            by_batch.requests,
            by_batch.throttled,
            by_batch.records_per_second(),
            one_by_one.requests,
            one_by_one.throttled,
            one_by_one.records_per_second()
        );
        assert!(
            by_batch.requests * 4 < one_by_one.requests,
            "$batch sends far fewer requests: {} vs {}",
            by_batch.requests,
            one_by_one.requests
        );
        // Bulk mode created every open referral's opportunity with CreateMultiple (the closed
        // ones' create and close go in $batch change sets) and never fell back.
        assert_eq!(by_bulk.bulk_created, 160 - closed, "{by_bulk:#?}");
        assert_eq!(by_bulk.bulk_refused, None);
        assert_eq!(by_batch.bulk_created, 0);

        // One opportunity per good referral, as the mapping says, closed ones closed; nothing
        // for the refused or failed ones.
        let rows_a = opportunities(&a.reader).await;
        let rows_b = opportunities(&b.reader).await;
        assert_eq!(
            rows_a.keys().cloned().collect::<BTreeSet<_>>(),
            good.iter().map(id).collect::<BTreeSet<_>>()
        );
        for referral in &good {
            assert_mapped(referral, &rows_a[&id(referral)]);
        }
        // Every mode wrote the same rows.
        let rows_c = opportunities(&c.reader).await;
        for (rid, row) in &rows_a {
            assert_eq!(comparable(row), comparable(&rows_b[rid]), "referral {rid}");
            assert_eq!(comparable(row), comparable(&rows_c[rid]), "referral {rid}");
        }
        assert_eq!(rows_c.len(), rows_a.len());
        // One account per customer (name and postal code).
        let accounts = accounts(&a.reader).await;
        let customers: BTreeSet<(String, String)> = good
            .iter()
            .map(|r| {
                let p = &r["customerProfile"];
                let name = p["name"].as_str().unwrap().to_owned();
                (name, p["address"]["postalCode"].as_str().unwrap().to_owned())
            })
            .collect();
        assert_eq!(accounts.len(), customers.len(), "{accounts:?}");
        assert!(accounts.values().all(|n| *n == 1), "{accounts:?}");
        // Each pair is linked for the sync engine: ids and the referral as synced, no claim on
        // the opportunity's state.
        let store = a.store();
        for referral in &good {
            let link = store.link_by_referral(&id(referral)).unwrap().expect("linked");
            let opportunity = rows_a[&id(referral)]["opportunityid"].as_str();
            assert_eq!(link.opportunity_id.as_deref(), opportunity);
            assert!(link.pc_hash.is_some() && link.pc_snapshot.is_some());
            assert!(link.crm_hash.is_none() && link.last_error.is_none());
        }

        // A second run creates nothing.
        let again = a.backfill(&referrals, batch(32, 3)).await;
        assert_eq!((again.created, again.already_there), (0, 160), "{again:#?}");
        assert_eq!(opportunities(&a.reader).await.len(), 160);
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_multiple_refused_for_one_record_is_written_as_a_batch_and_bulk_goes_on() {
    tokio::time::timeout(BOUND, async {
        let env = Env::start(DataverseConfig::default()).await;
        let open: Vec<Value> = seeded(&env.pc, 60, 21)
            .into_iter()
            .filter(|r| !is_closed(r))
            .take(24)
            .collect();
        assert_eq!(open.len(), 24, "the demo data has 24 open referrals");
        // The fifth names an opportunity (its externalReferenceId) that exists already, without
        // its referral id: the scan does not see it, Dataverse refuses its create as a
        // duplicate, and with it the whole CreateMultiple of its group of eight.
        let taken = "0b7c3c1e-5d2a-4f7e-9a41-3f6d2c8e9b10";
        let mut referrals = open.clone();
        referrals[4] = variant(&open[4], json!({"externalReferenceId": taken}));
        env.reader
            .create_with_id("opportunities", taken, &json!({"name": "Made elsewhere"}))
            .await
            .unwrap();

        let report = env.backfill(&referrals, bulk(8, 1)).await;

        assert_eq!(
            (report.created, report.already_there),
            (23, 1),
            "{report:#?}"
        );
        assert!(report.failed.is_empty(), "{report:#?}");
        assert_eq!(
            report.bulk_created, 16,
            "the two other groups were written by CreateMultiple: {report:#?}"
        );
        assert_eq!(
            report.bulk_refused, None,
            "one record's refusal is not the table's"
        );
        let rows = env
            .reader
            .query("opportunities", "$select=name,cosell_referralidentifier")
            .await
            .unwrap();
        assert_eq!(rows.len(), 24, "23 created and the one made elsewhere");
        let made_elsewhere: Vec<&Value> = rows
            .iter()
            .filter(|r| r["cosell_referralidentifier"].is_null())
            .collect();
        assert_eq!(made_elsewhere.len(), 1);
        assert_eq!(
            made_elsewhere[0]["name"], "Made elsewhere",
            "left as it was"
        );
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_dataverse_takes_no_create_multiple_a_bulk_run_writes_batches() {
    tokio::time::timeout(BOUND, async {
        let env = Env::start(DataverseConfig {
            bulk_messages: false,
            ..DataverseConfig::default()
        })
        .await;
        let referrals = seeded(&env.pc, 40, 23);
        let closed = referrals.iter().filter(|r| is_closed(r)).count() as u64;

        let sent = Arc::new(Operations::default());
        let report = env
            .backfill_observed(&referrals, bulk(8, 1), sent.clone())
            .await;

        assert!(report.failed.is_empty(), "{report:#?}");
        assert_eq!((report.created, report.closed), (40, closed), "{report:#?}");
        assert_eq!(report.bulk_created, 0);
        // One refused CreateMultiple, then $batches only (not a refused request per chunk).
        assert_eq!(
            sent.count("create_multiple"),
            1,
            "{:?}",
            sent.0.lock().unwrap()
        );
        let refused = report
            .bulk_refused
            .as_deref()
            .expect("the refusal is reported");
        assert!(refused.contains("CreateMultiple"), "{refused}");
        assert_eq!(opportunities(&env.reader).await.len(), 40);
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_a_run_adopts_an_opportunity_left_without_its_link() {
    tokio::time::timeout(BOUND, async {
        let env = Env::start(DataverseConfig::default()).await;
        let referrals = seeded(&env.pc, 16, 11);
        // A run that stopped after its batch but before saving its links left this one.
        let orphan = referrals.iter().find(|r| !is_closed(r)).unwrap();
        let left = env
            .reader
            .create(
                "opportunities",
                &json!({"name": "Left by a stopped run", "cosell_referralidentifier": id(orphan)}),
            )
            .await
            .unwrap();
        let closed = referrals.iter().filter(|r| is_closed(r)).count() as u64;

        let skip_closed = Options {
            dry_run: true,
            closed: ClosedReferrals::Skip,
            ..batch(100, 2)
        };
        let dry = env.backfill(&referrals, skip_closed).await;
        assert_eq!(dry.skipped_total(), closed, "{dry:#?}");
        assert_eq!(
            (dry.would_create, dry.already_there, dry.adopted),
            (16 - closed - 1, 1, 0)
        );
        let dry = env
            .backfill(
                &referrals,
                Options {
                    dry_run: true,
                    ..batch(100, 2)
                },
            )
            .await;
        assert_eq!(
            (dry.created, dry.would_create, dry.already_there),
            (0, 15, 1),
            "{dry:#?}"
        );
        assert_eq!(
            opportunities(&env.reader).await.len(),
            1,
            "a dry run creates nothing"
        );
        assert!(accounts(&env.reader).await.is_empty(), "nor accounts");
        let store = env.store();
        assert!(
            referrals
                .iter()
                .all(|r| store.link_by_referral(&id(r)).unwrap().is_none()),
            "nor links"
        );

        let run = env.backfill(&referrals, batch(100, 2)).await;
        assert_eq!(
            (run.created, run.already_there, run.adopted),
            (15, 1, 1),
            "{run:#?}"
        );
        let link = store
            .link_by_referral(&id(orphan))
            .unwrap()
            .expect("adopted");
        assert_eq!(link.opportunity_id.as_deref(), Some(left.as_str()));
        assert!(
            link.pc_hash.is_none(),
            "ids only: the engine compares both sides next time"
        );
        let rows = opportunities(&env.reader).await;
        assert_eq!(rows.len(), 16, "one opportunity per referral");
    })
    .await
    .expect("bounded");
}

/// Contacts by account and email, and how many of each.
async fn contacts(reader: &DataverseClient) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for row in reader
        .query("contacts", "$select=emailaddress1,_parentcustomerid_value")
        .await
        .unwrap()
    {
        let key = (
            row["_parentcustomerid_value"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            row["emailaddress1"].as_str().unwrap_or_default().to_owned(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// Writes applied by Dataverse whose answers are lost (answered 500, or the connection dropped):
/// every write at first one by one, then a share of the `$batch`es (whose reads are POSTs too,
/// so not all of them can fail). Each run creates every opportunity, account and contact once
/// and reports no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_answers_of_applied_writes_are_lost_a_backfill_creates_everything_once() {
    tokio::time::timeout(BOUND, async {
        let runs = [
            (
                FaultConfig { applied_error_rate: 1.0, ..FaultConfig::default() },
                per_record(4),
            ),
            (
                FaultConfig { applied_drop_rate: 1.0, ..FaultConfig::default() },
                per_record(4),
            ),
            (
                FaultConfig {
                    applied_error_rate: 0.2,
                    applied_drop_rate: 0.1,
                    ..FaultConfig::default()
                },
                batch(8, 2),
            ),
            (
                FaultConfig {
                    applied_error_rate: 0.2,
                    applied_drop_rate: 0.1,
                    ..FaultConfig::default()
                },
                bulk(8, 2),
            ),
        ];
        for (n, (faults, options)) in runs.into_iter().enumerate() {
            let env = Env::start(DataverseConfig { fault_seed: 40 + n as u64, ..DataverseConfig::default() }).await;
            let referrals = seeded(&env.pc, 30, 11 + n as u64);
            env.dv.faults().set(faults.clone()).unwrap();
            let mode = options.mode;
            let report = env.backfill(&referrals, options).await;
            env.dv.faults().set(FaultConfig::default()).unwrap();
            let injected = env.dv.faults().injected();
            println!(
                "run {n} ({mode:?}): {} created, {} failed; {} writes applied then answered 500, {} dropped",
                report.created,
                report.failed.len(),
                injected.applied_then_failed,
                injected.applied_then_dropped
            );
            assert!(injected.applied_then_failed + injected.applied_then_dropped > 0);
            assert!(report.failed.is_empty(), "run {n}: {report:#?}");
            assert_eq!(report.created, 30, "run {n}: {report:#?}");
            // `opportunities` panics on a referral with two.
            let rows = opportunities(&env.reader).await;
            assert_eq!(rows.len(), 30, "run {n}");
            let accounts = accounts(&env.reader).await;
            assert!(accounts.values().all(|n| *n == 1), "run {n}: {accounts:?}");
            let contacts = contacts(&env.reader).await;
            assert!(!contacts.is_empty());
            assert!(contacts.values().all(|n| *n == 1), "run {n}: {contacts:?}");
        }
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tight_service_protection_limits_a_backfill_completes_waiting_out_retry_after() {
    tokio::time::timeout(BOUND, async {
        let env = Env::start(DataverseConfig {
            limits: ServiceProtectionLimits {
                requests: 8,
                concurrent: 2,
                window: chrono::Duration::seconds(2),
                ..ServiceProtectionLimits::default()
            },
            ..DataverseConfig::default()
        })
        .await;
        // Three customers, so most requests are the batches themselves.
        let customers = [("Contoso", "98101"), ("Fabrikam", "10115"), ("Litware", "2000")];
        let referrals: Vec<Value> = seeded(&env.pc, 60, 3)
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (name, postal) = customers[i % customers.len()];
                let customer = json!({"name": name, "address": {"postalCode": postal}});
                variant(r, json!({ "customerProfile": customer }))
            })
            .collect();
        let report = env.backfill(&referrals, batch(10, 4)).await;
        let protection = env.dv.service_protection();
        println!(
            "tight limits: {} referrals, {} requests, {} answered 429, {:.1} s; Dataverse: {} admitted, {} refused in {} episodes, {} early (at most {} in one episode)",
            referrals.len(),
            report.requests,
            report.throttled,
            report.elapsed.as_secs_f64(),
            protection.admitted,
            protection.refused,
            protection.episodes,
            protection.early_requests,
            protection.max_early_requests_in_episode
        );
        assert!(report.is_complete(), "{report:#?}");
        assert_eq!(report.created, 60, "{report:#?}");
        assert!(report.throttled > 0 && protection.episodes > 0, "the limits bit: {protection:?}");
        // Told to wait, the client sends nothing new until Retry-After has passed: only the
        // requests already on their way (at most its max_concurrency, 16) arrive early.
        assert!(
            protection.max_early_requests_in_episode <= 16,
            "the backfill kept calling after a 429: {protection:?}"
        );
        assert_eq!(opportunities(&env.reader).await.len(), 60, "each created once");
    })
    .await
    .expect("bounded");
}

/// Runs `cosell args…`; answers its exit code, stdout and stderr.
fn cosell(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .args(args)
        .output()
        .expect("cosell runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits until the host's queue is empty and stays empty for a second.
async fn host_idle(env: &SyncEnv) {
    let idle = wait_until(SETTLE, || async {
        let empty = || async {
            let queue = env.admin_get("/admin/v1/queue").await;
            queue["pending"] == 0 && queue["running"] == 0
        };
        if !empty().await {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        empty().await.then_some(())
    })
    .await;
    assert!(
        idle.is_some(),
        "the host's queue drained\n{}",
        env.host_log()
    );
}

/// Every referral's eTag, by id.
fn etags(env: &SyncEnv) -> BTreeMap<String, Value> {
    env.pc
        .referrals()
        .iter()
        .map(|r| (id(r), r["eTag"].clone()))
        .collect()
}

on_both_backends!(
    next_to_a_running_host_the_cli_skips_what_it_synced_and_the_engine_takes_the_rest_as_synced
);

async fn next_to_a_running_host_the_cli_skips_what_it_synced_and_the_engine_takes_the_rest_as_synced(
    backend: Backend,
) {
    let options = EnvOptions {
        poll_secs: 0,
        bound: BOUND,
        backend,
        ..EnvOptions::default()
    };
    SyncEnv::run_with(options, |env| async move {
        let config = env.config_path.to_str().unwrap().to_owned();
        let (code, help, _) = cosell(&["backfill", "--help"]);
        assert_eq!(code, 0);
        for flag in [
            "--config",
            "--dry-run",
            "--batch-size",
            "--concurrency",
            "--write-mode",
            "--limit",
            "--skip-closed",
        ] {
            assert!(help.contains(flag), "{flag} in --help:\n{help}");
        }

        // The host syncs three referrals as they arrive.
        let live: Vec<String> = (0..3)
            .map(|i| {
                id(&env
                    .pc
                    .microsoft()
                    .create_incoming(json!({"name": format!("Live referral {i}")})))
            })
            .collect();
        for rid in &live {
            let found = wait_until(SETTLE, || async {
                (env.opportunities_for_referral(rid).await.len() == 1).then_some(())
            })
            .await;
            assert!(found.is_some(), "the host synced {rid}\n{}", env.host_log());
        }
        host_idle(&env).await;
        // The pile: referrals whose events were lost (so only the backfill sees them), open
        // and closed, of four customers, and one in a currency Dataverse does not have.
        let dropped = || {
            let deliveries = env.pc.webhooks().deliveries();
            deliveries.iter().filter(|d| d.outcome == "dropped").count()
        };
        let dropped_before = dropped();
        env.pc
            .faults()
            .set(FaultConfig {
                webhook_drop_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        let microsoft = env.pc.microsoft();
        for i in 0..40 {
            let referral = microsoft.create_incoming(json!({
                "name": format!("Pile referral {i}"),
                "customerProfile": {"name": format!("Pile customer {}", i % 4)},
                "details": {"dealValue": 1000 * (i + 1)},
            }));
            let rid = id(&referral);
            match i % 4 {
                1 => drop(microsoft.accept(&rid).unwrap()),
                2 => drop(microsoft.close(&rid, true).unwrap()),
                3 => drop(microsoft.close(&rid, false).unwrap()),
                _ => {}
            }
        }
        let unknown_currency =
            id(&microsoft.create_incoming(json!({"details": {"currency": "ZZZ"}})));
        // Their 41 referral-created and 30 referral-updated events, all lost.
        let lost = wait_until(SETTLE, || async {
            (dropped() >= dropped_before + 71).then_some(())
        })
        .await;
        assert!(lost.is_some(), "the pile's events were dropped");
        env.pc.faults().set(FaultConfig::default()).unwrap();
        let before: BTreeMap<String, Value> = env
            .pc
            .referrals()
            .into_iter()
            .map(|r| (id(&r), r))
            .collect();

        let (code, _, err) = cosell(&["backfill", "--config", &config, "--batch-size", "1001"]);
        assert_eq!(code, 1);
        assert!(err.contains("batch size must be 1 to 1000"), "{err}");
        let (code, out, err) = cosell(&["backfill", "--config", &config, "--dry-run", "--limit", "10"]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains(": 10 referrals in"), "{out}");
        assert!(err.contains("backfill: "), "a progress line on stderr: {err}");
        let (code, out, err) = cosell(&["backfill", "--config", &config, "--dry-run"]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("would create   41"), "{out}");
        assert!(out.contains("already there  3"), "{out}");
        let rows = env
            .seller
            .query("opportunities", "$select=opportunityid")
            .await
            .unwrap();
        assert_eq!(rows.len(), 3, "a dry run writes nothing");

        // What the host writes from here on: its runs that created or updated a record.
        let host_writes = || async {
            let mut total = 0.0;
            for side in ["partner-center", "dataverse"] {
                for outcome in ["created", "updated"] {
                    let labels = [("side", side), ("outcome", outcome)];
                    total += env.metric("cosell_sync_events_total", &labels).await;
                }
            }
            total
        };
        let writes_before = host_writes().await;
        // The host's runs that found nothing to write: an echo (the fingerprint on the link is
        // the record's), a run that read both sides and found them equal, or one the mapping
        // skipped (an opportunity not marked for sync); the last two when its event overtook
        // the backfill's link. Whatever their outcome, the writes are checked below.
        let env_ref = &env;
        let no_write = move |side: &'static str| async move {
            let mut total = 0.0;
            for outcome in ["echo", "unchanged", "skipped"] {
                let labels = [("side", side), ("outcome", outcome)];
                total += env_ref.metric("cosell_sync_events_total", &labels).await;
            }
            total
        };
        let no_writes_before = (no_write("dataverse").await, no_write("partner-center").await);
        let (code, out, err) = cosell(&[
            "backfill",
            "--config",
            &config,
            "--batch-size",
            "16",
            "--concurrency",
            "3",
            "--json",
        ]);
        assert_eq!(
            code, 1,
            "a failed referral makes the exit code 1\n{out}\n{err}"
        );
        let report: Value = serde_json::from_str(&out).expect("--json prints the report");
        assert_eq!(report["created"], 40, "{report:#}");
        assert_eq!(
            report["already_there"], 3,
            "the host's three are skipped: {report:#}"
        );
        assert_eq!(
            report["failed"][0]["referral_id"],
            json!(unknown_currency),
            "{report:#}"
        );
        let rows = wait_until(SETTLE, || async {
            let rows = env
                .seller
                .query("opportunities", "$select=cosell_referralidentifier")
                .await
                .ok()?;
            (rows.len() == 43).then_some(rows)
        })
        .await
        .expect("43 opportunities");
        let referral_ids: BTreeSet<&str> = rows
            .iter()
            .filter_map(|r| r["cosell_referralidentifier"].as_str())
            .collect();
        assert_eq!(referral_ids.len(), 43, "one opportunity per referral");

        // The backfill finished every pair as the host would have: each open referral holds
        // its opportunity's id (the mapping's CRM -> PC field; closed referrals cannot change)
        // when the command ends, and the links hold both sides' fingerprints. The host hears of
        // every backfilled opportunity (Dataverse's Create, Win and Lose webhooks) and of
        // every referral the backfill updated (Partner Center's referral-updated), and
        // recognises each as an echo: it writes nothing to either side.
        let opportunity_of: BTreeMap<String, Value> = rows
            .iter()
            .map(|r| {
                let rid = r["cosell_referralidentifier"].as_str().unwrap().to_owned();
                (rid, r["opportunityid"].clone())
            })
            .collect();
        let open_in_pile: Vec<&Value> = before
            .values()
            .filter(|r| !is_closed(r) && !live.contains(&id(r)) && id(r) != unknown_currency)
            .collect();
        let missing: Vec<String> = open_in_pile
            .iter()
            .map(|r| env.pc.referral(&id(r)).unwrap())
            .filter(|r| r["externalReferenceId"] != opportunity_of[&id(r)])
            .map(|r| {
                format!(
                    "{} ({}): {}",
                    id(&r),
                    opportunity_of[&id(&r)],
                    r["externalReferenceId"]
                )
            })
            .collect();
        assert!(
            missing.is_empty(),
            "the backfill gave each open referral its opportunity's id; not: {missing:#?}"
        );
        let versions = |rows: &[Value]| -> BTreeMap<String, Value> {
            rows.iter()
                .map(|r| {
                    (
                        r["cosell_referralidentifier"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        r["versionnumber"].clone(),
                    )
                })
                .collect()
        };
        let opportunity_versions = || async {
            versions(
                &env.seller
                    .query(
                        "opportunities",
                        "$select=cosell_referralidentifier,versionnumber",
                    )
                    .await
                    .unwrap(),
            )
        };
        let (referrals_written, opportunities_written) =
            (etags(&env), opportunity_versions().await);
        // Each backfilled opportunity's webhook, and each patched referral's, was handled.
        let handled = wait_until(SETTLE, || async {
            let dv = no_write("dataverse").await - no_writes_before.0;
            let pc = no_write("partner-center").await - no_writes_before.1;
            (dv >= 40.0 && pc >= open_in_pile.len() as f64).then_some(())
        })
        .await;
        assert!(
            handled.is_some(),
            "the host handled every backfilled opportunity's and patched referral's event without a write\n{}",
            env.host_log()
        );
        host_idle(&env).await;
        assert_eq!(
            host_writes().await,
            writes_before,
            "the host created or updated nothing beside the backfill\n{}",
            env.host_log()
        );
        assert_eq!(etags(&env), referrals_written, "the host patched no referral");
        assert_eq!(
            opportunity_versions().await,
            opportunities_written,
            "the host updated no opportunity"
        );
        println!(
            "next to the host: {} backfilled, {} open referrals given their opportunity's id by the backfill; the host wrote nothing",
            report["created"],
            open_in_pile.len()
        );
        host_idle(&env).await;
        let strip = |r: &Value| {
            let mut r = r.clone();
            for volatile in ["eTag", "updatedDateTime", "externalReferenceId"] {
                r.as_object_mut().unwrap().remove(volatile);
            }
            r
        };
        for referral in env.pc.referrals() {
            let rid = id(&referral);
            let earlier = &before[&rid];
            assert_eq!(
                strip(&referral),
                strip(earlier),
                "referral {rid}\n{}",
                env.host_log()
            );
            if is_closed(&referral) || live.contains(&rid) {
                assert_eq!(
                    referral["eTag"], earlier["eTag"],
                    "referral {rid} was not written"
                );
            }
        }
        let after = etags(&env);
        let settled = opportunity_versions().await;

        // A referral event for a backfilled referral, unchanged, is recognised as synced.
        let echo = [("side", "partner-center"), ("outcome", "echo")];
        let echoes_before = env.metric("cosell_sync_events_total", &echo).await;
        let backfilled: Vec<&String> = before
            .keys()
            .filter(|r| !live.contains(r) && **r != unknown_currency)
            .take(5)
            .collect();
        for rid in &backfilled {
            let uri = format!("{}/v1.0/engagements/referrals/{rid}", env.pc_url);
            env.pc.webhooks().enqueue(WebhookEvent::new(
                "referral-updated",
                "referral",
                uri,
                chrono::Utc::now(),
            ));
        }
        let wanted = echoes_before + backfilled.len() as f64;
        let echoed = wait_until(SETTLE, || async {
            (env.metric("cosell_sync_events_total", &echo).await >= wanted).then_some(())
        })
        .await;
        assert!(
            echoed.is_some(),
            "each event was an echo\n{}",
            env.host_log()
        );
        host_idle(&env).await;
        assert_eq!(etags(&env), after, "no referral was written");
        let now = versions(
            &env.seller
                .query(
                    "opportunities",
                    "$select=cosell_referralidentifier,versionnumber",
                )
                .await
                .unwrap(),
        );
        assert_eq!(now, settled, "no opportunity was written");
    })
    .await;
}
