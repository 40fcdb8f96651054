//! A replica's proof that it is alive, so the others can take back at once the events it
//! left running when it dies, instead of after their lease.
//!
//! A replica that claims ([`crate::store::SyncStore::claim_as`]) holds a session advisory
//! lock keyed by its replica id on a connection of its own, for as long as it lives. A
//! process that dies (SIGKILL, a crash) closes its connections, and the server ends the
//! session and releases the lock at once (a machine that vanishes silently: within about a
//! minute, by the sessions' TCP keepalives). Each claim records its claimer (`claimed_by`),
//! and a claim takes back a running event whose claimer holds no such lock ([`CLAIMER_GONE`]).
//!
//! - The lock is the pair form (`int4, int4`): [`CLASS`] ("cosl") and the hash of the store's
//!   schema and the replica id, so it never collides with the store's single-key locks (claims,
//!   links, customers) nor the leader's lock ("cose"), and two installations in two schemas of
//!   one database may use the same ids. Two ids whose hashes collide (one chance in four
//!   billion per pair) are refused as duplicates: the error says to rename one.
//! - Who holds it is read from `pg_locks`, which takes no lock itself: a check never makes a
//!   starting replica believe its id is taken, and never leaves a lock behind on a pooled
//!   connection if the claim fails half way (as `pg_try_advisory_lock` on the claimer's key
//!   would risk).
//! - Only a replica that has held its own lock for [`JUDGE_AFTER`] judges the others: when
//!   the server restarts (or fails over) every session ends at once, so for a moment no
//!   replica holds its lock, although all of them live and run events. Each notices within a
//!   second and takes its lock back; one that judged the others in between would take back
//!   every running event, and another replica it too, many times over. Until then, only
//!   expired leases are taken back. Each claim also checks, in its own transaction, that the
//!   claimer's lock is held (not only that it was at the last check), so no claim is made
//!   that the others would see as abandoned.
//! - The connection is the store's own, not the leader's: leadership is given up at the
//!   first doubt (a check slower than 3 s), which is safe for the pollers but would make the
//!   other replicas run again every event this one is still running. Here a lost connection
//!   is reopened every second, and while it is lost this replica claims nothing.
//! - An id is unique among live replicas: a second process claiming as an id whose lock is
//!   held is refused. A replica restarted under its id takes its lock back and queues again
//!   the events its previous run left running (nobody else could: the lock says it is alive).

use super::driver::Connector;
use anyhow::{Context as _, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The first key of every liveness lock: "cosl".
pub(super) const CLASS: i32 = 0x636f_736c;

/// How often the lock's connection is checked, and a lost one reopened.
const CHECK: Duration = Duration::from_secs(1);
/// How long a check may take before the connection is taken as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replica holds its lock before it takes the others' lack of one as death: well
/// over the time every live replica needs to notice a restart of the server ([`CHECK`]) and
/// take its lock back.
pub(super) const JUDGE_AFTER: Duration = Duration::from_secs(5);

/// The second key of replica `{id}`'s lock (an SQL expression).
fn key_of(id: &str) -> String {
    format!("hashtext(current_schema() || '/' || {id})")
}

/// The condition on `pg_locks k` that `k` is the granted liveness lock of the replica named by
/// SQL expression `id`, in this database.
fn is_lock_of(id: &str) -> String {
    format!(
        "k.locktype = 'advisory' AND k.granted AND k.objsubid = 2
         AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND k.classid::bigint = {CLASS}
         AND k.objid::bigint = ({key}::bigint & 4294967295)",
        key = key_of(id)
    )
}

/// The condition that the replica named by SQL expression `id` holds its liveness lock now.
pub(super) fn holds_lock(id: &str) -> String {
    format!("EXISTS (SELECT 1 FROM pg_locks k WHERE {})", is_lock_of(id))
}

/// The condition, on event alias `e` of `sync_events`, that its claimer (if recorded) holds
/// no liveness lock in this database: it is dead, so its running event may be taken back.
pub(super) static CLAIMER_GONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "(e.claimed_by IS NOT NULL AND NOT {})",
        holds_lock("e.claimed_by")
    )
});

/// This store's claimer: its id, and since when its lock has been held without a break.
pub(super) struct Claimer {
    pub id: String,
    held_since: Arc<Mutex<Option<Instant>>>,
}

