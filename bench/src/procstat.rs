//! CPU time and resident memory of another process, from /proc.
#![allow(unsafe_code)] // sysconf(_SC_CLK_TCK) and kill(SIGTERM) through libc

use serde::Serialize;
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

/// `utime + stime` of `pid` from `/proc/<pid>/stat`, in nanoseconds (clock ticks of
/// [`clock_ticks`] each).
pub fn stat_ns(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000_000_000 / clock_ticks())
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `sysconf(_SC_CLK_TCK)` (100 only if
/// sysconf fails).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// Resident memory and threads of a process, from `/proc/<pid>/status` (sizes in KiB, the
/// kernel's "kB"; independent of the page size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// `VmRSS`: `RssAnon + RssFile + RssShmem`.
    pub rss_kb: u64,
    /// `RssAnon`: heap, stacks, anonymous mappings.
    pub anon_kb: u64,
    /// `RssFile`: resident pages of mapped files (the executable and its libraries).
    pub file_kb: u64,
    /// `RssShmem`.
    pub shmem_kb: u64,
    pub threads: u64,
}

pub fn status(pid: u32) -> Option<Status> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some(Status {
        rss_kb: field("VmRSS:")?,
        anon_kb: field("RssAnon:").unwrap_or(0),
        file_kb: field("RssFile:").unwrap_or(0),
        shmem_kb: field("RssShmem:").unwrap_or(0),
        threads: field("Threads:").unwrap_or(0),
    })
}

/// Resident KiB of `pid` per mapping name from `/proc/<pid>/smaps`: the mapped file's path, or
/// the kernel's `[heap]`, `[stack]`, …, or `[anon]` for anonymous mappings; largest first.
pub fn rss_by_mapping(pid: u32) -> Option<Vec<(String, u64)>> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first == "Rss:" {
            let kb: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *by.entry(current.clone()).or_default() += kb;
        } else if first.contains('-') && !first.ends_with(':') {
            // address perms offset dev inode [pathname]
            let name = fields.nth(4).map(str::to_owned);
            current = name.unwrap_or_else(|| "[anon]".into());
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().filter(|(_, kb)| *kb > 0).collect();
    v.sort_by_key(|(_, kb)| std::cmp::Reverse(*kb));
    Some(v)
}

/// Sends SIGTERM to `pid` (a child of this process), as IoT Edge and Docker stop a module.
pub fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory preconditions; `pid` is a child this process started and has not
    // reaped yet (its caller still holds the Child), so the number names that process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
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
