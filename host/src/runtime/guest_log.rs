//! The log of one call: lines from the `log` import and from stdout/stderr, under one budget.
//!
//! Every line is sent to the host's `tracing` log as it happens (target `cosell::guest`,
//! tagged with the mapping name and version) and also kept, so `cosell mapping test` can show
//! the author what their component said.

use super::guest_env::capped_pipes;
use super::limits::Limit;
use serde::Serialize;
use std::sync::Arc;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Severity of a guest log line (mirrors `cosell:mapping/log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestLevel {
    /// Fine detail for the mapping's author; logged at `TRACE`.
    Trace,
    /// Detail for the mapping's author; logged at `DEBUG`.
    Debug,
    /// Normal progress; logged at `INFO`. Lines the guest wrote to stdout get this level.
    Info,
    /// Something the step noticed but coped with; logged at `WARN`. Lines the guest wrote to
    /// stderr get this level.
    Warn,
    /// A failure; logged at `ERROR`. A trap quotes the last such line, which is where a panic
    /// hook puts its message.
    Error,
}

/// Where a guest log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestStream {
    /// The `cosell:mapping/log` import.
    Log,
    /// WASI stdout.
    Stdout,
    /// WASI stderr.
    Stderr,
}

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestLogLine {
    /// Severity: the guest's choice for the `log` import, [`GuestLevel::Info`] for stdout and
    /// [`GuestLevel::Warn`] for stderr.
    pub level: GuestLevel,
    /// Where the line came from.
    pub stream: GuestStream,
    /// The text of the line. stdout and stderr are split at newlines, one line each.
    pub message: String,
}

/// The log of one call.
pub struct GuestLog {
    mapping: Arc<str>,
    version: Arc<str>,
    cap: usize,
    used: usize,
    lines: Vec<GuestLogLine>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl GuestLog {
    /// An empty log for one call of `mapping` at `version`, allowing `cap` bytes in all.
    pub fn new(mapping: Arc<str>, version: Arc<str>, cap: u64) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let (stdout, stderr) = capped_pipes(cap);
        Self {
            mapping,
            version,
            cap,
            used: 0,
            lines: Vec::new(),
            stdout,
            stderr,
        }
    }

    /// Handles on the stdout and stderr pipes given to WASI.
    pub(crate) fn stdio_pipes(&self) -> (MemoryOutputPipe, MemoryOutputPipe) {
        (self.stdout.clone(), self.stderr.clone())
    }

    /// Records a line from the `log` import. Fails when the call's log budget is spent.
    /// (What the guest wrote to stdout and stderr is counted when the call ends, in
    /// [`GuestLog::collect_stdio`]: reading the pipes on every log call would copy them.)
    pub fn write(&mut self, level: GuestLevel, message: String) -> Result<(), Limit> {
        if self.used + message.len() > self.cap {
            return Err(Limit::LogSize);
        }
        self.used += message.len();
        self.push(level, GuestStream::Log, message);
        Ok(())
    }

    /// Moves what the guest wrote to stdout and stderr into the log; fails when the log
    /// import and the two streams together went over the budget. Called once, when the call
    /// is over.
    pub fn collect_stdio(&mut self) -> Result<(), Limit> {
        let stdout = self.stdout.contents();
        let stderr = self.stderr.contents();
        // A pipe holding `cap` bytes refused whatever came after: count that as over budget.
        let over = self.used + stdout.len() + stderr.len() > self.cap
            || stdout.len() >= self.cap
            || stderr.len() >= self.cap;
        for (bytes, stream, level) in [
            (stdout, GuestStream::Stdout, GuestLevel::Info),
            (stderr, GuestStream::Stderr, GuestLevel::Warn),
        ] {
            for line in String::from_utf8_lossy(&bytes).lines() {
                self.push(level, stream, line.to_owned());
            }
        }
        if over {
            return Err(Limit::LogSize);
        }
        Ok(())
    }

    /// The lines logged so far.
    pub fn lines(&self) -> &[GuestLogLine] {
        &self.lines
    }

    /// Takes the lines out of the log.
    pub fn into_lines(self) -> Vec<GuestLogLine> {
        self.lines
    }

    fn push(&mut self, level: GuestLevel, stream: GuestStream, message: String) {
        let (mapping, version) = (&*self.mapping, &*self.version);
        match level {
            GuestLevel::Trace => {
                tracing::trace!(target: "cosell::guest", mapping, version, ?stream, "{message}")
            }
            GuestLevel::Debug => {
                tracing::debug!(target: "cosell::guest", mapping, version, ?stream, "{message}")
            }
            GuestLevel::Info => {
                tracing::info!(target: "cosell::guest", mapping, version, ?stream, "{message}")
            }
            GuestLevel::Warn => {
                tracing::warn!(target: "cosell::guest", mapping, version, ?stream, "{message}")
            }
            GuestLevel::Error => {
                tracing::error!(target: "cosell::guest", mapping, version, ?stream, "{message}")
            }
        }
        self.lines.push(GuestLogLine {
            level,
            stream,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_covers_the_log_import() {
        let mut log = GuestLog::new("m".into(), "v".into(), 10);
        assert!(log.write(GuestLevel::Info, "12345".into()).is_ok());
        assert_eq!(
            log.write(GuestLevel::Info, "123456".into()),
            Err(Limit::LogSize)
        );
        assert_eq!(log.lines().len(), 1);
    }
}