/// What a claimer may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// Its lock is lost: it claims nothing.
    Lost,
    /// Its lock is held, for less than [`JUDGE_AFTER`]: it takes back expired leases only.
    Held,
    /// Its lock has been held for [`JUDGE_AFTER`]: it also takes back the events of replicas
    /// that hold no lock.
    Judging,
}

impl Claimer {
    /// What this claimer may do now.
    pub(super) fn standing(&self) -> Standing {
        match *self.held_since.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Standing::Lost,
            Some(since) if since.elapsed() >= JUDGE_AFTER => Standing::Judging,
            Some(_) => Standing::Held,
        }
    }
}

/// Records whether the lock is held (from now) or lost.
fn set_held(held_since: &Mutex<Option<Instant>>, held: bool) {
    *held_since.lock().unwrap_or_else(|e| e.into_inner()) = held.then(Instant::now);
}

/// Takes `id`'s lock on a connection of its own (refused when another session holds it),
/// queues again the events a previous run under `id` left running, and keeps the lock until
/// the runtime stops: a lost connection is reopened and the lock taken again every [`CHECK`].
/// Runs on the store's runtime; answers once the lock is first held.
pub(super) async fn join(connector: Connector, id: String) -> Result<Claimer> {
    let client = acquire(&connector, &id).await?;
    let requeued = client
        .execute(
            "UPDATE sync_events SET state = 'pending', lease_until = NULL, claimed_by = NULL
             WHERE state = 'running' AND claimed_by = $1",
            &[&id],
        )
        .await
        .context("queueing again the events a previous run of this replica left running")?;
    if requeued > 0 {
        tracing::info!(
            replica_id = %id,
            events = requeued,
            "queued again the events a previous run of this replica left running"
        );
    }
    let held_since = Arc::new(Mutex::new(Some(Instant::now())));
    tokio::spawn(keep(connector, id.clone(), held_since.clone(), client));
    Ok(Claimer { id, held_since })
}

/// Holds the lock: checks the connection, reopens a lost one and takes the lock again.
async fn keep(
    connector: Connector,
    id: String,
    held_since: Arc<Mutex<Option<Instant>>>,
    client: Client,
) {
    let mut client = Some(client);
    let mut warned = false;
    loop {
        tokio::time::sleep(CHECK).await;
        if let Some(held) = &client {
            match tokio::time::timeout(CHECK_TIMEOUT, held.simple_query("SELECT 1")).await {
                Ok(Ok(_)) => continue,
                _ => {
                    set_held(&held_since, false);
                    client = None;
                    tracing::warn!(replica_id = %id, "lost the connection that proves this replica alive: it claims nothing until it is back, and the other replicas may take back the events it runs");
                }
            }
        }
        match acquire(&connector, &id).await {
            Ok(again) => {
                client = Some(again);
                warned = false;
                set_held(&held_since, true);
                tracing::info!(replica_id = %id, "this replica proves itself alive again and claims events");
            }
            Err(err) if !warned => {
                warned = true;
                tracing::error!(replica_id = %id, error = %format!("{err:#}"), "cannot prove this replica alive; trying again every second");
            }
            Err(_) => {}
        }
    }
}

/// A connection of its own holding `id`'s lock; refused when another session holds it.
async fn acquire(connector: &Connector, id: &str) -> Result<Client> {
    let mut config = connector.config.clone();
    config.application_name(format!("cosell-alive {id}"));
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    let (client, connection) = config
        .connect(connector.tls.clone())
        .await
        .context("connecting to the PostgreSQL state database to prove this replica alive")?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "the liveness connection ended");
        }
    });
    let held: bool = client
        .query_one(
            &format!(
                "SELECT pg_try_advisory_lock({CLASS}, {})",
                key_of("$1::text")
            ),
            &[&id],
        )
        .await
        .context("taking this replica's liveness lock")?
        .get(0);
    if !held {
        let holder = client
            .query_opt(
                &format!(
                    "SELECT a.application_name || ' (process ' || a.pid || ', from '
                            || COALESCE(a.client_addr::text, 'a local socket') || ')'
                     FROM pg_locks k JOIN pg_stat_activity a ON a.pid = k.pid
                     WHERE {}",
                    is_lock_of("$1::text")
                ),
                &[&id],
            )
            .await
            .ok()
            .flatten()
            .map(|row| row.get::<_, String>(0))
            .unwrap_or_else(|| "another session".to_owned());
        return Err(crate::store::ReplicaIdInUse {
            id: id.to_owned(),
            holder,
        }
        .into());
    }
    Ok(client)
}
