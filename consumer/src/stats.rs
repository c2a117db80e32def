//! One interval's figures per kind of exchange, and the seed's plain-text table (SEED.md), with
//! its bugs fixed: averages per kind, and an empty interval prints dashes instead of ±1.8E+308/NaN.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

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
    pub errors: u64,
    /// Total in microseconds, 1 µs … 1 h at 3 significant digits, for percentiles.
    total_us: Histogram<u64>,
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
            total_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| unreachable!("valid bounds")),
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
    }

    pub fn count(&self) -> u64 {
        self.total.count
    }

    /// Total at quantile `q` (0..=1) in milliseconds.
    pub fn total_quantile_ms(&self, q: f64) -> Option<f64> {
        (self.count() > 0).then(|| self.total_us.value_at_quantile(q) as f64 / 1000.0)
    }

    fn reset(&mut self) {
        self.c2p = LegStats::default();
        self.p2c = LegStats::default();
        self.total = LegStats::default();
        self.bins = [0; BINS];
        self.timeouts = 0;
        self.errors = 0;
        self.total_us.reset();
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
}

fn interval_words(d: Duration) -> String {
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
        }
    }
    out
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
    errors: u64,
    c2p: JsonLeg,
    p2c: JsonLeg,
    total: JsonLeg,
    total_p50_ms: Option<f64>,
    total_p99_ms: Option<f64>,
    bins: [u64; BINS],
}

/// One JSON line with the interval's figures, for scripts.
pub fn render_json(
    stamp: &str,
    interval: Duration,
    stats: &IntervalStats,
    kinds: &[Kind],
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
            c2p: leg(&k.c2p),
            p2c: leg(&k.p2c),
            total: leg(&k.total),
            total_p50_ms: k.total_quantile_ms(0.5),
            total_p99_ms: k.total_quantile_ms(0.99),
            bins: k.bins,
        };
        map.insert(
            kind.label().to_owned(),
            serde_json::to_value(j).unwrap_or_default(),
        );
    }
    serde_json::json!({ "time": stamp, "interval_seconds": interval.as_secs_f64(), "kinds": map })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(c2p: f64, p2c: f64) -> Sample {
        Sample {
            c2p_ms: c2p,
            p2c_ms: p2c,
            total_ms: c2p + p2c,
        }
    }

    /// SEED.md's example, rebuilt from samples with the same min/max/avg and bins.
    #[test]
    fn renders_the_seed_layout() {
        let mut s = IntervalStats::default();
        // Messages: 4 samples whose totals fall in <1000 (2), 3000 and >10000.
        for x in [
            sample(1.0952, 1.4906),
            sample(16.2191, 0.9817),
            sample(3000.0, 51.9430),
            sample(10019.3094, 2.9021),
        ] {
            s.message.record(&x);
        }
        s.method.record(&sample(14.1958, 1.3131));
        let table = render_table(
            "2019-06-19T19:32:16.4161739+00:00",
            Duration::from_secs(60),
            &s,
            &[Kind::Message, Kind::Method],
            false,
        );
        let expected = "\
2019-06-19T19:32:16.4161739+00:00 - 5 items in 1 minute
Messages         | Minimum    | Maximum    | Average    |
--------+--------+------------+------------+------------|
        |  C->P  |     1.0952 | 10019.3094 |  3259.1559 |
      4 |  P->C  |     0.9817 |    51.9430 |    14.3293 |
        |  Total |     2.5858 | 10022.2115 |  3273.4853 |
--------+--------+------------+------------+------------|
Count   | Millis | Percentage
--------+--------+-------------
      2 |  <1000 | ██████
      0 |   1000 |
      0 |   2000 |
      1 |   3000 | ███
      0 |   4000 |
      0 |   5000 |
      0 |   6000 |
      0 |   7000 |
      0 |   8000 |
      0 |   9000 |
      1 | >10000 | ███
--------+--------+-------------
Method           | Minimum    | Maximum    | Average    |
--------+--------+------------+------------+------------|
        |  C->P  |    14.1958 |    14.1958 |    14.1958 |
      1 |  P->C  |     1.3131 |     1.3131 |     1.3131 |
        |  Total |    15.5089 |    15.5089 |    15.5089 |
--------+--------+------------+------------+------------|
Count   | Millis | Percentage
--------+--------+-------------
      1 |  <1000 | ████████████
      0 |   1000 |
      0 |   2000 |
      0 |   3000 |
      0 |   4000 |
      0 |   5000 |
      0 |   6000 |
      0 |   7000 |
      0 |   8000 |
      0 |   9000 |
      0 | >10000 |
--------+--------+-------------
";
        assert_eq!(table, expected);
    }

    #[test]
    fn empty_interval_prints_dashes_not_nan() {
        let s = IntervalStats::default();
        let table = render_table("t", Duration::from_secs(5), &s, &[Kind::Method], true);
        assert!(table.starts_with("t - 0 items in 5 seconds\n"));
        assert!(table.contains("        |  C->P  |          - |          - |          - |"));
        assert!(table.contains("      0 |  P->C  |"));
        assert!(!table.contains("NaN") && !table.contains("E+308") && !table.contains('█'));
        assert!(table.contains("Total p50 - ms | p99 - ms | timeouts 0 | errors 0"));
        let json: serde_json::Value = serde_json::from_str(&render_json(
            "t",
            Duration::from_secs(5),
            &s,
            &[Kind::Method],
        ))
        .unwrap();
        assert_eq!(json["kinds"]["method"]["count"], 0);
        assert!(json["kinds"]["method"]["total"]["avg_ms"].is_null());
    }

    #[test]
    fn averages_are_per_kind() {
        // The seed divided each kind's sum by both kinds' count; 1 method + 3 messages showed
        // the method's average at a quarter of its value.
        let mut s = IntervalStats::default();
        s.method.record(&sample(10.0, 10.0));
        for _ in 0..3 {
            s.message.record(&sample(1.0, 1.0));
        }
        assert_eq!(s.method.total.avg_ms(), Some(20.0));
        assert_eq!(s.message.total.avg_ms(), Some(2.0));
        let json: serde_json::Value =
            serde_json::from_str(&render_json("t", Duration::from_secs(60), &s, &Kind::ALL))
                .unwrap();
        assert_eq!(json["kinds"]["method"]["total"]["avg_ms"], 20.0);
        assert_eq!(json["kinds"]["message"]["c2p"]["avg_ms"], 1.0);
        assert_eq!(json["kinds"]["message"]["count"], 3);
    }

    #[test]
    fn take_leaves_an_empty_interval() {
        let mut s = IntervalStats::default();
        s.method.record(&sample(1.0, 2.0));
        s.method.timeouts = 2;
        let taken = s.take();
        assert_eq!(taken.method.count(), 1);
        assert_eq!(taken.method.timeouts, 2);
        assert_eq!(
            taken
                .method
                .total_quantile_ms(0.5)
                .map(|v| (v * 10.0).round() / 10.0),
            Some(3.0)
        );
        assert_eq!(s.method.count(), 0);
        assert_eq!(s.method.timeouts, 0);
        assert_eq!(s.method.total_quantile_ms(0.5), None);
    }
}
