//! Where the CPU goes during a load figure: `perf record` of the host and of this process (the
//! emulators) while the load runs, when `COSELL_BENCH_PERF_DIR` names a directory.
//!
//! The figures report CPU time per change; a profile says which functions spend it. `perf`
//! (Debian's `linux-perf`) samples the CPU clock, which works without hardware counters (a
//! virtual machine), with DWARF call graphs because release builds keep no frame pointers;
//! build with the `profiling` cargo profile (release plus line tables) so frames have names.
//! `bench/flamegraph.sh` turns a recording into a flame graph SVG.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Samples per second: enough for a stable picture over a figure's 20–30 s, few enough that
/// the DWARF stacks (16 KiB each) stay a few hundred MB and perf's own CPU stays small.
const FREQUENCY: &str = "199";

/// Running `perf record`s, stopped (and their data flushed) by [`Profiler::finish`].
pub struct Profiler {
    recordings: Vec<(Child, PathBuf)>,
}

impl Profiler {
    /// Starts recording `pids` (name → process id) into `<dir>/<label>-<name>.perf.data` if
    /// `COSELL_BENCH_PERF_DIR` is set; answers `None` otherwise.
    pub fn start_if_asked(label: &str, pids: &[(&str, u32)]) -> Result<Option<Profiler>> {
        let Some(dir) = std::env::var_os("COSELL_BENCH_PERF_DIR") else {
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating COSELL_BENCH_PERF_DIR {}", dir.display()))?;
        let mut recordings = Vec::new();
        for (name, pid) in pids {
            let out = dir.join(format!("{label}-{name}.perf.data"));
            let child = Command::new("perf")
                .args([
                    "record",
                    "-F",
                    FREQUENCY,
                    "--call-graph",
                    "dwarf,16384",
                    "-p",
                ])
                .arg(pid.to_string())
                .arg("-o")
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting `perf record` (install Debian's linux-perf)")?;
            recordings.push((child, out));
        }
        eprintln!("profiling with perf into {}", dir.display());
        Ok(Some(Profiler { recordings }))
    }

    /// Stops every recording (SIGINT, as Ctrl-C: perf writes its data and exits) and answers
    /// the files written.
    pub fn finish(self) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (mut child, out) in self.recordings {
            // perf writes its data on SIGINT, as on Ctrl-C (SIGKILL would lose it).
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .context("signalling perf to stop")?;
            let status = child.wait().context("waiting for perf to write its data")?;
            if !status.success() && !out.exists() {
                anyhow::bail!("perf record failed ({status}) for {}", out.display());
            }
            eprintln!("profile: {}", out.display());
            written.push(out);
        }
        Ok(written)
    }
}
