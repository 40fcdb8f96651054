//! The write modes: bulk (`CreateMultiple`), `$batch` and per record write the same
//! opportunities, each as the mapping computes it with its lookups, closed ones closed, one
//! account per customer and every pair linked, and report the same refusals, failures and
//! skips; `$batch` sends far fewer requests than per record, and a second run creates nothing.
//! A `CreateMultiple` refused for one record is written again as a `$batch` and bulk goes on;
//! where Dataverse takes no `CreateMultiple`, a bulk run reports the refusal and writes
//! `$batch`es after one refused request.

use super::*;
use cosell::store::prelude::*;
use std::collections::BTreeSet;

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
