//! The per-customer lock the Dataverse lookups hold while they find or create a customer's
//! account and contacts (`sinks::dataverse::lookups`).
//!
//! Two referrals of one new customer, synced at the same time, would otherwise both find no
//! account and both create one. The lock must be as wide as the workers that can race: one
//! host on SQLite ([`InProcessCustomerLocks`], a map of async mutexes), every replica on
//! PostgreSQL (an advisory lock in the database, `store::postgres::customer_locks`). The store
//! provides the right one ([`super::SyncStore::customer_locks`]), so the lookups never ask
//! which backend they run on.

use anyhow::Result;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// A future that answers a held [`CustomerGuard`].
pub type Locking<'a> = Pin<Box<dyn Future<Output = Result<CustomerGuard>> + Send + 'a>>;

/// Locks one customer at a time, by the customer's match key (its name and postal code).
pub trait CustomerLocks: Send + Sync + std::fmt::Debug {
    /// Waits until no other holder (in this host, or in any replica where the lock is shared)
    /// holds `key`'s lock, then holds it until the answer is dropped. Fails when the lock
    /// cannot be had (the database is unreachable, or the wait outlived its bound): the
    /// caller retries later rather than going on unlocked.
    fn lock<'a>(&'a self, key: &'a str) -> Locking<'a>;

    /// Forgets the locks kept in memory that nobody holds or waits for; answers how many.
    /// 0 where nothing is kept in memory (the database holds the locks).
    fn prune(&self) -> usize;

    /// How many locks are kept in memory.
    fn kept(&self) -> usize;
}

/// A held customer lock, released when dropped.
pub struct CustomerGuard {
    _held: Box<dyn Send + Sync>,
}

impl CustomerGuard {
    /// A guard releasing the lock when `held` is dropped.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for CustomerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerGuard")
    }
}

/// The locks of one host: an async mutex per customer key, made on first use and pruned by
/// retention once unused (one is made per customer ever synced).
#[derive(Debug, Default)]
pub struct InProcessCustomerLocks {
    customers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl InProcessCustomerLocks {
    fn lock_of(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.customers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone()
    }
}

impl CustomerLocks for InProcessCustomerLocks {
    fn lock<'a>(&'a self, key: &'a str) -> Locking<'a> {
        let lock = self.lock_of(key);
        Box::pin(async move { Ok(CustomerGuard::new(lock.lock_owned().await)) })
    }

    /// A lock in use is shared with its holder and waiters (more than the map's reference),
    /// and both the sharing and this check happen under the map's mutex, so no lock in use is
    /// dropped; a customer seen again later simply gets a new one.
    fn prune(&self) -> usize {
        let mut customers = self.customers.lock().unwrap_or_else(|p| p.into_inner());
        let before = customers.len();
        customers.retain(|_, lock| Arc::strong_count(lock) > 1);
        before - customers.len()
    }

    fn kept(&self) -> usize {
        self.customers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn customer_locks_nobody_holds_are_pruned_and_held_ones_kept() {
        use futures_util::FutureExt as _;
        let locks = InProcessCustomerLocks::default();
        for i in 0..100 {
            let _held_and_released = locks.lock(&format!("customer {i}")).await.unwrap();
        }
        let held = locks.lock("busy\u{1f}1000").await.unwrap();
        assert_eq!(locks.kept(), 101);
        assert_eq!(locks.prune(), 100);
        assert_eq!(locks.kept(), 1);
        // The lock in use is the one the next sync of that customer waits on.
        let mut next = locks.lock("busy\u{1f}1000");
        assert!(
            (&mut next).now_or_never().is_none(),
            "the held lock was pruned"
        );
        assert_eq!(locks.prune(), 0, "a lock with a waiter is kept");
        drop(held);
        let _next = next.await.unwrap();
        assert!(
            locks.lock("another").now_or_never().is_some(),
            "another customer never waits"
        );
    }
}
