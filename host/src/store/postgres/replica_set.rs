//! Replicas on PostgreSQL: leadership by a session advisory lock, deployments by
//! `LISTEN`/`NOTIFY`, each on a connection of its own (never the pool's: a session lock must
//! live exactly as long as its connection, and a listening connection must stay idle).
//!
//! Both run on a small runtime of their own (thread `cosell-replicas`), so a main runtime
//! busy with workers never delays noticing a lost connection or a notice.
//!
//! - **Leadership**: `pg_try_advisory_lock` on the lock's connection, tried every
//!   [`RETRY`] until it succeeds. The leader then checks its connection every [`RETRY`]; a
//!   connection that ends or does not answer within [`CHECK_TIMEOUT`] ends leadership at once
//!   (the connection is closed, which releases the lock if the server still held it), and the
//!   replica contends again. A replica that dies ends its session, so the server releases
//!   its lock and another replica takes it at its next try: well within 10 s.
//!   The lock is keyed by the schema the store lives in, so two installations sharing one
//!   database in different schemas each have their leader.
//! - **Deployments**: `LISTEN` [`DEPLOYMENTS_CHANNEL`]; every notice (a step name) is handed
//!   on. After each (re)connection a [`Notice::MaybeMissed`] asks for a full comparison.

use super::{Connector, DEPLOYMENTS_CHANNEL};
use crate::store::replica_set::{Leave, Membership, Notice, ReplicaSet};
use anyhow::{Context as _, Result};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};

/// How often a replica that is not the leader tries the lock, and how often the leader checks
/// its connection.
pub(super) const RETRY: Duration = Duration::from_secs(2);
/// How long a check of the lock's connection may take before leadership is given up.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The leader's lock: the pair form (`int4, int4`), whose keys never collide with the
/// single-key locks of the store; the first is "cose", the second the store's schema.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(1668248421, hashtext(current_schema()))";

/// The replicas of one PostgreSQL state database.
pub struct PgReplicaSet {
    connector: Connector,
}

impl PgReplicaSet {
    /// Replicas reached with `connector` (the store's connection settings).
    pub fn new(connector: Connector) -> Self {
        Self { connector }
    }
}

impl ReplicaSet for PgReplicaSet {
    fn join(&self, replica_id: &str) -> Result<Membership> {
        let (leading, leader) = watch::channel(false);
        let (notify, notices) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let connector = self.connector.clone();
        let id = replica_id.to_owned();
        let thread = std::thread::Builder::new()
            .name("cosell-replicas".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        tracing::error!(error = %err, "could not start the replicas' runtime: this replica never leads nor follows deployments");
                        return;
                    }
                };
                runtime.block_on(async {
                    tokio::join!(
                        contend(&connector, &id, &leading, stopped.clone()),
                        listen(&connector, &id, &notify, stopped.clone()),
                    );
                });
            })
            .context("starting the thread that contends for leadership")?;
        Ok(Membership {
            leader,
            notices: Some(notices),
            stop: Some(Box::new(Stop { stop, thread })),
        })
    }
}

struct Stop {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Leave for Stop {
    fn signal(&self) {
        let _ = self.stop.send(true);
    }

    fn wait(self: Box<Self>) {
        let _ = self.thread.join();
    }
}

/// Resolves when the membership ends.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A dedicated connection named `application_name`; every notice it receives goes to
/// `notices`. The handle ends when the connection does (aborting it closes the connection).
async fn session(
    connector: &Connector,
    application_name: &str,
    notices: Option<mpsc::UnboundedSender<Notice>>,
) -> Result<(Client, JoinHandle<()>)> {
    let mut config = connector.config.clone();
    config.application_name(application_name);
    // A connection silently gone (a network cut) is noticed within about a minute even while
    // idle (the listening one), instead of the system's two hours.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    let (client, mut connection) = config
        .connect(connector.tls.clone())
        .await
        .context("connecting to the PostgreSQL state database")?;
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notice))) => {
                    if let Some(notices) = &notices {
                        let _ = notices.send(Notice::Activated(notice.payload().to_owned()));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "a replica connection ended");
                    return;
                }
                None => return,
            }
        }
    });
    Ok((client, driver))
}

