//! Nothing written twice, and nothing written when asked not to: a dry run creates no
//! opportunity, account or link; a run adopts the opportunity a stopped run left without its
//! link instead of creating another; when the answers of applied writes are lost (every mode),
//! and under tight service protection limits (waiting out `Retry-After`), every opportunity,
//! account and contact is created once.

use super::*;
use cosell::store::prelude::*;
use cosell::sync::backfill::ClosedReferrals;
use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::dataverse::ServiceProtectionLimits;

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
