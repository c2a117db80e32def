//! The footprint tables and the notes under them.

use super::*;

pub(super) fn mib(kb: u64) -> String {
    format!("{:.2}", kb as f64 / 1024.0)
}

fn opt(v: Option<f64>, prec: usize, signed: bool) -> String {
    match v {
        Some(v) if v.is_finite() && signed => format!("{v:+.prec$}"),
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    }
}

fn verdict(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "",
    }
}

pub fn print_run(r: &RunReport) {
    println!();
    let ex = match &r.exchanges {
        Some(e) => format!(
            "; exchanges: method {}, message {}, timeouts {}, errors {}, skipped {}",
            e.method, e.message, e.timeouts, e.errors, e.skipped
        ),
        None => "; the consumer printed no summary".into(),
    };
    let scraped = match r.scrape_seconds {
        Some(s) => format!(
            "/metrics of each scraped every {s} s ({} errors of {})",
            r.scrape_errors, r.scrapes
        ),
        None => "/metrics not scraped".into(),
    };
    println!(
        "Footprint at --rate {} for {:.1} min: /proc read every {} s; {scraped}{ex}",
        r.rate,
        r.seconds / 60.0,
        r.sample_seconds
    );
    println!(
        "{:<9} {:>27} {:>17} {:>8} {:>21} {:>4} {:>11}  goal",
        "module",
        "VmRSS MiB first/min/max/last",
        "anon/file MiB last",
        "anon max",
        "trend KB/min RSS (anon)",
        "thr",
        "CPU % core"
    );
    for m in &r.modules {
        let goal = match (m.rss_goal_met, m.cpu_goal_met) {
            (Some(g), _) => format!("RSS <= {RSS_GOAL_MIB} MiB and flat: {}", verdict(Some(g))),
            (_, Some(g)) => format!("CPU <= {CPU_GOAL_PERCENT} %: {}", verdict(Some(g))),
            _ => String::new(),
        };
        let trend = format!(
            "{} {} ({})",
            opt(m.rss_slope_kb_per_min, 1, true),
            match m.flat {
                Some(true) => "flat",
                Some(false) => "GROWS",
                None => "?",
            },
            opt(m.anon_slope_kb_per_min, 1, true)
        );
        println!(
            "{:<9} {:>27} {:>17} {:>8} {:>21} {:>4} {:>11}  {goal}",
            m.module.name(),
            format!(
                "{}/{}/{}/{}",
                mib(m.rss_kb.first),
                mib(m.rss_kb.min),
                mib(m.rss_kb.max),
                mib(m.rss_kb.last)
            ),
            format!("{}/{}", mib(m.anon_kb.last), mib(m.file_kb.last)),
            mib(m.anon_kb.max),
            trend,
            m.threads_max,
            opt(m.cpu_percent, 3, false),
        );
    }
    println!("RSS by mapping at the end (MiB; file-backed pages by file, then [heap], [anon], …):");
    for m in &r.modules {
        let parts: Vec<String> = m
            .rss_by_mapping_kb
            .iter()
            .take(6)
            .map(|(name, kb)| {
                let short = Path::new(name)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .filter(|_| !name.starts_with('['))
                    .unwrap_or_else(|| name.clone());
                format!("{short} {}", mib(*kb))
            })
            .collect();
        println!("  {:<9} {}", m.module.name(), parts.join(", "));
    }
}

pub fn print_notes(report: &Report) {
    println!(
        "\nMeasured: {}.\n\
         VmRSS = RssAnon (heap, stacks) + RssFile (mapped binary and libraries) + RssShmem, from\n\
         /proc/<pid>/status; MiB = 2^20 bytes, KB = KiB. Trend: least-squares slope of VmRSS (RssAnon in\n\
         parentheses) over the run's second half; flat when within ±{FLAT_KB_PER_MIN} KB/min (about\n\
         14 MB a day). CPU: utime + stime from /proc/<pid>/stat ({} ticks/s, sysconf) from the first\n\
         sample (all three up) to the last, as % of one core ({} cores here). thr: most threads seen.\n\
         Goals (issue 18): at --rate {RSS_RATE} each module's RSS <= {RSS_GOAL_MIB} MiB (its max) and flat;\n\
         at --rate {CPU_RATE} each module's CPU <= {CPU_GOAL_PERCENT} % of a core. The hub is the local edgeHub\n\
         stand-in (on a device: Microsoft's edgeHub); its goals are shown for comparison.",
        report.binaries,
        report.clock_ticks_per_second,
        report.cores
    );
    let mut lines = Vec::new();
    for r in &report.runs {
        for m in &r.modules {
            if let Some(g) = m.rss_goal_met {
                lines.push(format!(
                    "  --rate {:<3} {:<9} RSS max {} MiB ({}), trend {} KB/min: {}",
                    r.rate,
                    m.module.name(),
                    mib(m.rss_kb.max),
                    if m.rss_kb.max as f64 / 1024.0 <= RSS_GOAL_MIB {
                        format!("<= {RSS_GOAL_MIB}")
                    } else {
                        format!("> {RSS_GOAL_MIB}")
                    },
                    opt(m.rss_slope_kb_per_min, 1, true),
                    verdict(Some(g))
                ));
            }
            if let Some(g) = m.cpu_goal_met {
                lines.push(format!(
                    "  --rate {:<3} {:<9} CPU {} % of a core (goal <= {CPU_GOAL_PERCENT} %): {}",
                    r.rate,
                    m.module.name(),
                    opt(m.cpu_percent, 3, false),
                    verdict(Some(g))
                ));
            }
        }
    }
    if !lines.is_empty() {
        println!("Goals:\n{}", lines.join("\n"));
    }
}
