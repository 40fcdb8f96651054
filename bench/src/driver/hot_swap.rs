//! Figure 3, hot swap: the time from a deploy request (the admin API's
//! `POST /admin/v1/steps/{step}/versions`, what `cosell mapping deploy` sends) to its answer,
//! which comes once the new version is persisted and serving. Cold: bytes this host has never
//! seen (compiled from scratch). Warm: a version deployed before, swapped back in (its compiled
//! artifact can be reused). Then warm swaps every 250 ms under figure 5's load, checking that
//! no record is dropped or processed twice meanwhile.
//!
//! Distinct versions of the default component are made by appending a custom section with a
//! nonce: the code is the same, the bytes (and so the content hash that names a version) differ.

use super::env::{ADMIN_TOKEN, BenchEnv, guest_path};
use super::workload::{self, Workload};
use anyhow::{Context as _, Result, bail};
use cosell_bench::results::{FigureResults, Row};
use cosell_bench::stats::{Summary, short};
use std::time::{Duration, Instant};

/// The step swapped: the default Partner Center → CRM mapping.
const STEP: &str = "referral-to-opportunity";

/// How the hot swap figure is driven.
#[derive(Debug, Clone, clap::Args)]
pub struct HotSwapArgs {
    /// Deploys of never-seen versions.
    #[arg(long, default_value_t = 8)]
    pub cold: usize,
    /// Swaps between two versions deployed before.
    #[arg(long, default_value_t = 20)]
    pub warm: usize,
    /// Seconds of load (200 changes/s) during which versions are swapped every 250 ms.
    #[arg(long, default_value_t = 20)]
    pub load_seconds: u64,
}

/// `wasm` with a custom section `cosell-bench-nonce` holding `nonce` appended: valid, same
/// code, another content hash.
pub fn with_nonce(wasm: &[u8], nonce: &str) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"cosell-bench-nonce";
    let mut payload = Vec::new();
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(nonce.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    leb128(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Deploys `wasm` and answers how long the request took; fails unless it was activated.
async fn deploy(client: &reqwest::Client, env: &BenchEnv, wasm: &[u8]) -> Result<Duration> {
    let started = Instant::now();
    let answer = client
        .post(format!("{}/admin/v1/steps/{STEP}/versions", env.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .body(wasm.to_vec())
        .send()
        .await?;
    let elapsed = started.elapsed();
    let status = answer.status();
    let report: serde_json::Value = answer.json().await.context("reading the deploy answer")?;
    if !status.is_success() || report["status"] != "activated" {
        bail!("the deploy was not activated ({status}): {report}");
    }
    Ok(elapsed)
}

fn ms(durations: &[Duration]) -> Summary {
    Summary::new(durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect())
}

/// Runs figure 3 and saves it.
pub async fn run(args: &HotSwapArgs) -> Result<FigureResults> {
    let env = super::latency::start_unthrottled().await?;
    let original = std::fs::read(guest_path("referral_to_opportunity.wasm")?)?;
    let client = reqwest::Client::new();
    let run_id = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();

    let mut cold = Vec::new();
    for i in 0..args.cold {
        cold.push(
            deploy(
                &client,
                &env,
                &with_nonce(&original, &format!("cold-{run_id}-{i}")),
            )
            .await?,
        );
    }
    let (a, b) = (
        with_nonce(&original, "warm-a"),
        with_nonce(&original, "warm-b"),
    );
    deploy(&client, &env, &a).await?;
    deploy(&client, &env, &b).await?;
    let mut warm = Vec::new();
    for i in 0..args.warm {
        warm.push(deploy(&client, &env, if i.is_multiple_of(2) { &a } else { &b }).await?);
    }
    let (cold_ms, warm_ms) = (ms(&cold), ms(&warm));
    eprintln!(
        "hot swap: cold median {:.1} ms, warm median {:.1} ms",
        cold_ms.median(),
        warm_ms.median()
    );

    eprintln!(
        "hot swap: swapping every 250 ms under 200 changes/s for {} s…",
        args.load_seconds
    );
    let load = Workload {
        rate: 200.0,
        duration: Duration::from_secs(args.load_seconds),
        update_share: 0.3,
        customers: 200,
        drain: Duration::from_secs(60),
        run: "swap".into(),
    };
    let swapping_until = Instant::now() + load.duration;
    let swapper = async {
        let mut under_load = Vec::new();
        let mut i = 0usize;
        while Instant::now() < swapping_until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            under_load
                .push(deploy(&client, &env, if i.is_multiple_of(2) { &a } else { &b }).await?);
            i += 1;
        }
        anyhow::Ok(under_load)
    };
    let (outcome, under_load) = tokio::join!(workload::run(&env.pc, &env.dv, &load), swapper);
    let (outcome, under_load) = (outcome?, under_load?);
    let loaded_ms = ms(&under_load);
    let changes = outcome.creates_sent + outcome.updates_sent;
    let clean = outcome.missing == 0 && outcome.duplicate_creates == 0;

    let figure = FigureResults {
        figure: 3,
        title: "Hot swap".into(),
        method: format!(
            "deploy request → answer (persisted and serving) through the admin API of a running host, default component (variants by a custom section); cold = never-seen bytes ({} deploys), warm = a version deployed before ({} swaps); then {} swaps every 250 ms while {changes} changes flowed at 200 /s",
            args.cold,
            args.warm,
            under_load.len()
        ),
        rows: vec![
            Row::info(
                "cold deploy (compile)",
                format!("{} ms", short(cold_ms.median())),
                cold_ms.iqr_text("ms"),
            ),
            Row::judged(
                "warm deploy (cached artifact)",
                format!("{} ms", short(warm_ms.median())),
                warm_ms.iqr_text("ms"),
                "< 100 ms",
                warm_ms.median() < 100.0,
            ),
            Row::info(
                "warm deploy under 200 changes/s",
                format!("{} ms", short(loaded_ms.median())),
                format!(
                    "{}; max {} ms",
                    loaded_ms.iqr_text("ms"),
                    short(loaded_ms.max())
                ),
            ),
            Row::judged(
                format!(
                    "records dropped / processed twice across {} swaps",
                    under_load.len()
                ),
                format!("{} / {}", outcome.missing, outcome.duplicate_creates),
                format!("{changes} changes"),
                "0 / 0",
                clean,
            ),
        ],
    };
    figure.save("3-hot-swap")?;
    Ok(figure)
}
