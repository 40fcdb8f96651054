//! Figure 4, webhook intake: Partner Center webhooks per second accepted by a running host and
//! stored durably (signature verified against the emulator's certificate, event in SQLite with
//! `synchronous = FULL` before the 2xx), driven from this separate process on loopback.
//!
//! The deliveries are genuine: the body Partner Center sends, signed with the emulator's key
//! exactly as its deliverer signs them. They are signed before the clock starts (RSA signing
//! costs the sender ~1 ms each, which is Microsoft's cost, not cosell's). Every delivery names
//! a referral of its own, so each one is a new row (nothing coalesces). During the run the
//! Partner Center API answers 503 (a fault in front of its routes; the certificate stays
//! reachable) and the host runs one worker, so the queue's consumers barely compete for the
//! two cores: this figure is the intake alone; figure 5 is the whole path.

use super::env::{BenchEnv, EnvOptions};
use super::metric_value;
use anyhow::{Result, bail};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::{Summary, short};
use cosell_emulators::dataverse::DataverseConfig;
use cosell_emulators::partner_center::signing::SigningMaterial;
use cosell_emulators::partner_center::webhooks::WebhookEvent;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How the intake figure is driven.
#[derive(Debug, Clone, clap::Args)]
pub struct IntakeArgs {
    /// Deliveries per round.
    #[arg(long, default_value_t = 8_000)]
    pub deliveries: usize,
    /// Rounds (each with fresh referral ids); the figure is their median.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Deliveries in flight at once (HTTP/1.1 connections). Group commit turns concurrency
    /// into throughput: each batch costs one fsync, whatever its size.
    #[arg(long, default_value_t = 128)]
    pub connections: usize,
}

/// One signed delivery, ready to send.
struct Delivery {
    body: Vec<u8>,
    signature: String,
}

/// Builds and signs `count` deliveries for new referral ids, on every core.
fn sign_deliveries(pc_url: &str, round: usize, count: usize) -> Vec<Delivery> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let material = SigningMaterial::get();
                    (t * chunk..((t + 1) * chunk).min(count))
                        .map(|i| {
                            let id = format!("00000000-0000-4000-8000-{round:04}{i:08}");
                            let event = WebhookEvent::new(
                                "referral-created",
                                "referral",
                                format!("{pc_url}/v1.0/engagements/referrals/{id}"),
                                chrono::Utc::now(),
                            );
                            let body = serde_json::to_vec(&event).expect("an event serialises");
                            let signature = format!("Signature {}", material.sign_base64(&body));
                            Delivery { body, signature }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    })
}

/// Sends every delivery with `connections` in flight; answers (accepted, refused, elapsed).
async fn send_all(
    url: &str,
    certificate_url: &str,
    deliveries: Arc<Vec<Delivery>>,
    connections: usize,
) -> Result<(usize, usize, Duration)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, cert) = (client.clone(), url.to_owned(), certificate_url.to_owned());
            let (deliveries, next, accepted) = (deliveries.clone(), next.clone(), accepted.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(delivery) = deliveries.get(i) else {
                        break;
                    };
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("authorization", &delivery.signature)
                        .header("x-ms-certificate-url", &cert)
                        .header("x-ms-signature-algorithm", "rsa-sha256")
                        .body(delivery.body.clone())
                        .send()
                        .await;
                    if answer.is_ok_and(|a| a.status().is_success()) {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let accepted = accepted.load(Ordering::Relaxed);
    Ok((accepted, deliveries.len() - accepted, elapsed))
}

/// Runs figure 4 and saves it.
pub async fn run(args: &IntakeArgs) -> Result<FigureResults> {
    let env = BenchEnv::start(EnvOptions {
        extra: "[sync]\nworkers = 1\nretry_base_ms = 600000\n".into(),
        dataverse: DataverseConfig::default(),
        register_webhooks: false,
        ..EnvOptions::default()
    })
    .await?;
    env.pc
        .faults()
        .set(cosell_emulators::common::faults::FaultConfig {
            error_rate: 1.0,
            ..Default::default()
        })
        .map_err(anyhow::Error::msg)?;
    let url = format!("{}/webhooks/partner-center", env.webhooks_url);
    let certificate_url = format!(
        "{}{}",
        env.pc_url,
        cosell_emulators::partner_center::signing::CERTIFICATE_PATH
    );
    // One warm-up delivery: the host downloads and caches the certificate.
    let warm = Arc::new(sign_deliveries(&env.pc_url, 9999, 1));
    send_all(&url, &certificate_url, warm, 1).await?;

    let mut rates = Vec::new();
    let mut refused_total = 0;
    for round in 0..args.rounds {
        eprintln!(
            "intake: signing {} deliveries for round {}…",
            args.deliveries,
            round + 1
        );
        let deliveries = Arc::new(sign_deliveries(&env.pc_url, round, args.deliveries));
        let (accepted, refused, elapsed) =
            send_all(&url, &certificate_url, deliveries, args.connections).await?;
        let rate = accepted as f64 / elapsed.as_secs_f64();
        eprintln!(
            "intake: round {}: {accepted} accepted, {refused} refused in {:.2} s = {rate:.0}/s",
            round + 1,
            elapsed.as_secs_f64()
        );
        refused_total += refused;
        rates.push(rate);
    }
    // Durability, checked from the host's side: every accepted delivery is a stored event.
    let stored = metric_value(
        &env.metrics().await?,
        "cosell_intake_events_total",
        &["source=\"partner-center-webhook\"", "result=\"queued\""],
    );
    let sent = args.rounds * args.deliveries - refused_total + 1;
    if stored as usize != sent {
        bail!("the host says it stored {stored} events, but {sent} deliveries were acknowledged");
    }
    let summary = Summary::new(rates);
    let figure = FigureResults {
        figure: 4,
        title: "Webhook intake".into(),
        method: format!(
            "{} rounds × {} genuine signed Partner Center deliveries (one new referral each), {} connections from a separate process on loopback; every 2xx checked stored (host metric); 1 sync worker, Partner Center API failing (intake alone)",
            args.rounds, args.deliveries, args.connections
        ),
        rows: vec![Row::judged(
            "Partner Center webhooks accepted and stored",
            format!("{} /s", short(summary.median())),
            format!(
                "rounds {}–{} /s; {refused_total} refused",
                short(summary.percentile(0.0)),
                short(summary.max())
            ),
            "≥ 5,000 /s",
            summary.median() >= 5000.0,
        )],
    };
    figure.save("4-intake")?;
    Ok(figure)
}
