//! One interval's figures per kind of exchange, and the seed's plain-text table
//! (docs/protocol.md#the-seeds-measurement-and-table), with its bugs fixed: averages per kind,
//! and an empty interval prints dashes instead of ±1.8E+308/NaN.
//! Below each section a footer with percentiles from the HDR histogram and the counts that are not
//! latency samples; below both sections the verdict (method against message, see `verdict`).

use crate::recorder::{Failure, LateReply};
use crate::verdict::{self, Reservoir, Verdict};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// How exchanges are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The seed's loop: the next exchange starts when the previous one ends.
    Closed,
    /// `rate` exchanges per second per kind on a fixed schedule, at most `max_in_flight` at once.
    Open { rate: f64, max_in_flight: usize },
}

impl Schedule {
    pub fn label(self) -> &'static str {
        match self {
            Schedule::Closed => "closed",
            Schedule::Open { .. } => "open",
        }
    }

    /// The configured rate; 0 for the closed loop (as `--rate 0`).
    pub fn rate(self) -> f64 {
        match self {
            Schedule::Closed => 0.0,
            Schedule::Open { rate, .. } => rate,
        }
    }
}

/// Which exchange: a direct method or a message round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Method,
    Message,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Message, Kind::Method];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Method => "method",
            Kind::Message => "message",
        }
    }

    /// The seed's section titles.
    fn title(self) -> &'static str {
        match self {
            Kind::Method => "Method",
            Kind::Message => "Messages",
        }
    }
}

/// One exchange's three legs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub c2p_ms: f64,
    pub p2c_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LegStats {
    pub count: u64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub sum_ms: f64,
}

impl LegStats {
    fn record(&mut self, ms: f64) {
        if self.count == 0 {
            self.min_ms = ms;
            self.max_ms = ms;
        } else {
            self.min_ms = self.min_ms.min(ms);
            self.max_ms = self.max_ms.max(ms);
        }
        self.count += 1;
        self.sum_ms += ms;
    }

    pub fn avg_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }

    fn absorb(&mut self, other: &LegStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
        self.count += other.count;
        self.sum_ms += other.sum_ms;
    }
}

/// The seed's 1-second bins of Total: `<1000, 1000 … 9000, >10000`.
pub const BINS: usize = 11;
const BIN_LABELS: [&str; BINS] = [
    "<1000", "1000", "2000", "3000", "4000", "5000", "6000", "7000", "8000", "9000", ">10000",
];

/// Figures of one kind over one interval.
#[derive(Debug, Clone)]
pub struct KindStats {
    pub c2p: LegStats,
    pub p2c: LegStats,
    pub total: LegStats,
    pub bins: [u64; BINS],
    pub timeouts: u64,
    /// Failures other than timeouts, all classes: the sum of `failures`.
    pub errors: u64,
    /// Failures by class (`Failure as usize`).
    pub failures: [u64; Failure::ALL.len()],
    /// Replies no exchange waited for, by reason (`LateReply as usize`); not exchanges.
    pub late: [u64; LateReply::ALL.len()],
    /// Open loop: scheduled exchanges that did not start because `max_in_flight` were running.
    pub skipped: u64,
    /// Total in microseconds, 1 µs … 1 h at 3 significant digits, for percentiles.
    total_us: Histogram<u64>,
    /// A bounded uniform sample of Total (ms) for the verdict's bootstrap.
    sample: Reservoir,
}

impl Default for KindStats {
    fn default() -> Self {
        Self {
            c2p: LegStats::default(),
            p2c: LegStats::default(),
            total: LegStats::default(),
            bins: [0; BINS],
            timeouts: 0,
            errors: 0,
            failures: [0; Failure::ALL.len()],
            late: [0; LateReply::ALL.len()],
            skipped: 0,
            total_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| unreachable!("valid bounds")),
            sample: Reservoir::new(verdict::RESERVOIR, verdict::SEED),
        }
    }
}

impl KindStats {
    pub fn record(&mut self, s: &Sample) {
        self.c2p.record(s.c2p_ms);
        self.p2c.record(s.p2c_ms);
        self.total.record(s.total_ms);
        let bin = ((s.total_ms / 1000.0).floor().max(0.0) as usize).min(BINS - 1);
        self.bins[bin] += 1;
        self.total_us
            .saturating_record((s.total_ms * 1000.0).max(1.0) as u64);
        self.sample.push(s.total_ms);
    }

    pub fn count(&self) -> u64 {
        self.total.count
    }

    /// Counts a failed exchange in its class and in `errors`.
    pub fn fail(&mut self, f: Failure) {
        self.failures[f as usize] += 1;
        self.errors += 1;
    }

