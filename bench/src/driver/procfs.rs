//! What the driver reads about processes from Linux's `/proc`: memory (VmRSS) and CPU time, of
//! one process or of a process and every child it has (a database server's backends).

use anyhow::{Context as _, Result, bail};

/// The resident set size of process `pid`, in bytes (Linux `/proc/<pid>/status` VmRSS).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let kib: u64 = status_field(pid, "VmRSS:")?
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// The parent of process `pid` (`/proc/<pid>/status` PPid).
pub fn parent_pid(pid: u32) -> Result<u32> {
    status_field(pid, "PPid:")?
        .trim()
        .parse()
        .with_context(|| format!("no PPid in /proc/{pid}/status"))
}

fn status_field(pid: u32, name: &str) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::to_owned)
        .with_context(|| format!("no {name} line in /proc/{pid}/status"))
}

/// CPU time (user + system) process `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let ticks = stat_ticks(pid)?;
    Ok((ticks.user + ticks.system) / TICKS_PER_SECOND)
}

/// CPU time (user + system) process `pid` and all its children have used so far, in
/// seconds: its own, that of its live children, and that of the children it has already
/// reaped (a database server's backends come and go with their connections, and their time
/// would otherwise leave the count with them).
pub fn tree_cpu_seconds(pid: u32) -> Result<f64> {
    let own = stat_ticks(pid)?;
    let mut ticks = own.user + own.system + own.children_user + own.children_system;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Some(child) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may end between the listing and the read: its time then moves to the
        // parent's reaped children, or is missed for the few ticks in between.
        if parent_pid(child).is_ok_and(|parent| parent == pid)
            && let Ok(t) = stat_ticks(child)
        {
            ticks += t.user + t.system;
        }
    }
    Ok(ticks / TICKS_PER_SECOND)
}

/// Linux reports CPU times in USER_HZ ticks, 100 per second on every architecture it exports
/// them to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// The CPU fields of `/proc/<pid>/stat`, in ticks.
struct StatTicks {
    user: f64,
    system: f64,
    /// Of the children it has waited for.
    children_user: f64,
    children_system: f64,
}

fn stat_ticks(pid: u32) -> Result<StatTicks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime, stime, cutime and cstime are fields 14–17 of the line, 12–15 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12), ticks(13), ticks(14)) {
        (Some(user), Some(system), Some(children_user), Some(children_system)) => Ok(StatTicks {
            user,
            system,
            children_user,
            children_system,
        }),
        _ => bail!("unexpected /proc/{pid}/stat format"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_counts_its_children() {
        let me = std::process::id();
        // CPU time of this process's own, several ticks of it, so leaving it out shows.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_seconds(me).unwrap() < 0.05 && std::time::Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        let parent = parent_pid(me).unwrap();
        let own = stat_ticks(parent).unwrap();
        let mine = cpu_seconds(me).unwrap();
        assert!(mine >= 0.05);
        assert!(
            tree_cpu_seconds(parent).unwrap() >= (own.user + own.system) / TICKS_PER_SECOND + mine
        );
        assert!(rss_bytes(me).unwrap() > 0);
    }
}
