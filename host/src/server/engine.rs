//! Assembling the sync engine: the two clients, the engine and its workers, the pollers and
//! the webhook listener. Only when both `[partner_center]` and `[dataverse]` are configured.
//! The pollers run on the leader replica only ([`crate::replicas`]).

use crate::config::{HostConfig, PollersConfig};
use crate::connections::dataverse::DataverseClient;
use crate::connections::partner_center::PartnerCenterClient;
use crate::health::Health;
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::pipeline::Pipelines;
use crate::sinks::configured::{dataverse_client, partner_center_client};
use crate::sinks::dataverse::OpportunitySink;
use crate::sinks::partner_center::ReferralSink;
use crate::sources::dataverse_webhook::WebhookAuth;
use crate::sources::intake::Intake;
use crate::sources::partner_center_webhook::certificates::{
    CertificatePolicy, load_certificate_file,
};
use crate::sources::partner_center_webhook::signature::SignatureVerifier;
use crate::sources::{self, WebhookState};
use crate::store::{Side, SyncStore, Wakeup};
use crate::sync::SyncEngine;
use crate::sync::worker;
use anyhow::Result;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The running sync engine.
pub(crate) struct SyncParts {
    /// Where the webhook listener listens.
    pub webhook_addr: SocketAddr,
    /// Wakes the sync workers when an event is queued.
    pub wakeup: Wakeup,
    /// Where the sync engine keeps its state (the queue, the audit trail and the rest).
    pub store: Arc<dyn SyncStore>,
    /// The Dataverse lookups the workers share (their customer locks are pruned).
    pub lookups: Arc<crate::sinks::dataverse::lookups::Lookups>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    listener: Listener,
}

fn verifier(config: &HostConfig) -> Result<Option<Arc<SignatureVerifier>>> {
    let Some(pc) = &config.partner_center else {
        return Ok(None);
    };
    let pinned = pc
        .webhooks
        .trusted_certificates
        .iter()
        .map(|path| load_certificate_file(path))
        .collect::<Result<Vec<_>>>()?;
    let policy = CertificatePolicy {
        allowed_hosts: pc.webhooks.certificate_hosts.clone(),
        path_prefix: pc.webhooks.certificate_path_prefix.clone(),
        allow_http: pc.webhooks.allow_http,
        pinned,
        ..CertificatePolicy::default()
    };
    Ok(Some(Arc::new(SignatureVerifier::new(policy)?)))
}

fn dataverse_auth(config: &HostConfig) -> Result<Option<Arc<WebhookAuth>>> {
    let Some(auth) = &config.webhooks.dataverse else {
        tracing::warn!(
            "no [webhooks.dataverse]: Dataverse deliveries are refused and opportunity changes arrive only through the change-tracking poller"
        );
        return Ok(None);
    };
    Ok(Some(Arc::new(WebhookAuth {
        kind: auth.kind,
        name: auth.name.clone(),
        value: auth.value.read("webhooks.dataverse.value")?,
    })))
}

/// The pollers `[pollers]` switches on, stopping at `stop`, reporting their rounds to
/// `health`.
fn start_pollers(
    pollers: &PollersConfig,
    dv: &DataverseClient,
    pc: &PartnerCenterClient,
    intake: &Arc<Intake>,
    health: &Arc<Health>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if pollers.dataverse_interval_secs > 0 {
        tasks.push(tokio::spawn(sources::dataverse_changes::run(
            dv.clone(),
            intake.clone(),
            Duration::from_secs(pollers.dataverse_interval_secs),
            pollers.initial_sync,
            health.clone(),
            stop.clone(),
        )));
    }
    if pollers.partner_center_interval_secs > 0 {
        tasks.push(tokio::spawn(sources::partner_center_reconcile::run(
            pc.clone(),
            intake.clone(),
            Duration::from_secs(pollers.partner_center_interval_secs),
            Duration::from_secs(pollers.partner_center_overlap_secs),
            pollers.initial_sync,
            health.clone(),
            stop,
        )));
    }
    tasks
}

/// Starts the engine, its workers, the webhook listener, and the pollers whenever `leader`
/// turns true (stopped when it turns false). The clients, the pollers, the listener and the
/// engine's pauses report to `health` (readiness and the request metrics).
pub(crate) async fn start(
    config: &HostConfig,
    store: Arc<dyn SyncStore>,
    pipelines: Arc<Pipelines>,
    metrics: Arc<Metrics>,
    leader: watch::Receiver<bool>,
    health: Arc<Health>,
) -> Result<SyncParts> {
    let pc = partner_center_client(config, store.clone())?;
    let dv = dataverse_client(config)?;
    pc.observe(health.clone());
    dv.observe(health.clone());
    let writer = OpportunitySink::new(dv.clone(), store.customer_locks());
    let lookups = writer.lookups();
    let engine = Arc::new(SyncEngine::new(
        store.clone(),
        pipelines,
        ReferralSink::new(pc.clone()),
        writer,
        config.sync.clone(),
        metrics.clone(),
    ));
    let paused = engine.clone();
    health.watch_pauses(Box::new(move || {
        [Side::PartnerCenter, Side::Dataverse]
            .into_iter()
            .map(|side| (side.as_str(), paused.is_paused(side)))
            .collect()
    }));
    let wakeup: Wakeup = Arc::new(Notify::new());
    // The intake tells the echo of cosell's own write as the engine does.
    let own_writes = engine.volatile().to_columns();
    let intake = Arc::new(
        Intake::new(store.clone(), wakeup.clone(), metrics, Some(own_writes))?
            .waiting_for(engine.writes_in_flight()),
    );
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = worker::spawn(engine, config.sync.workers, wakeup.clone(), stop_rx.clone());
    // The pollers run on the leader only (one replica of a shared state; always, alone).
    let pollers = config.pollers.clone();
    let poller_intake = intake.clone();
    let poller_health = health.clone();
    tasks.push(tokio::spawn(crate::replicas::leader_tasks::while_leader(
        "pollers",
        leader,
        stop_rx.clone(),
        move |stop| start_pollers(&pollers, &dv, &pc, &poller_intake, &poller_health, stop),
    )));
    let state = WebhookState {
        intake,
        max_body_bytes: config.webhooks.max_body_bytes,
        partner_center: verifier(config)?,
        dataverse: dataverse_auth(config)?,
    };
    let app = sources::router(state);
    let mut stopping = stop_rx.clone();
    let listener = Listener::start(
        "cosell-webhooks",
        "webhooks.listen",
        config.webhooks.listen,
        app,
        config.webhooks.limits()?,
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        },
    )?;
    health.watch_webhook_listener(listener.serving_flag());
    let webhook_addr = listener.addr;
    tracing::info!(%webhook_addr, workers = config.sync.workers, "sync engine started");
    Ok(SyncParts {
        webhook_addr,
        wakeup,
        store,
        lookups,
        stop,
        tasks,
        listener,
    })
}

impl SyncParts {
    /// The deployer's activation hook: the records parked on an earlier version of the
    /// activated step are queued again, and the workers woken.
    pub(crate) fn requeue_parked_hook(&self) -> crate::deploy::ActivationHook {
        let (store, wakeup) = (self.store.clone(), self.wakeup.clone());
        Box::new(move |step, version| {
            if worker::requeue_parked(&*store, step, version) > 0 {
                wakeup.notify_waiters();
            }
        })
    }

    /// Stops the listener, the pollers and the workers (each finishes its current event).
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.listener.stopped().await {
            tracing::warn!(error = %err, "the webhook listener stopped with an error");
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