    /// Total at quantile `q` (0..=1) in milliseconds. The histogram reports the top of a value's
    /// bucket (within 0.1 %); capped at the exact maximum so that p99.9 never exceeds max.
    pub fn total_quantile_ms(&self, q: f64) -> Option<f64> {
        (self.count() > 0)
            .then(|| (self.total_us.value_at_quantile(q) as f64 / 1000.0).min(self.total.max_ms))
    }

    /// The exact largest Total.
    pub fn total_max_ms(&self) -> Option<f64> {
        (self.count() > 0).then_some(self.total.max_ms)
    }

    /// Total's recorded values in ms (the top of each HDR bucket, as the percentiles) with how
    /// many samples each holds: the HTML report's histogram.
    pub fn total_distribution_ms(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.total_us
            .iter_recorded()
            .map(|v| (v.value_iterated_to() as f64 / 1000.0, v.count_at_value()))
    }

    /// The sample of Total behind the verdict.
    pub fn sample(&self) -> &[f64] {
        self.sample.values()
    }

    fn reset(&mut self) {
        self.c2p = LegStats::default();
        self.p2c = LegStats::default();
        self.total = LegStats::default();
        self.bins = [0; BINS];
        self.timeouts = 0;
        self.errors = 0;
        self.failures = [0; Failure::ALL.len()];
        self.late = [0; LateReply::ALL.len()];
        self.skipped = 0;
        self.total_us.reset();
        self.sample.clear();
    }

    /// Adds another interval's figures (for the whole run): histograms merge, never percentiles.
    fn absorb(&mut self, other: &KindStats) {
        self.c2p.absorb(&other.c2p);
        self.p2c.absorb(&other.p2c);
        self.total.absorb(&other.total);
        for (a, b) in self.bins.iter_mut().zip(other.bins) {
            *a += b;
        }
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
        for (a, b) in self.late.iter_mut().zip(other.late) {
            *a += b;
        }
        self.skipped += other.skipped;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.total_us.add(&other.total_us);
        self.sample.merge(&other.sample);
    }
}

/// An interval's figures for every kind: what the minute table prints.
#[derive(Debug, Clone, Default)]
pub struct IntervalStats {
    pub method: KindStats,
    pub message: KindStats,
}

impl IntervalStats {
    pub fn kind(&self, k: Kind) -> &KindStats {
        match k {
            Kind::Method => &self.method,
            Kind::Message => &self.message,
        }
    }

    pub fn kind_mut(&mut self, k: Kind) -> &mut KindStats {
        match k {
            Kind::Method => &mut self.method,
            Kind::Message => &mut self.message,
        }
    }

    /// Moves the figures out and leaves an empty interval (keeping the histogram allocations).
    pub fn take(&mut self) -> IntervalStats {
        let taken = self.clone();
        self.method.reset();
        self.message.reset();
        taken
    }

    /// Adds another interval's figures to these.
    pub fn absorb(&mut self, other: &IntervalStats) {
        self.method.absorb(&other.method);
        self.message.absorb(&other.message);
    }

    /// Method against message, when both kinds are measured.
    pub fn verdict(&self, kinds: &[Kind]) -> Option<Verdict> {
        (kinds.contains(&Kind::Method) && kinds.contains(&Kind::Message))
            .then(|| verdict::compare(self.method.sample(), self.message.sample(), verdict::SEED))
    }
}

pub(crate) fn interval_words(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 && s > 0 => format!("{} minutes", s / 60),
        1 => "1 second".to_owned(),
        s if s > 0 => format!("{s} seconds"),
        _ => format!("{} ms", d.as_millis()),
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
    let mut out = String::with_capacity(2048);
    let mut line = |s: String| {
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(format!(
        "{stamp} - {items} items in {}",
        interval_words(interval)
    ));
    for &kind in kinds {
        let k = stats.kind(kind);
        line(format!(
            "{:<17}| Minimum    | Maximum    | Average    |",
            kind.title()
        ));
        line("--------+--------+------------+------------+------------|".into());
        for (i, (name, leg)) in [("C->P  ", &k.c2p), ("P->C  ", &k.p2c), ("Total ", &k.total)]
            .into_iter()
            .enumerate()
        {
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
            line(format!(
                "{count} |  {name}| {} | {} | {} |",
                cell(min),
                cell(max),
                cell(leg.avg_ms())
            ));
        }
        line("--------+--------+------------+------------+------------|".into());
        line("Count   | Millis | Percentage".into());
        line("--------+--------+-------------".into());
        for (n, label) in k.bins.iter().zip(BIN_LABELS) {
            let bar = if k.count() > 0 {
                ((*n as f64 / k.count() as f64) * 12.0).ceil() as usize
            } else {
                0
            };
            line(format!("{n:>7} | {label:>6} | {}", "█".repeat(bar)));
        }
        line("--------+--------+-------------".into());
        if percentiles {
            let q = |x| {
                k.total_quantile_ms(x)
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "-".into())
            };
            line(format!(
                "Total p50 {} ms | p99 {} ms | timeouts {} | errors {}",
                q(0.5),
                q(0.99),
                k.timeouts,
                k.errors
            ));
            line(format!(
                "Total p90 {} ms | p99.9 {} ms | max {} ms | skipped {}",
                q(0.9),
                q(0.999),
                ms(k.total_max_ms()),
                k.skipped
            ));
        }
    }
    out
}

