//! Process metrics (`process_*`, as the official clients name them), read from /proc at scrape time.
//!
//! /proc/self/stat counts resident memory in pages and CPU time in clock ticks, whose sizes the
//! kernel chose: 4 KiB pages on x86-64 but 16 KiB (Raspberry Pi 5) or 64 KiB on some arm64
//! kernels. Both are read from the process's auxiliary vector (/proc/self/auxv: `AT_PAGESZ`,
//! `AT_CLKTCK`), which is where `sysconf(_SC_PAGESIZE)` and `sysconf(_SC_CLK_TCK)` get them —
//! without a C call, so no unsafe code.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub struct ProcessCollector {
    start_time_seconds: f64,
}

impl ProcessCollector {
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        // Boot time + the process's start tick would be exact; "when the collector was made"
        // is within milliseconds of it and needs no clock-tick rate.
        Self {
            start_time_seconds: now,
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

const AT_PAGESZ: usize = 6;
const AT_CLKTCK: usize = 17;

/// The kernel's page size in bytes and its clock ticks per second (USER_HZ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    pub page_bytes: f64,
    pub ticks_per_second: f64,
}

/// `AT_PAGESZ` and `AT_CLKTCK` from an auxiliary vector (native-endian word pairs).
fn units_from_auxv(auxv: &[u8]) -> Option<Units> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| Some(usize::from_ne_bytes(b.try_into().ok()?));
    let (mut page, mut ticks) = (None, None);
    for pair in auxv.chunks_exact(2 * WORD) {
        match (word(&pair[..WORD])?, word(&pair[WORD..])?) {
            (0, _) => break, // AT_NULL
            (AT_PAGESZ, v) if v > 0 => page = Some(v as f64),
            (AT_CLKTCK, v) if v > 0 => ticks = Some(v as f64),
            _ => {}
        }
    }
    Some(Units {
        page_bytes: page?,
        ticks_per_second: ticks?,
    })
}

/// This kernel's units, read once; Linux's usual ones if the vector cannot be read.
pub fn units() -> Units {
    static UNITS: std::sync::OnceLock<Units> = std::sync::OnceLock::new();
    *UNITS.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|a| units_from_auxv(&a))
            .unwrap_or_else(|| {
                tracing::warn!("cannot read the page size and clock ticks from /proc/self/auxv; assuming 4096 bytes and 100/s");
                Units {
                    page_bytes: 4096.0,
                    ticks_per_second: 100.0,
                }
            })
    })
}

struct Stat {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
}

fn read_stat() -> Option<Stat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let units = units();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let vsize: f64 = f.get(20)?.parse().ok()?;
    let rss_pages: f64 = f.get(21)?.parse().ok()?;
    Some(Stat {
        cpu_seconds: (utime + stime) / units.ticks_per_second,
        resident_bytes: rss_pages * units.page_bytes,
        virtual_bytes: vsize,
    })
}

fn open_fds() -> Option<i64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stat) = read_stat() {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
            let rss = ConstGauge::new(stat.resident_bytes);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                rss.metric_type(),
            )?)?;
            let vsz = ConstGauge::new(stat.virtual_bytes);
            vsz.encode(encoder.encode_descriptor(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                None,
                vsz.metric_type(),
            )?)?;
        }
        if let Some(fds) = open_fds() {
            let g = ConstGauge::new(fds);
            g.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors",
                None,
                g.metric_type(),
            )?)?;
        }
        let start = ConstGauge::new(self.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VmRSS from /proc/self/status, in bytes (the kernel counts it in kB, whatever the page).
    fn vm_rss() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024.0
    }

    #[test]
    fn resident_memory_matches_vm_rss() {
        let units = units();
        assert!(
            units.page_bytes >= 4096.0 && (units.page_bytes as u64).is_power_of_two(),
            "{units:?}"
        );
        assert!(units.ticks_per_second > 0.0, "{units:?}");
        // Resident memory moves between the two reads (other tests run meanwhile): compare
        // several times and keep the closest; a wrong page size would be off by 4x or more.
        let mut closest = f64::MAX;
        for _ in 0..5 {
            let before = vm_rss();
            let stat = read_stat().unwrap().resident_bytes;
            let after = vm_rss();
            let expected = (before + after) / 2.0;
            closest = closest.min((stat - expected).abs() / expected);
        }
        assert!(
            closest < 0.1,
            "process_resident_memory_bytes is {:.0}% away from VmRSS (page size {})",
            closest * 100.0,
            units.page_bytes
        );
    }

    #[test]
    fn the_auxiliary_vector_is_read_as_the_kernel_writes_it() {
        let words = |pairs: &[(usize, usize)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|&(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()].concat())
                .collect()
        };
        let auxv = words(&[
            (3, 0x40),
            (AT_PAGESZ, 16384),
            (AT_CLKTCK, 250),
            (0, 0),
            (AT_PAGESZ, 1),
        ]);
        assert_eq!(
            units_from_auxv(&auxv),
            Some(Units {
                page_bytes: 16384.0,
                ticks_per_second: 250.0
            })
        );
        assert_eq!(units_from_auxv(&words(&[(AT_PAGESZ, 4096), (0, 0)])), None);
        assert_eq!(units_from_auxv(&[1, 2, 3]), None);
    }

    #[test]
    fn cpu_seconds_are_counted_in_the_kernels_ticks() {
        // This thread's CPU time in nanoseconds, from the scheduler (no ticks involved): the busy
        // loop runs until it has used 0.3 s of CPU, however loaded the machine is.
        let thread_ns = || {
            std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let start = read_stat().unwrap().cpu_seconds;
        let (from, deadline) = (
            thread_ns(),
            std::time::Instant::now() + std::time::Duration::from_secs(20),
        );
        let mut x = 0u64;
        while thread_ns() - from < 300_000_000 && std::time::Instant::now() < deadline {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let used = (thread_ns() - from) as f64 / 1e9;
        let spent = read_stat().unwrap().cpu_seconds - start;
        // The process counted at least this thread's work (others may add theirs): a wrong tick
        // rate is off by several times.
        assert!(used >= 0.3, "the loop used {used} s of CPU");
        assert!(
            (used * 0.6..5.0).contains(&spent),
            "{spent} s of CPU counted for {used} s used"
        );
    }
}
