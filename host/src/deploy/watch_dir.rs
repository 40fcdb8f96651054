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
//!
//! Whoever can put a file here deploys code into the host, so the directory (and its
//! `deployed/` and `rejected/`) is made the host's user's only: created with mode 0700, an
//! existing wider one narrowed to 0700. A file that belongs to another user is refused, and so
//! is one over `limits.max_component_bytes`, judged from its metadata before a byte of it is
//! read. Each file is handled on its own: one that cannot be read or moved is logged, left in
//! place and tried again later, and the scan goes on with the others.

use super::{DeploySource, Deployer};
use crate::private_dir::{create_private_dir, foreign_owner};
use anyhow::{Context as _, Result};
use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Scans a directory for new step versions.
pub struct DropDirectory {
    dir: PathBuf,
    deployer: Arc<Deployer>,
    // What each pending file looked like at the previous scan: (size, modified).
    pending: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    // limits.max_component_bytes: a bigger file is refused without being read.
    max_bytes: u64,
}

/// What happened to one dropped file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropOutcome {
    /// The file went live, or its version was live already.
    Deployed {
        /// Where the file is now, in `deployed/`.
        file: PathBuf,
        /// The version it holds, now the active version of its step.
        version: String,
    },
    /// The file was refused (it is too large or not the host user's, or the deploy was
    /// refused); a `.reason.txt` beside it says why.
    Rejected {
        /// Where the file is now, in `rejected/`.
        file: PathBuf,
        /// Why it was refused, as written to its `.reason.txt`.
        reason: String,
    },
    /// The file could not be handled (read, moved) and was left where it is; it is tried
    /// again once it has looked the same on two more scans.
    Failed {
        /// The file, where it was dropped.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl DropDirectory {
    /// Watches `dir`, creating it and its `deployed/` and `rejected/` folders with mode 0700
    /// (narrowing them to 0700 when they exist).
    pub fn new(dir: PathBuf, deployer: Arc<Deployer>) -> Result<Self> {
        for sub in ["", "deployed", "rejected"] {
            create_private_dir(&dir.join(sub), "the watched directory (deploy.watch_dir)")?;
        }
        let max_bytes = deployer.pipelines().runtime().limits().max_component_bytes;
        Ok(Self {
            dir,
            deployer,
            pending: HashMap::new(),
            max_bytes,
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

    /// One scan: deploys every file that has been stable since the previous scan. Fails only
    /// when the directory itself cannot be listed; a file that cannot be handled is reported
    /// as [`DropOutcome::Failed`] and the others are still handled.
    pub async fn scan(&mut self) -> Result<Vec<DropOutcome>> {
        let mut outcomes = Vec::new();
        let mut seen = HashMap::new();
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?;
        for entry in entries {
            // An entry that vanished or cannot be looked at is skipped: it will be seen again.
            let (entry, meta) = match entry.and_then(|e| e.metadata().map(|meta| (e, meta))) {
                Ok(found) => found,
                Err(err) => {
                    tracing::warn!(dir = %self.dir.display(), error = %err, "skipping an entry of the watched directory");
                    continue;
                }
            };
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !meta.is_file() || name.starts_with('.') || !name.ends_with(".wasm") {
                continue;
            }
            let shape = (meta.len(), meta.modified().ok());
            if self.pending.get(&path) != Some(&shape) {
                seen.insert(path, shape);
                continue;
            }
            match self.process(&path, &name).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(err) => {
                    // Not remembered as pending: it must look the same on two more scans
                    // before the next attempt, which spaces out the retries of a stuck file.
                    let reason = format!("{err:#}");
                    tracing::warn!(file = name, %reason, "a dropped file could not be handled; it is left in place and tried again");
                    outcomes.push(DropOutcome::Failed { file: path, reason });
                }
            }
        }
        self.pending = seen;
        Ok(outcomes)
    }

    async fn process(&self, path: &Path, name: &str) -> Result<DropOutcome> {
        let step = name.split('.').next().unwrap_or_default().to_owned();
        let bytes = match self.read_checked(path)? {
            Ok(bytes) => bytes,
            Err(reason) => return self.reject(path, name, &step, reason),
        };
        match self
            .deployer
            .deploy(&step, bytes, DeploySource::WatchDir)
            .await
        {
            Ok(report) => {
                let target = self.dir.join("deployed").join(stamped(name));
                std::fs::rename(path, &target).with_context(|| {
                    format!("moving {} to {}", path.display(), target.display())
                })?;
                tracing::info!(file = name, step, version = %report.version, status = ?report.status, "dropped file deployed");
                Ok(DropOutcome::Deployed {
                    file: target,
                    version: report.version,
                })
            }
            Err(err) => self.reject(path, name, &step, err.to_string()),
        }
    }

    /// The file's bytes, or (inner `Err`) why it is refused without reading it: it belongs to
    /// another user, or its size is over the limit. The checks use the opened file's own
    /// metadata, so a file swapped in after the directory was listed is judged, not its
    /// predecessor.
    fn read_checked(&self, path: &Path) -> Result<Result<Vec<u8>, String>> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading the metadata of {}", path.display()))?;
        if let Some(reason) = foreign_owner(&meta) {
            return Ok(Err(reason));
        }
        if meta.len() > self.max_bytes {
            return Ok(Err(format!(
                "the file is {} bytes, over limits.max_component_bytes ({} bytes); it was not read",
                meta.len(),
                self.max_bytes
            )));
        }
        // Bounded even so: a file still growing is cut one byte past the limit, which the
        // deployer refuses by the same limit, instead of being read whatever its size.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Ok(bytes))
    }

    /// Moves a refused file to `rejected/`, with its reason in a `.reason.txt` beside it.
    fn reject(&self, path: &Path, name: &str, step: &str, reason: String) -> Result<DropOutcome> {
        let target = self.dir.join("rejected").join(stamped(name));
        std::fs::rename(path, &target)
            .with_context(|| format!("moving {} to {}", path.display(), target.display()))?;
        let reason_file = target.with_extension("reason.txt");
        std::fs::write(&reason_file, format!("{reason}\n"))
            .with_context(|| format!("writing {}", reason_file.display()))?;
        tracing::warn!(file = name, step, %reason, "dropped file refused");
        Ok(DropOutcome::Rejected {
            file: target,
            reason,
        })
    }
}

/// `name` prefixed with the current time, so a later drop of the same name keeps both.
fn stamped(name: &str) -> String {
    format!("{}-{name}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"))
}