pub(crate) fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
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

#[derive(Serialize)]
struct JsonLeg {
    min_ms: Option<f64>,
    max_ms: Option<f64>,
    avg_ms: Option<f64>,
}

#[derive(Serialize)]
struct JsonKind {
    count: u64,
    timeouts: u64,
    /// Every failure other than a timeout: the sum of `failures`.
    errors: u64,
    /// By class: hub_refused, transport, tls, malformed.
    failures: serde_json::Map<String, serde_json::Value>,
    /// Replies ignored, by reason: after_timeout, duplicate, unmatched.
    late_replies: serde_json::Map<String, serde_json::Value>,
    skipped: u64,
    c2p: JsonLeg,
    p2c: JsonLeg,
    total: JsonLeg,
    total_p50_ms: Option<f64>,
    total_p90_ms: Option<f64>,
    total_p99_ms: Option<f64>,
    total_p999_ms: Option<f64>,
    total_max_ms: Option<f64>,
    bins: [u64; BINS],
    /// Run and step lines: the verdict's sample, for `compare` (`snapshot`, docs/compare.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    sample: Option<crate::snapshot::SampleSnapshot>,
}

/// What a JSON line covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One summary interval.
    Interval,
    /// The whole run, printed once at exit.
    Run,
    /// One step of a sweep (`sweep`), after its warm-up.
    Step,
}

fn verdict_json(v: &Verdict) -> serde_json::Value {
    serde_json::json!({
        "faster": v.faster,
        "median_diff_ms": v.median_diff_ms,
        "ci95_ms": v.ci95_ms.map(|(lo, hi)| [lo, hi]),
        "n": { "method": v.n_method, "message": v.n_message },
    })
}

/// One JSON line with the interval's figures, for scripts (closed loop, verdict computed here).
pub fn render_json(
    stamp: &str,
    interval: Duration,
    stats: &IntervalStats,
    kinds: &[Kind],
) -> String {
    render_summary_json(
        Scope::Interval,
        stamp,
        interval,
        stats,
        kinds,
        Schedule::Closed,
        stats.verdict(kinds).as_ref(),
    )
}

/// One JSON line: an interval's (or the whole run's) figures per kind, the schedule and the
/// verdict (`null` when only one kind is measured).
pub fn render_summary_json(
    scope: Scope,
    stamp: &str,
    interval: Duration,
    stats: &IntervalStats,
    kinds: &[Kind],
    schedule: Schedule,
    verdict: Option<&Verdict>,
) -> String {
    let leg = |l: &LegStats| JsonLeg {
        min_ms: (l.count > 0).then_some(l.min_ms),
        max_ms: (l.count > 0).then_some(l.max_ms),
        avg_ms: l.avg_ms(),
    };
    let mut map = serde_json::Map::new();
    for &kind in kinds {
        let k = stats.kind(kind);
        let j = JsonKind {
            count: k.count(),
            timeouts: k.timeouts,
            errors: k.errors,
            failures: Failure::ALL
                .iter()
                .map(|f| (f.as_str().to_owned(), k.failures[*f as usize].into()))
                .collect(),
            late_replies: LateReply::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), k.late[*r as usize].into()))
                .collect(),
            skipped: k.skipped,
            c2p: leg(&k.c2p),
            p2c: leg(&k.p2c),
            total: leg(&k.total),
            total_p50_ms: k.total_quantile_ms(0.5),
            total_p90_ms: k.total_quantile_ms(0.9),
            total_p99_ms: k.total_quantile_ms(0.99),
            total_p999_ms: k.total_quantile_ms(0.999),
            total_max_ms: k.total_max_ms(),
            bins: k.bins,
            sample: crate::snapshot::SampleSnapshot::for_scope(scope, k),
        };
        map.insert(
            kind.label().to_owned(),
            serde_json::to_value(j).unwrap_or_default(),
        );
    }
    let max_in_flight = match schedule {
        Schedule::Closed => None,
        Schedule::Open { max_in_flight, .. } => Some(max_in_flight),
    };
    serde_json::json!({
        "time": stamp,
        "scope": match scope { Scope::Interval => "interval", Scope::Run => "run", Scope::Step => "step" },
        "interval_seconds": interval.as_secs_f64(),
        "schedule": schedule.label(),
        "rate": schedule.rate(),
        "max_in_flight": max_in_flight,
        "kinds": map,
        "verdict": verdict.map(verdict_json),
    })
    .to_string()
}

mod run_table;
pub use run_table::render_run_table;

#[cfg(test)]
mod tests;
