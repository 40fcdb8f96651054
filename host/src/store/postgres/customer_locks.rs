//! The per-customer lock shared by every replica: a transaction-scoped advisory lock
//! (`pg_advisory_xact_lock`) keyed by a 64-bit hash of the customer's match key.
//!
//! Taking it borrows a pooled connection, opens a transaction and waits for the lock there;
//! the transaction stays open, doing nothing, while the caller finds or creates the account
//! and contacts in Dataverse, and is rolled back when the [`CustomerGuard`] is dropped, which
//! releases the lock and returns the connection to the pool. Nothing is written in it. A
//! replica that dies while holding a lock loses its connection, and PostgreSQL ends the
//! session's transaction and releases the lock with it, so a crashed holder never strands a
//! customer (a replica whose machine vanished, leaving its connections open, is dropped by the
//! server's TCP keepalives the store's sessions set, about a minute later). Waiting is bounded by the session's `statement_timeout` (`[state.pool]`), after
//! which the sync run fails and is retried with backoff. Each worker holding or waiting for a
//! customer lock holds a pooled connection, so at most `sync.workers` of the pool go to them
//! (8 of the default 16); the holder makes no store call inside the lock, so a full pool only
//! delays, never deadlocks.
//!
//! The key is the first 8 bytes of the SHA-256 of the match key. Advisory locks share one
//! 64-bit space with the store's other advisory locks (claims, links, migrations, one per
//! queued record); a collision is astronomically unlikely (about n²/2⁶⁵ for n keys in use at
//! once) and harmless: it only makes two customers (or a customer and a record) wait for each
//! other. It cannot deadlock, since the holder of a customer lock takes no other store lock
//! on that connection and waits for nothing in the store while it holds it.

use crate::store::customer_locks::{CustomerGuard, CustomerLocks, Locking};
use anyhow::{Context as _, anyhow};
use deadpool_postgres::Pool;
use sha2::{Digest as _, Sha256};

/// The customer locks of one replica's PostgreSQL store.
pub(super) struct PgCustomerLocks {
    pub(super) pool: Pool,
    /// The store's own runtime, where its connections live.
    pub(super) runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for PgCustomerLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCustomerLocks")
    }
}

/// The advisory lock key of customer `key`: the first 8 bytes of its SHA-256, prefixed so that
/// it is not the hash of the bare text any other lock might use.
pub(crate) fn lock_id(key: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"cosell customer lock\n")
        .chain_update(key.as_bytes())
        .finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

impl CustomerLocks for PgCustomerLocks {
    fn lock<'a>(&'a self, key: &'a str) -> Locking<'a> {
        let id = lock_id(key);
        let pool = self.pool.clone();
        let (held, is_held) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        self.runtime.spawn(async move {
            let mut client = match pool.get().await {
                Ok(client) => client,
                Err(e) => {
                    let _ = held.send(Err(anyhow!(e).context(
                        "no connection to the PostgreSQL state database for the customer lock \
                         (is it up? is [state.pool] max_connections large enough?)",
                    )));
                    return;
                }
            };
            let locked = async {
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&id])
                    .await?;
                Ok::<_, tokio_postgres::Error>(tx)
            }
            .await;
            let tx = match locked {
                Ok(tx) => tx,
                Err(e) => {
                    let _ = held.send(Err(anyhow!(e).context(
                        "waiting for a customer's lock in the PostgreSQL state database \
                         (another replica may hold it for longer than [state.pool] \
                         statement_timeout_secs; the sync is retried)",
                    )));
                    return;
                }
            };
            if held.send(Ok(())).is_err() {
                // The caller stopped waiting: release at once (the rollback below).
                drop(released);
            } else {
                // Until the guard is dropped (or the caller's task with it).
                let _ = released.await;
            }
            // Ends the transaction, which releases the lock; if the connection is gone the
            // server has released it already.
            let _ = tx.rollback().await;
        });
        Box::pin(async move {
            is_held
                .await
                .map_err(|_| anyhow!("the PostgreSQL store is shut down"))?
                .context("taking the customer lock")?;
            Ok(CustomerGuard::new(release))
        })
    }

    fn prune(&self) -> usize {
        0
    }

    fn kept(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::lock_id;

    #[test]
    fn lock_ids_are_stable_and_differ_per_customer() {
        // Stable across processes and releases: replicas of different builds must agree.
        assert_eq!(lock_id("contoso\u{1f}98052"), lock_id("contoso\u{1f}98052"));
        assert_ne!(lock_id("contoso\u{1f}98052"), lock_id("contoso\u{1f}98053"));
        assert_eq!(lock_id(""), 0x95a1_2803_14a7_8af7_u64 as i64);
    }
}
