//! The customer locks a store provides, as the Dataverse lookups use them: workers racing to
//! find or create one new customer's account make one account, with the workers in one host
//! (both backends) and in two replicas on one PostgreSQL database; a replica that dies
//! holding a lock releases it.

use super::test_client::client;
use crate::connections::dataverse::DataverseClient;
use crate::sinks::dataverse::lookups::{Lookups, customer_key};
use crate::store::testing::{Backend, TestStore, store_tests};
use crate::store::{CustomerLocks, InProcessCustomerLocks};
use cosell_emulators::common::faults::FaultConfig;
use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A Dataverse emulator answering every request 300 ms late, so that workers starting
/// together all look the customer up before any of them has created it.
async fn slow_dataverse() -> (Dataverse, RunningEmulator) {
    let dv = Dataverse::new(DataverseConfig::default());
    dv.faults()
        .set(FaultConfig {
            latency_ms: 300,
            ..FaultConfig::default()
        })
        .unwrap();
    let server = dv.serve().await.expect("the Dataverse emulator starts");
    (dv, server)
}

/// The email of customer `name`'s one contact.
fn contact_email(name: &str) -> String {
    format!("ada@{}.example", name.to_lowercase().replace(' ', "-"))
}

/// What a mapping writes for a referral of the new customer `name`, with one contact.
fn new_customer(name: &str) -> Value {
    let email = contact_email(name);
    json!({
        "name": name,
        "address1_postalcode": "98052",
        "contact_customer_accounts": [
            {"firstname": "Ada", "lastname": "Byron", "emailaddress1": email}
        ]
    })
}

/// Every worker (one [`Lookups`] per entry of `workers`, two runs each, all at once) resolves
/// the customer `name`; answers how many accounts and contacts Dataverse then holds for it.
async fn race(
    dv: &DataverseClient,
    workers: Vec<Arc<dyn CustomerLocks>>,
    name: &str,
) -> (usize, usize) {
    let lookups: Vec<Arc<Lookups>> = workers
        .into_iter()
        .map(|locks| Arc::new(Lookups::new(locks)))
        .collect();
    let runs = lookups.iter().chain(lookups.iter()).map(|lookups| {
        let (lookups, dv) = (lookups.clone(), dv.clone());
        let mut columns = Map::new();
        columns.insert("customerid_account".into(), new_customer(name));
        tokio::spawn(async move {
            lookups.resolve(&dv, &mut columns).await.unwrap();
            columns["customerid_account@odata.bind"].clone()
        })
    });
    let bound: Vec<Value> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let accounts = dv
        .query(
            "accounts",
            &format!("$select=accountid&$filter=name eq '{name}'"),
        )
        .await
        .unwrap();
    let contacts = dv
        .query(
            "contacts",
            &format!(
                "$select=contactid&$filter=emailaddress1 eq '{}'",
                contact_email(name)
            ),
        )
        .await
        .unwrap();
    if accounts.len() == 1 {
        assert!(
            bound.iter().all(|b| b == &bound[0]),
            "every run bound the one account: {bound:?}"
        );
    }
    (accounts.len(), contacts.len())
}

fn on_runtime<F: std::future::Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), test).await })
        .expect("the race finished within a minute")
}

store_tests! {
    fn workers_of_one_host_make_one_account_for_a_new_customer(store) {
        on_runtime(async {
            let (dv, server) = slow_dataverse().await;
            let dv = client(&dv, &server);
            let workers = vec![store.customer_locks(), store.customer_locks()];
            assert_eq!(race(&dv, workers, "Northwind One Host").await, (1, 1));
        })
    }
}

/// Two replicas (two stores on one database), two workers each, see the same new customer at
/// once: one account, one contact. The same race through locks of each process only (what
/// the lookups had before) makes an account per replica, which shows the race is real.
#[test]
fn replicas_on_one_postgres_make_one_account_for_a_new_customer() {
    let store = TestStore::new(Backend::Postgres);
    let other_replica = store.reopen();
    on_runtime(async {
        let (dv, server) = slow_dataverse().await;
        let dv = client(&dv, &server);
        let per_process: Vec<Arc<dyn CustomerLocks>> = vec![
            Arc::new(InProcessCustomerLocks::default()),
            Arc::new(InProcessCustomerLocks::default()),
        ];
        let (accounts, _) = race(&dv, per_process, "Contoso Per Process").await;
        assert!(
            accounts > 1,
            "without a shared lock the replicas would duplicate the account (the race this test \
             stages did not happen: {accounts} account)"
        );
        let shared = vec![store.customer_locks(), other_replica.customer_locks()];
        assert_eq!(race(&dv, shared, "Contoso Shared").await, (1, 1));
    })
}

/// A replica that dies holding a customer's lock (its connections closed, as the kernel closes
/// them for a killed process) releases it: another replica takes it.
#[test]
fn a_replica_that_dies_holding_a_customer_lock_releases_it() {
    let store = TestStore::new(Backend::Postgres);
    let key = customer_key(&new_customer("Tailspin"));
    let id = crate::store::postgres::customer_lock_id(&key);
    let is_free = |store: &TestStore| {
        let answer = store.texts(&format!("SELECT pg_try_advisory_xact_lock({id})::text"));
        answer == ["true"]
    };
    let dying = store.reopen();
    on_runtime(async {
        let guard = dying.customer_locks().lock(&key).await.unwrap();
        assert!(!is_free(&store), "the lock is held in the database");
        let other = store.customer_locks();
        let _other_customer = other
            .lock(&customer_key(&new_customer("Wingtip")))
            .await
            .unwrap();
        // The holder dies: its guard never dropped, its store's connections closed.
        std::mem::forget(guard);
        drop(dying);
        let _taken = other.lock(&key).await.unwrap();
        assert!(!is_free(&store), "held by the surviving replica now");
    });
    // Released when the guard is dropped (by the store's runtime, just after).
    let released = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        is_free(&store)
    });
    assert!(
        released,
        "the lock was not released when its guard was dropped"
    );
}
