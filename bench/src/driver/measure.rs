//! What the load figures (5 and 8) share around a workload: the warm-up before anything is
//! measured, and the CPU time each side spends, per change or idle per second (the host, the
//! emulators in this process, and a PostgreSQL server when the host keeps its state in one).

use super::env::BenchEnv;
use super::procfs::cpu_seconds;
use super::workload::{self, Workload};
use anyhow::{Result, bail};
use std::time::Duration;

/// Warms the host up (tokens, connections, the first account, the components' first
/// instances) with a few changes, then lets it settle; fails if they did not sync.
pub async fn warm_up(env: &BenchEnv) -> Result<()> {
    let warm = workload::run(
        &env.pc,
        &env.dv,
        &Workload {
            rate: 20.0,
            duration: Duration::from_secs(2),
            update_share: 0.0,
            customers: 5,
            drain: Duration::from_secs(20),
            run: "warmup".into(),
        },
    )
    .await?;
    if warm.missing > 0 {
        bail!(
            "the warm-up did not sync ({} missing); host log:\n{}",
            warm.missing,
            env.host_log()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// CPU time in milliseconds by who spent it, in all or per change (or per second).
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    /// The `cosell serve` process.
    pub host: f64,
    /// This process: both emulators (and the driver's bookkeeping, a small part).
    pub emulators: f64,
    /// The PostgreSQL server, all its processes; `None` on SQLite (or a server elsewhere).
    pub database: Option<f64>,
}

impl Cpu {
    /// Each share divided by `n` (changes, or seconds).
    pub fn per(&self, n: f64) -> Cpu {
        let n = n.max(1e-9);
        Cpu {
            host: self.host / n,
            emulators: self.emulators / n,
            database: self.database.map(|ms| ms / n),
        }
    }

    /// Cores busy at `rate` changes per second, for CPU per change.
    pub fn cores_at(&self, rate: f64) -> f64 {
        (self.host + self.emulators + self.database.unwrap_or(0.0)) * rate / 1000.0
    }
}

/// CPU time counters taken at the start of a measurement.
pub struct CpuMeter {
    host: f64,
    emulators: f64,
    database: Option<f64>,
}

impl CpuMeter {
    /// Reads every counter now.
    pub fn start(env: &BenchEnv) -> Result<Self> {
        Ok(Self {
            host: cpu_seconds(env.host_pid())?,
            emulators: cpu_seconds(std::process::id())?,
            database: env.database.as_ref().and_then(|d| d.server_cpu_seconds()),
        })
    }

    /// The CPU time spent since [`start`](Self::start).
    pub fn spent(&self, env: &BenchEnv) -> Result<Cpu> {
        let ms = |before: f64, after: f64| (after - before) * 1000.0;
        let database = env.database.as_ref().and_then(|d| d.server_cpu_seconds());
        Ok(Cpu {
            host: ms(self.host, cpu_seconds(env.host_pid())?),
            emulators: ms(self.emulators, cpu_seconds(std::process::id())?),
            database: self.database.zip(database).map(|(b, a)| ms(b, a)),
        })
    }

    /// The CPU time spent since [`start`](Self::start), per change of `changes`.
    pub fn per_change(&self, env: &BenchEnv, changes: usize) -> Result<Cpu> {
        Ok(self.spent(env)?.per(changes as f64))
    }
}

/// The CPU time per second everything spends with no load at all, over `seconds` (work
/// that is paid per second, not per change: timers, checks, a database server's own).
pub async fn idle_cpu_per_second(env: &BenchEnv, seconds: u64) -> Result<Cpu> {
    let meter = CpuMeter::start(env)?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(meter.spent(env)?.per(seconds as f64))
}
