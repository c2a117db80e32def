//! CPU time and resident memory of another process, from /proc.
#![allow(unsafe_code)] // sysconf(_SC_CLK_TCK) through libc

use std::fs;

/// CPU time used so far by `pid`, in nanoseconds: the sum of its threads' run time from
/// `/proc/<pid>/task/*/schedstat` (nanosecond resolution), or `utime + stime` from
/// `/proc/<pid>/stat` (clock ticks) where schedstat is missing.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    schedstat_ns(pid).or_else(|| stat_ns(pid))
}

fn schedstat_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        // A thread may exit between listing and reading; it simply no longer counts.
        let Ok(text) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        any = true;
    }
    any.then_some(total)
}

fn stat_ns(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(ticks * 1_000_000_000 / hz)
}

/// Resident set size of `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A reading of a broker process at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub cpu_ns: Option<u64>,
    pub rss: Option<u64>,
}

pub fn sample(pid: Option<u32>) -> ProcSample {
    match pid {
        Some(pid) => ProcSample {
            cpu_ns: cpu_ns(pid),
            rss: rss_bytes(pid),
        },
        None => ProcSample::default(),
    }
}
