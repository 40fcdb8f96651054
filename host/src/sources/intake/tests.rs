//! Group commit against a real store, on each backend (SQLite and PostgreSQL). The store is
//! held while deliveries pile up, so the test knows they are stored by one transaction (the
//! writer takes everything waiting), without depending on timing.

use super::*;
use crate::domain::fingerprint::VolatileColumns;
use crate::store::testing::{Backend, TestStore};
use std::collections::HashMap;
use std::time::Duration;

const ORIGIN: &str = "partner-center-webhook";

fn intake(store: &TestStore) -> (Arc<Intake>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let wakeup = Arc::new(tokio::sync::Notify::new());
    let intake = Intake::new(store.sync(), wakeup, metrics.clone(), None).unwrap();
    (Arc::new(intake), metrics)
}

/// Waits (bounded) until `n` deliveries wait in the writer's channel.
async fn until_waiting(intake: &Intake, n: usize) {
    for _ in 0..2_000 {
        if intake.writer.waiting() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{n} deliveries never waited together ({} do)",
        intake.writer.waiting()
    );
}

/// A delivery for `referral` with its own payload, stored in the background.
fn deliver(
    intake: &Arc<Intake>,
    referral: &str,
    n: usize,
) -> tokio::task::JoinHandle<(String, String, anyhow::Result<Enqueued>)> {
    let (intake, referral) = (intake.clone(), referral.to_owned());
    tokio::spawn(async move {
        let payload = format!(r#"{{"referral":"{referral}","delivery":{n}}}"#);
        let stored = intake
            .accept_grouped(
                Side::PartnerCenter,
                referral.clone(),
                ORIGIN,
                payload.clone(),
                None,
            )
            .await
            .map(|accepted| match accepted {
                Accepted::Stored(enqueued) => enqueued,
                Accepted::OwnWrite => panic!("a Partner Center delivery is never an echo"),
            });
        (referral, payload, stored)
    })
}

/// Sends one delivery and waits until the writer has taken it as a batch of its own and is
/// about to store it (blocked on the store the caller holds), so that what is sent next
/// waits for one batch together.
async fn first_batch_taken(intake: &Arc<Intake>) -> tokio::task::JoinHandle<impl Sized> {
    let first = deliver(intake, "warm-up", 0);
    for _ in 0..2_000 {
        if intake
            .shared
            .batches_taken
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            return first;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the writer never took the first delivery");
}

/// The pending queue entries: record id → (id, lock key, origin, payload, attempts).
fn pending(store: &TestStore) -> HashMap<String, (i64, String, String, String, u32)> {
    store
        .texts(
            "SELECT record_id || ' | ' || id || ' | ' || lock_key || ' | ' || origin || ' | '
                    || payload || ' | ' || attempts
             FROM sync_events WHERE state = 'pending'",
        )
        .iter()
        .map(|row| {
            let f: Vec<&str> = row.split(" | ").collect();
            let [record, id, key, origin, payload, attempts] = f[..] else {
                panic!("{row}")
            };
            (
                record.to_owned(),
                (
                    id.parse().unwrap(),
                    key.to_owned(),
                    origin.to_owned(),
                    payload.to_owned(),
                    attempts.parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// Runs the async test `body` on a fresh store of each backend (made outside the test's
/// runtime: the PostgreSQL test schema is made and dropped on a runtime of its own).
fn on(backend: Backend, body: impl AsyncFnOnce(&TestStore)) {
    let store = TestStore::new(backend);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body(&store));
}

#[test]
fn concurrent_deliveries_are_stored_in_one_batch_as_enqueue_would_store_them_sqlite() {
    on(
        Backend::Sqlite,
        concurrent_deliveries_are_stored_in_one_batch,
    );
}

#[test]
fn concurrent_deliveries_are_stored_in_one_batch_as_enqueue_would_store_them_postgres() {
    on(
        Backend::Postgres,
        concurrent_deliveries_are_stored_in_one_batch,
    );
}

#[test]
fn a_batch_that_fails_fails_every_delivery_in_it_and_stores_none_of_them_sqlite() {
    on(Backend::Sqlite, a_failed_batch_stores_nothing);
}

#[test]
fn a_batch_that_fails_fails_every_delivery_in_it_and_stores_none_of_them_postgres() {
    on(Backend::Postgres, a_failed_batch_stores_nothing);
}

#[test]
fn a_dataverse_delivery_of_the_synced_version_is_answered_and_not_queued_sqlite() {
    on(Backend::Sqlite, own_writes_are_answered_and_not_queued);
}

#[test]
fn a_dataverse_delivery_of_the_synced_version_is_answered_and_not_queued_postgres() {
    on(Backend::Postgres, own_writes_are_answered_and_not_queued);
}

#[test]
fn the_echo_of_a_write_whose_run_has_not_settled_waits_for_the_settle_and_is_not_queued() {
    on(Backend::Sqlite, async |store: &TestStore| {
        let writes = WritesInFlight::default();
        let (intake, _) = own_writes_intake(store);
        let intake = Arc::new(intake.waiting_for(writes.clone()));
        let link_id = store.sync().save_link(&synced_at(42)).unwrap();
        // A run writes version 43: Dataverse delivers it before the run's settle records it.
        let mark = writes.mark(OID);
        let delivery = deliver_in_background(&intake, "43");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!delivery.is_finished(), "it waits for the settle");
        assert!(pending(store).is_empty());
        // The settle records version 43, then releases the mark.
        let settled = crate::store::Link {
            id: Some(link_id),
            ..synced_at(43)
        };
        store.sync().save_link(&settled).unwrap();
        drop(mark);
        let accepted = tokio::time::timeout(Duration::from_secs(5), delivery)
            .await
            .expect("answered once the mark is released")
            .unwrap()
            .unwrap();
        assert_eq!(accepted, Accepted::OwnWrite);
        assert!(pending(store).is_empty(), "the echo was not queued");

        // A run whose settle does not record the version (it failed): the delivery is queued
        // once the mark is released, as it would have been without the wait.
        let mark = writes.mark(OID);
        let delivery = deliver_in_background(&intake, "44");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(mark);
        assert!(matches!(
            delivery.await.unwrap().unwrap(),
            Accepted::Stored(Enqueued::New(_))
        ));
        assert_eq!(pending(store).len(), 1);
    });
}

/// `(count, sum)` of the batch-size histogram.
fn batches(metrics: &Metrics) -> (u64, u64) {
    let text = metrics.encode();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse::<f64>().unwrap() as u64)
            .unwrap_or(0)
    };
    (
        value("cosell_intake_batch_events_count "),
        value("cosell_intake_batch_events_sum "),
    )
}

async fn concurrent_deliveries_are_stored_in_one_batch(store: &TestStore) {
    let (intake, metrics) = intake(store);
    let held = store.hold();
    let first = first_batch_taken(&intake).await;
    // 60 deliveries for 12 referrals, 5 each: coalescing happens inside the batch.
    let deliveries: Vec<_> = (0..60)
        .map(|n| deliver(&intake, &format!("r{:02}", n % 12), n))
        .collect();
    until_waiting(&intake, 60).await;
    drop(held);
    assert!(first.await.is_ok());
    let mut by_referral: HashMap<String, Vec<(String, Enqueued)>> = HashMap::new();
    for delivery in deliveries {
        let (referral, payload, stored) = delivery.await.unwrap();
        let stored = stored.expect("every delivery is stored");
        by_referral
            .entry(referral)
            .or_default()
            .push((payload, stored));
    }
    assert_eq!(
        batches(&metrics),
        (2, 61),
        "the warm-up, then all 60 at once"
    );

    let queue = pending(store);
    assert_eq!(queue.len(), 13, "one entry per referral: {queue:#?}");
    for (referral, stored) in &by_referral {
        // As five enqueues in a row: the first makes the entry, the others join it and
        // leave its payload (the same origin) as it was.
        let new: Vec<_> = stored
            .iter()
            .filter(|(_, e)| matches!(e, Enqueued::New(_)))
            .collect();
        assert_eq!(new.len(), 1, "{referral}: {stored:?}");
        let (payload, entry) = new[0];
        assert!(
            stored.iter().all(|(_, e)| e.id() == entry.id()),
            "{stored:?}"
        );
        let expected = (
            entry.id(),
            format!("referral:{referral}"),
            ORIGIN.to_owned(),
            payload.clone(),
            0,
        );
        assert_eq!(queue[referral], expected, "{referral}");
    }
    let counted = metrics.encode();
    assert!(
        counted.contains(
            r#"cosell_intake_events_total{source="partner-center-webhook",result="queued"} 13"#
        ) && counted.contains(
            r#"cosell_intake_events_total{source="partner-center-webhook",result="coalesced"} 48"#
        ),
        "{counted}"
    );
}

async fn a_failed_batch_stores_nothing(store: &TestStore) {
    // The store fails on one event: the 30 others of its batch must not be stored either.
    store.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON sync_events WHEN NEW.record_id = 'poison'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.record_id = 'poison' THEN RAISE EXCEPTION 'injected failure'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER poison BEFORE INSERT ON sync_events
             FOR EACH ROW EXECUTE FUNCTION poison();",
    );
    let (intake, metrics) = intake(store);
    let held = store.hold();
    let first = first_batch_taken(&intake).await;
    let mut deliveries: Vec<_> = (0..30)
        .map(|n| deliver(&intake, &format!("r{:02}", n % 10), n))
        .collect();
    deliveries.insert(15, deliver(&intake, "poison", 99));
    until_waiting(&intake, 31).await;
    drop(held);
    assert!(first.await.is_ok());
    for delivery in deliveries {
        let (referral, _, stored) = delivery.await.unwrap();
        let err = stored.expect_err("the batch failed, so every delivery in it failed");
        assert!(
            format!("{err:#}").contains("injected failure"),
            "{referral}: {err:#}"
        );
    }
    assert_eq!(batches(&metrics), (2, 32));
    let queue = pending(store);
    assert_eq!(
        queue.keys().collect::<Vec<_>>(),
        ["warm-up"],
        "nothing of the failed batch"
    );

    // The writer goes on: the next deliveries are stored.
    let (_, _, stored) = deliver(&intake, "r01", 100).await.unwrap();
    assert!(matches!(stored.unwrap(), Enqueued::New(_)));
    assert_eq!(pending(store).len(), 2);
}

const OID: &str = "7f3c2a52-0000-4000-8000-000000000001";

/// What the fingerprint leaves out, as the engine configures it by default.
fn volatile() -> VolatileColumns {
    VolatileColumns {
        audit_column: "cosell_audit".into(),
        marks: ["✔".into(), "✖".into()],
    }
}

/// The link of referral r1 and opportunity [`OID`] as cosell's write of `version` left it.
fn synced_at(version: u64) -> crate::store::Link {
    let row = serde_json::json!({
        "opportunityid": OID, "name": "Deal ✔", "versionnumber": version,
        "@odata.etag": format!("W/\"{version}\"")
    });
    crate::store::Link {
        referral_id: Some("r1".into()),
        opportunity_id: Some(OID.into()),
        crm_hash: Some(crate::domain::fingerprint::opportunity(
            &row,
            &volatile().borrow(),
        )),
        crm_snapshot: Some(row.to_string()),
        ..Default::default()
    }
}

/// An intake telling cosell's own writes, and Dataverse's delivery of [`OID`] at `version`.
fn own_writes_intake(store: &TestStore) -> (Intake, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let wakeup = Arc::new(tokio::sync::Notify::new());
    let intake = Intake::new(store.sync(), wakeup, metrics.clone(), Some(volatile())).unwrap();
    (intake, metrics)
}

async fn deliver_version(intake: &Intake, version: Option<&str>) -> anyhow::Result<Accepted> {
    intake
        .accept_grouped(
            Side::Dataverse,
            OID.into(),
            "dataverse-webhook",
            serde_json::json!({"MessageName": "Update", "RowVersion": version}).to_string(),
            version.map(str::to_owned),
        )
        .await
}

/// Dataverse's delivery of [`OID`] at `version`, sent after its write committed (so it waits
/// for the run writing [`OID`], as the listener makes it), in the background.
fn deliver_in_background(
    intake: &Arc<Intake>,
    version: &'static str,
) -> tokio::task::JoinHandle<anyhow::Result<Accepted>> {
    let intake = intake.clone();
    tokio::spawn(async move {
        intake.after_writes_in_flight(OID).await;
        deliver_version(&intake, Some(version)).await
    })
}

async fn own_writes_are_answered_and_not_queued(store: &TestStore) {
    let (intake, metrics) = own_writes_intake(store);
    // The link as cosell's write left it: the row at version 42 is the synced state.
    let synced = synced_at(42);
    let link_id = store.sync().save_link(&synced).unwrap();
    let deliver = |version| deliver_version(&intake, version);

    assert_eq!(deliver(Some("42")).await.unwrap(), Accepted::OwnWrite);
    assert!(pending(store).is_empty(), "nothing queued for an echo");
    let text = metrics.encode();
    let counted = |result: &str| {
        text.lines().any(|l| {
            l.starts_with("cosell_intake_events_total{")
                && l.contains("dataverse-webhook")
                && l.contains(&format!("result=\"{result}\""))
                && l.ends_with(" 1")
        })
    };
    assert!(counted("echo"), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "cosell_sync_echoes_suppressed_total 1"),
        "{text}"
    );

    // Another version is queued, under the pair's lock key.
    assert!(matches!(
        deliver(Some("43")).await.unwrap(),
        Accepted::Stored(Enqueued::New(_))
    ));
    let queued = pending(store);
    assert_eq!(queued[OID].1, "referral:r1");
    // So is a delivery without a version, and the synced version while a failure is on
    // record (both coalesce into the waiting event).
    assert!(matches!(
        deliver(None).await.unwrap(),
        Accepted::Stored(Enqueued::Coalesced(_))
    ));
    let failed = crate::store::Link {
        id: Some(link_id),
        last_error: Some("refused".into()),
        ..synced
    };
    store.sync().save_link(&failed).unwrap();
    assert!(matches!(
        deliver(Some("42")).await.unwrap(),
        Accepted::Stored(Enqueued::Coalesced(_))
    ));
}
