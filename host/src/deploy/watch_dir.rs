//! Hot swap by file drop: a `.wasm` file put in the watched directory is deployed.
//!
//! The file name says which step it is for: `<step>.wasm` or `<step>.<anything>.wasm`
//! (for example `referral-to-opportunity.v7.wasm`). The directory is scanned every
//! `deploy.watch_interval_ms`; a file is picked up once its size and modification time are the
//! same on two scans in a row, so a half-copied file is never deployed (writing to a hidden
//! `.name` and renaming is safer still: hidden files are ignored). A processed file is moved
//! out of the way so the directory shows what is pending and a restart does not re-deploy it:
//! to `deployed/` when it went live or was already live, to `rejected/` with a `.reason.txt`
//! beside it when it was refused.

use super::{DeploySource, Deployer};
use anyhow::{Context as _, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Scans a directory for new step versions.
pub struct DropDirectory {
    dir: PathBuf,
    deployer: Arc<Deployer>,
    // What each pending file looked like at the previous scan: (size, modified).
    pending: HashMap<PathBuf, (u64, SystemTime)>,
}

/// What happened to one dropped file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropOutcome {
    Deployed { file: PathBuf, version: String },
    Rejected { file: PathBuf, reason: String },
}

impl DropDirectory {
    /// Watches `dir`, creating it and its `deployed/` and `rejected/` folders.
    pub fn new(dir: PathBuf, deployer: Arc<Deployer>) -> Result<Self> {
        for sub in ["", "deployed", "rejected"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating the watched directory {}", path.display()))?;
        }
        Ok(Self {
            dir,
            deployer,
            pending: HashMap::new(),
        })
    }

    /// Scans until the task is dropped.
    pub async fn run(mut self, interval: Duration) {
        tracing::info!(dir = %self.dir.display(), ?interval, "watching for dropped .wasm files");
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = self.scan().await {
                tracing::warn!(dir = %self.dir.display(), error = %format!("{err:#}"), "scanning the watched directory failed");
            }
        }
    }

    /// One scan: deploys every file that has been stable since the previous scan.
    pub async fn scan(&mut self) -> Result<Vec<DropOutcome>> {
        let mut outcomes = Vec::new();
        let mut seen = HashMap::new();
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata()?;
            if !meta.is_file() || name.starts_with('.') || !name.ends_with(".wasm") {
                continue;
            }
            let shape = (meta.len(), meta.modified()?);
            if self.pending.get(&path) == Some(&shape) {
                outcomes.push(self.process(&path, &name).await?);
            } else {
                seen.insert(path, shape);
            }
        }
        self.pending = seen;
        Ok(outcomes)
    }

    async fn process(&self, path: &Path, name: &str) -> Result<DropOutcome> {
        let step = name.split('.').next().unwrap_or_default().to_owned();
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let file_name = format!("{stamp}-{name}");
        match self
            .deployer
            .deploy(&step, bytes, DeploySource::WatchDir)
            .await
        {
            Ok(report) => {
                let target = self.dir.join("deployed").join(&file_name);
                std::fs::rename(path, &target).with_context(|| {
                    format!("moving {} to {}", path.display(), target.display())
                })?;
                tracing::info!(file = name, step, version = %report.version, status = ?report.status, "dropped file deployed");
                Ok(DropOutcome::Deployed {
                    file: target,
                    version: report.version,
                })
            }
            Err(err) => {
                let target = self.dir.join("rejected").join(&file_name);
                let reason = err.to_string();
                std::fs::rename(path, &target).with_context(|| {
                    format!("moving {} to {}", path.display(), target.display())
                })?;
                std::fs::write(target.with_extension("reason.txt"), format!("{reason}\n"))?;
                tracing::warn!(file = name, step, %reason, "dropped file refused");
                Ok(DropOutcome::Rejected {
                    file: target,
                    reason,
                })
            }
        }
    }
}
