//! The seed's plain-text table (docs/protocol.md#the-seeds-measurement-and-table), with its bugs
//! fixed: averages per kind, and an empty interval prints dashes instead of ±1.8E+308/NaN.
//! Below each section a footer with percentiles from the HDR histogram and the counts that are not
//! latency samples; below both sections the verdict (method against message, see `verdict`).

use super::{interval_words, ms};
use crate::kind::Kind;
use crate::stats::{IntervalStats, KindStats, LegStats, BINS};
use crate::verdict::{self, Verdict};
use std::time::Duration;

/// The seed's 1-second bins of Total, as its table labels them.
const BIN_LABELS: [&str; BINS] = [
    "<1000", "1000", "2000", "3000", "4000", "5000", "6000", "7000", "8000", "9000", ">10000",
];

const LEGS_RULE: &str = "--------+--------+------------+------------+------------|";
const BINS_RULE: &str = "--------+--------+-------------";

/// The table being written, one line at a time (trailing spaces trimmed, as the seed's).
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, s: &str) {
        self.0.push_str(s.trim_end());
        self.0.push('\n');
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:>10.4}"),
        None => format!("{:>10}", "-"),
    }
}

/// Renders the seed's table for `kinds` (trailing spaces trimmed). `stamp` is the header time.
pub fn render_table(
    stamp: &str,
    interval: Duration,
    stats: &IntervalStats,
    kinds: &[Kind],
    percentiles: bool,
) -> String {
    let items: u64 = kinds.iter().map(|k| stats.kind(*k).count()).sum();
    let mut out = Lines(String::with_capacity(2048));
    out.line(&format!(
        "{stamp} - {items} items in {}",
        interval_words(interval)
    ));
    for &kind in kinds {
        let k = stats.kind(kind);
        legs_section(&mut out, kind, k);
        bins_section(&mut out, k);
        if percentiles {
            percentile_footer(&mut out, k);
        }
    }
    out.0
}

/// The kind's title, then min/max/avg of C->P, P->C and Total (the count on the middle row).
fn legs_section(out: &mut Lines, kind: Kind, k: &KindStats) {
    out.line(&format!(
        "{:<17}| Minimum    | Maximum    | Average    |",
        kind.title()
    ));
    out.line(LEGS_RULE);
    let legs: [(&str, &LegStats); 3] =
        [("C->P  ", &k.c2p), ("P->C  ", &k.p2c), ("Total ", &k.total)];
    for (i, (name, leg)) in legs.into_iter().enumerate() {
        let count = if i == 1 {
            format!("{:>7}", k.count())
        } else {
            " ".repeat(7)
        };
        let (min, max) = if leg.count > 0 {
            (Some(leg.min_ms), Some(leg.max_ms))
        } else {
            (None, None)
        };
        out.line(&format!(
            "{count} |  {name}| {} | {} | {} |",
            cell(min),
            cell(max),
            cell(leg.avg_ms())
        ));
    }
    out.line(LEGS_RULE);
}

/// The seed's 1-second bins with a bar of up to 12 blocks each.
fn bins_section(out: &mut Lines, k: &KindStats) {
    out.line("Count   | Millis | Percentage");
    out.line(BINS_RULE);
    for (n, label) in k.bins.iter().zip(BIN_LABELS) {
        let bar = if k.count() > 0 {
            ((*n as f64 / k.count() as f64) * 12.0).ceil() as usize
        } else {
            0
        };
        out.line(&format!("{n:>7} | {label:>6} | {}", "█".repeat(bar)));
    }
    out.line(BINS_RULE);
}

/// Our two lines under the seed's section: Total's percentiles, and what is not a sample.
fn percentile_footer(out: &mut Lines, k: &KindStats) {
    let q = |x| ms(k.total_quantile_ms(x));
    out.line(&format!(
        "Total p50 {} ms | p99 {} ms | timeouts {} | errors {}",
        q(0.5),
        q(0.99),
        k.timeouts,
        k.errors
    ));
    out.line(&format!(
        "Total p90 {} ms | p99.9 {} ms | max {} ms | skipped {}",
        q(0.9),
        q(0.999),
        ms(k.total_max_ms()),
        k.skipped
    ));
}

/// The verdict's line under the two sections.
pub fn render_verdict(v: &Verdict) -> String {
    let head = match (v.faster, v.median_diff_ms, v.ci95_ms) {
        (verdict::Faster::None, _, Some(_)) => "no significant difference".to_owned(),
        (_, _, None) => format!(
            "too few samples (at least {} of each kind)",
            verdict::MIN_SAMPLES
        ),
        (faster, Some(d), Some(_)) => {
            let name = if faster == verdict::Faster::Method {
                "method"
            } else {
                "message"
            };
            format!("{name} faster by {:.4} ms", d.abs())
        }
        (_, None, Some(_)) => unreachable!("an interval implies a difference"),
    };
    let mut line = format!("Verdict: {head}");
    if let Some(d) = v.median_diff_ms {
        line.push_str(&format!(" | median method - message {d:+.4} ms"));
    }
    if let Some((lo, hi)) = v.ci95_ms {
        line.push_str(&format!(" | 95% CI [{lo:+.4}, {hi:+.4}] ms"));
    }
    line.push_str(&format!(
        " | n method {}, message {}\n",
        v.n_method, v.n_message
    ));
    line
}
