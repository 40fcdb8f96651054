//! The sandbox's child processes (the replicas and HAProxy): started in a process group of
//! their own, so a Ctrl-C at the terminal reaches the sandbox alone and the sandbox decides the
//! order of shutdown; their output kept in a log file each; a death the sandbox did not ask
//! for reported in its log; stopped with SIGTERM, and SIGKILL if they linger.

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::process::Command;
use tokio::task::JoinHandle;

/// How long a child has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// A running child process, watched.
pub(super) struct Supervised {
    /// What it is, for messages: `replica sandbox-2`, `HAProxy`.
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
    stopping: Arc<AtomicBool>,
    exited: JoinHandle<std::io::Result<ExitStatus>>,
}

impl Supervised {
    /// Starts `command` with its standard output and error appended to `log`.
    pub(super) fn spawn(name: String, mut command: Command, log: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            // Should the runtime go down with the child still running, the child goes too.
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.as_std().get_program()))?;
        let pid = child.id().context("the child has no process id")?;
        let stopping = Arc::new(AtomicBool::new(false));
        let exited = tokio::spawn({
            let (name, stopping, log) = (name.clone(), stopping.clone(), log.to_owned());
            async move {
                let status = child.wait().await;
                if !stopping.load(Ordering::SeqCst) {
                    tracing::error!(
                        "{name} (pid {pid}) exited on its own: {}; its log is {}",
                        match &status {
                            Ok(status) => status.to_string(),
                            Err(err) => err.to_string(),
                        },
                        log.display()
                    );
                }
                status
            }
        });
        Ok(Self {
            name,
            pid,
            log: log.to_owned(),
            stopping,
            exited,
        })
    }

    /// Whether the process has exited.
    pub(super) fn has_exited(&self) -> bool {
        self.exited.is_finished()
    }

    /// Stops the process: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Answers how it ended.
    pub(super) async fn stop(mut self) -> Result<ExitStatus> {
        self.stopping.store(true, Ordering::SeqCst);
        if !self.exited.is_finished() {
            signal(self.pid, libc::SIGTERM);
        }
        let status = match tokio::time::timeout(STOP_GRACE, &mut self.exited).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(
                    "{} (pid {}) did not stop within {STOP_GRACE:?} of SIGTERM: killing it",
                    self.name,
                    self.pid
                );
                if !self.exited.is_finished() {
                    signal(self.pid, libc::SIGKILL);
                }
                (&mut self.exited).await
            }
        };
        status
            .context("waiting for a child process")?
            .with_context(|| format!("waiting for {} to stop", self.name))
    }
}

impl Drop for Supervised {
    /// A child dropped without [`Supervised::stop`] (the sandbox's start-up given up, by an
    /// error or a Ctrl-C) is asked to stop, not waited for: it must not outlive the sandbox,
    /// and being in a process group of its own, nothing else would tell it.
    fn drop(&mut self) {
        if !self.exited.is_finished() {
            self.stopping.store(true, Ordering::SeqCst);
            signal(self.pid, libc::SIGTERM);
        }
    }
}

/// Sends `signal` to `pid`, a child of this process not yet waited for (so the id is still
/// its own).
fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    unsafe {
        libc::kill(pid, signal);
    }
}
