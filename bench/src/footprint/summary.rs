//! Samples of each process and what a run's samples add up to, against the goals.

use super::*;

/// One reading of one process.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the run's first sample.
    pub t_s: f64,
    #[serde(flatten)]
    pub status: Status,
    /// utime + stime so far, ns.
    pub cpu_ns: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Range {
    pub first: u64,
    pub min: u64,
    pub max: u64,
    pub last: u64,
}

impl Range {
    fn of(values: impl Iterator<Item = u64>) -> Option<Self> {
        let mut r: Option<Range> = None;
        for v in values {
            r = Some(match r {
                None => Range {
                    first: v,
                    min: v,
                    max: v,
                    last: v,
                },
                Some(r) => Range {
                    first: r.first,
                    min: r.min.min(v),
                    max: r.max.max(v),
                    last: v,
                },
            });
        }
        r
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ModuleReport {
    pub module: Module,
    pub pid: u32,
    pub binary: PathBuf,
    /// VmRSS, RssAnon and RssFile in KiB.
    pub rss_kb: Range,
    pub anon_kb: Range,
    pub file_kb: Range,
    pub threads_max: u64,
    /// Least-squares slope of VmRSS over the run's second half, KB (KiB) per minute.
    pub rss_slope_kb_per_min: Option<f64>,
    /// The same for RssAnon (the heap: what a leak would move).
    pub anon_slope_kb_per_min: Option<f64>,
    /// `|rss_slope| <= FLAT_KB_PER_MIN`.
    pub flat: Option<bool>,
    /// CPU (utime + stime) from the first sample to the last, % of one core.
    pub cpu_percent: Option<f64>,
    /// The same over the second half only.
    pub cpu_percent_second_half: Option<f64>,
    /// At `--rate 10`: max VmRSS <= 12 MiB and flat.
    pub rss_goal_met: Option<bool>,
    /// At `--rate 1`: CPU <= 1 % of a core.
    pub cpu_goal_met: Option<bool>,
    /// At the end of the run: resident KiB per mapping (file path, `[heap]`, `[anon]`, …).
    pub rss_by_mapping_kb: Vec<(String, u64)>,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Exchanges {
    pub method: u64,
    pub message: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub skipped: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub rate: f64,
    pub seconds: f64,
    pub sample_seconds: f64,
    pub scrape_seconds: Option<f64>,
    pub scrapes: u64,
    pub scrape_errors: u64,
    /// From the consumer's whole-run JSON line at exit.
    pub exchanges: Option<Exchanges>,
    pub modules: Vec<ModuleReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Goals {
    pub rss_mib_at_rate_10: f64,
    pub flat_kb_per_min: f64,
    pub cpu_percent_at_rate_1: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Which binaries were measured, in words.
    pub binaries: String,
    pub binary_paths: BTreeMap<&'static str, PathBuf>,
    pub clock_ticks_per_second: u64,
    pub cores: usize,
    pub goals: Goals,
    pub runs: Vec<RunReport>,
}

/// Least-squares slope of `(seconds, KiB)` in KiB per minute.
fn slope_per_min(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return None;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), p| {
        (sxy + (p.0 - mx) * (p.1 - my), sxx + (p.0 - mx) * (p.0 - mx))
    });
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

fn cpu_percent(samples: &[&Sample]) -> Option<f64> {
    let (a, b) = (samples.first()?, samples.last()?);
    let dt = b.t_s - a.t_s;
    let cpu = b.cpu_ns?.checked_sub(a.cpu_ns?)?;
    (dt > 0.0).then(|| cpu as f64 / 1e9 / dt * 100.0)
}

pub(super) fn summarise(
    module: Module,
    pid: u32,
    binary: PathBuf,
    rate: f64,
    samples: Vec<Sample>,
    rss_by_mapping_kb: Vec<(String, u64)>,
) -> ModuleReport {
    let end = samples.last().map(|s| s.t_s).unwrap_or(0.0);
    let second_half: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= end / 2.0).collect();
    let slope = |f: fn(&Status) -> u64| {
        let points: Vec<(f64, f64)> = second_half
            .iter()
            .map(|s| (s.t_s, f(&s.status) as f64))
            .collect();
        slope_per_min(&points)
    };
    let rss_slope = slope(|s| s.rss_kb);
    let flat = rss_slope.map(|s| s.abs() <= FLAT_KB_PER_MIN);
    let rss_kb = Range::of(samples.iter().map(|s| s.status.rss_kb)).unwrap_or_default();
    let all: Vec<&Sample> = samples.iter().collect();
    let cpu = cpu_percent(&all);
    ModuleReport {
        module,
        pid,
        binary,
        rss_kb,
        anon_kb: Range::of(samples.iter().map(|s| s.status.anon_kb)).unwrap_or_default(),
        file_kb: Range::of(samples.iter().map(|s| s.status.file_kb)).unwrap_or_default(),
        threads_max: samples.iter().map(|s| s.status.threads).max().unwrap_or(0),
        rss_slope_kb_per_min: rss_slope,
        anon_slope_kb_per_min: slope(|s| s.anon_kb),
        flat,
        cpu_percent: cpu,
        cpu_percent_second_half: cpu_percent(&second_half),
        rss_goal_met: (rate == RSS_RATE)
            .then(|| rss_kb.max as f64 / 1024.0 <= RSS_GOAL_MIB && flat == Some(true)),
        cpu_goal_met: (rate == CPU_RATE).then(|| cpu.is_some_and(|c| c <= CPU_GOAL_PERCENT)),
        rss_by_mapping_kb,
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procstat::Status;
    #[test]
    fn slope_is_per_minute() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 6.0, 100.0 + i as f64))
            .collect();
        let s = slope_per_min(&pts).unwrap_or(f64::NAN);
        assert!((s - 10.0).abs() < 1e-9, "{s}");
        assert_eq!(slope_per_min(&pts[..2]), None);
    }

    #[test]
    fn range_and_cpu() {
        let r = Range::of([5, 3, 9, 4].into_iter()).unwrap_or_default();
        assert_eq!((r.first, r.min, r.max, r.last), (5, 3, 9, 4));
        let s = |t_s: f64, cpu: u64| Sample {
            t_s,
            status: Status::default(),
            cpu_ns: Some(cpu),
        };
        let (a, b) = (s(0.0, 0), s(100.0, 1_000_000_000));
        assert_eq!(cpu_percent(&[&a, &b]), Some(1.0));
    }
}