/// Contends for leadership until `stop`; `leading` says whether this replica holds the lock.
async fn contend(
    connector: &Connector,
    replica_id: &str,
    leading: &watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let name = format!("cosell-leader {replica_id}");
    let cannot =
        "cannot reach the state database to contend for leadership; trying again every 2 s";
    reconnecting(&mut stop, replica_id, cannot, async |stop| {
        let (client, mut driver) = session(connector, &name, None).await?;
        hold(&client, &mut driver, replica_id, leading, stop).await;
        // Closes the connection: the server releases the lock if it still held it.
        driver.abort();
        if leading.send_replace(false) {
            tracing::warn!(
                replica_id,
                "this replica is no longer the leader: its pollers and retention stop"
            );
        }
        Ok(())
    })
    .await;
    leading.send_replace(false);
}

/// Runs `connected` (one connection's life: it returns when the connection ends, or fails to
/// make one) again every [`RETRY`] until `stop`. Of failures in a row, only the first is
/// warned about (`cannot`, with its error): a database that stays away is one warning, not
/// one every 2 s.
async fn reconnecting(
    stop: &mut watch::Receiver<bool>,
    replica_id: &str,
    cannot: &str,
    mut connected: impl AsyncFnMut(&mut watch::Receiver<bool>) -> Result<()>,
) {
    let mut warned = false;
    while !*stop.borrow() {
        match connected(stop).await {
            Ok(()) => warned = false,
            Err(err) if !warned => {
                warned = true;
                tracing::warn!(replica_id, error = %format!("{err:#}"), "{cannot}");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stopping(stop) => {}
        }
    }
}

/// Tries the lock on `client` every [`RETRY`], then checks the connection as often while it
/// is held; returns when the connection fails, or at `stop`.
async fn hold(
    client: &Client,
    driver: &mut JoinHandle<()>,
    replica_id: &str,
    leading: &watch::Sender<bool>,
    stop: &mut watch::Receiver<bool>,
) {
    loop {
        let held = *leading.borrow();
        let sql = if held { "SELECT true" } else { TRY_LOCK };
        let answer = match tokio::time::timeout(CHECK_TIMEOUT, client.query_one(sql, &[])).await {
            Ok(Ok(row)) => row.get::<_, bool>(0),
            Ok(Err(err)) => {
                tracing::debug!(replica_id, error = %err, "the leadership connection failed");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    replica_id,
                    "the leadership connection did not answer in time; closing it"
                );
                return;
            }
        };
        if answer && !held {
            leading.send_replace(true);
            tracing::info!(
                replica_id,
                "this replica is the leader now: it runs the pollers and retention"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = &mut *driver => return,
            _ = stopping(stop) => return,
        }
    }
}

/// Listens for activation notices until `stop`, reconnecting every [`RETRY`] when the
/// connection is lost.
async fn listen(
    connector: &Connector,
    replica_id: &str,
    notices: &mpsc::UnboundedSender<Notice>,
    mut stop: watch::Receiver<bool>,
) {
    let name = format!("cosell-deployments {replica_id}");
    let cannot = "cannot listen for deployments; trying again every 2 s (the periodic check \
                  covers the gap)";
    reconnecting(&mut stop, replica_id, cannot, async |stop| {
        let (client, mut driver) = session(connector, &name, Some(notices.clone())).await?;
        if let Err(err) = client
            .batch_execute(&format!("LISTEN {DEPLOYMENTS_CHANNEL}"))
            .await
        {
            driver.abort();
            return Err(anyhow::Error::new(err).context("LISTEN refused"));
        }
        tracing::debug!(replica_id, "listening for deployments");
        // Whatever was activated while nobody listened.
        let _ = notices.send(Notice::MaybeMissed);
        tokio::select! {
            _ = &mut driver => {
                tracing::warn!(replica_id, "lost the connection that hears deployments; reconnecting (the periodic check covers the gap)");
            }
            _ = stopping(stop) => driver.abort(),
        }
        Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateConfig;
    use crate::store::test_postgres::{TestSchema, execute};

    fn replicas(schema: &TestSchema) -> PgReplicaSet {
        let state = StateConfig {
            url: Some(schema.url.clone()),
            ..StateConfig::default()
        };
        // The schema is made by the store's migrations; the lock and the channel need none.
        PgReplicaSet::new(Connector::new(&state, "cosell-test").unwrap())
    }

    /// Waits (bounded) until `leader` is `want`.
    async fn until(leader: &mut watch::Receiver<bool>, want: bool, within: Duration) {
        tokio::time::timeout(within, leader.wait_for(|l| *l == want))
            .await
            .unwrap_or_else(|_| panic!("leadership not {want} within {within:?}"))
            .unwrap();
    }

    /// Ends the sessions named `application_name` on the server (as a network cut would).
    fn cut(url: &str, application_name: &str) {
        execute(
            url,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = '{application_name}'"
            ),
        )
        .unwrap();
    }

    #[test]
    fn one_leader_a_cut_connection_loses_it_at_once_and_leaving_hands_it_over() {
        let schema = TestSchema::new();
        let set = replicas(&schema);
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let a = set.join("a").unwrap();
            let mut a_leads = a.leader.clone();
            until(&mut a_leads, true, Duration::from_secs(10)).await;
            let b = set.join("b").unwrap();
            let b_leads = b.leader.clone();
            // B tries several times, and never gets it while A holds it.
            tokio::time::sleep(RETRY * 2 + Duration::from_millis(500)).await;
            assert!(!*b_leads.borrow() && *a_leads.borrow());

            // A's lock connection is cut: A is no longer the leader at once, and one of them
            // is again within a retry or two.
            cut(&schema.url, "cosell-leader a");
            until(&mut a_leads, false, CHECK_TIMEOUT + Duration::from_secs(1)).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !*a_leads.borrow() && !*b_leads.borrow() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no leader after the cut"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(!(*a_leads.borrow() && *b_leads.borrow()), "two leaders");

            // Whoever leads leaves: the other takes over.
            let (leaving, mut staying) = if *a_leads.borrow() {
                (a, b_leads)
            } else {
                (b, a_leads)
            };
            leaving.leave().await;
            until(&mut staying, true, Duration::from_secs(10)).await;
        });
    }

    /// The next notice, skipping those of other tests (the channel is the database's).
    async fn next(notices: &mut mpsc::UnboundedReceiver<Notice>) -> Notice {
        loop {
            let notice = tokio::time::timeout(Duration::from_secs(10), notices.recv())
                .await
                .expect("a notice within 10 s")
                .expect("the notices go on");
            match &notice {
                Notice::Activated(step) if !step.starts_with("replicas-test-") => {}
                _ => return notice,
            }
        }
    }

    #[test]
    fn a_lost_notification_connection_is_reopened_and_asks_for_a_full_check() {
        let schema = TestSchema::new();
        let set = replicas(&schema);
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let mut member = set.join("n").unwrap();
            let mut notices = member.notices.take().unwrap();
            assert_eq!(
                next(&mut notices).await,
                Notice::MaybeMissed,
                "after connecting"
            );
            execute(&schema.url, "NOTIFY cosell_deployments, 'replicas-test-1'").unwrap();
            assert_eq!(
                next(&mut notices).await,
                Notice::Activated("replicas-test-1".into())
            );
            cut(&schema.url, "cosell-deployments n");
            assert_eq!(
                next(&mut notices).await,
                Notice::MaybeMissed,
                "after reconnecting"
            );
            execute(&schema.url, "NOTIFY cosell_deployments, 'replicas-test-2'").unwrap();
            assert_eq!(
                next(&mut notices).await,
                Notice::Activated("replicas-test-2".into())
            );
            member.leave().await;
        });
    }
}
