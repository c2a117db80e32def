//! The run as one self-contained HTML page: the same figures as the tables and the JSON, drawn
//! with `plotters`' SVG backend and inlined, with the numbers behind every plot in tables below.
//! No script, no font or style sheet from the network: the file reads offline and can be attached
//! to a ticket. The consumer serves it live at `GET /report` and writes it at exit (`--report`).
//!
//! [`render`] is a pure function of a [`Report`]: everything it shows (per-kind figures of the
//! run, per-interval points, the verdict and the settings) is in that struct, so a test can render
//! a fixed run and compare the page's structure with a golden file.
//!
//! Stable hooks for tests and scripts: every plot is a `<figure id="plot-…" data-plot="…">`, each
//! series in it a `<g data-kind="method|message" data-series="…" data-points="N">` wrapping the
//! SVG that plotters drew for that series alone (each series is drawn into its own layer of the
//! same chart, so no drawn markup is ever edited); every table has an id and its rows carry
//! `data-kind`; a kind without samples shows `<p class="no-data" data-no-data="KIND">`.

pub mod collect;

mod chart;
mod plots;
pub mod sweep;
mod tables;
#[cfg(test)]
mod tests;
mod verdict_section;

use crate::kind::Kind;
use crate::stats::{IntervalStats, KindStats, LegStats, BINS};
use crate::verdict::Verdict;
use chart::css_colour;
use plots::{
    histogram_plot, latency_over_time_plot, legs_plot, percentile_plot, rate_over_time_plot,
};
use std::fmt::Write as _;
use tables::{
    esc, histogram_table, intervals_table, legs_table, percentiles_table, seed_bins_table,
    settings_table, summary_table,
};
use verdict_section::{verdict_section, verdict_table};

/// Whether the page shows a run in progress or one that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `GET /report`: the run so far.
    Live,
    /// `--report FILE`: the whole run, written at exit.
    Final,
}

/// Edges of the Total histogram's buckets in ms: ten per decade from 10 µs to 10 s, then one
/// bucket for 10 s and more (the seed's `>10000`). Values under 10 µs count in the first bucket.
pub const HISTOGRAM_DECADES: (i32, i32) = (-2, 4);
pub const BUCKETS_PER_DECADE: i32 = 10;
/// Drawn width of the open last bucket: 10 s … 20 s.
const OVERFLOW_DRAWN_TO_MS: f64 = 20_000.0;

/// The lower edge of every bucket; the last bucket has no upper edge.
pub fn histogram_edges_ms() -> Vec<f64> {
    let (lo, hi) = HISTOGRAM_DECADES;
    (0..=(hi - lo) * BUCKETS_PER_DECADE)
        .map(|i| {
            let e = f64::from(lo) + f64::from(i) / f64::from(BUCKETS_PER_DECADE);
            // Rounded to 4 significant digits so edges print as 0.01, 0.01259, … 1000.
            round_sig(10f64.powf(e), 4)
        })
        .collect()
}

fn round_sig(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// The bucket of a value (ms) among `edges` (see [`histogram_edges_ms`]).
pub fn bucket_of(edges: &[f64], ms: f64) -> usize {
    edges.partition_point(|&e| e <= ms).saturating_sub(1)
}

/// The percentiles on the curve (quantiles), p10 … p99.9.
pub const CURVE_QUANTILES: [f64; 9] = [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999];

/// One kind's figures over the run (or the run so far).
#[derive(Debug, Clone)]
pub struct KindFigures {
    pub kind: Kind,
    pub count: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub skipped: u64,
    pub c2p: LegStats,
    pub p2c: LegStats,
    pub total: LegStats,
    /// Total's samples per [`histogram_edges_ms`] bucket.
    pub histogram: Vec<u64>,
    /// The seed's 1-second bins of Total.
    pub seed_bins: [u64; BINS],
    /// `(quantile, ms)` for [`CURVE_QUANTILES`]; empty without samples.
    pub percentiles: Vec<(f64, f64)>,
}

impl KindFigures {
    pub fn from_stats(kind: Kind, k: &KindStats) -> Self {
        let edges = histogram_edges_ms();
        let mut histogram = vec![0; edges.len()];
        for (ms, n) in k.total_distribution_ms() {
            histogram[bucket_of(&edges, ms)] += n;
        }
        Self {
            kind,
            count: k.count(),
            timeouts: k.timeouts,
            errors: k.errors,
            skipped: k.skipped,
            c2p: k.c2p,
            p2c: k.p2c,
            total: k.total,
            histogram,
            seed_bins: k.bins,
            percentiles: CURVE_QUANTILES
                .iter()
                .filter_map(|&q| k.total_quantile_ms(q).map(|v| (q, v)))
                .collect(),
        }
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|(p, _)| (p - q).abs() < 1e-9)
            .map(|&(_, v)| v)
    }
}

/// One kind within one summary interval.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalKind {
    pub kind: Kind,
    pub count: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub skipped: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub c2p_avg_ms: Option<f64>,
    pub p2c_avg_ms: Option<f64>,
}

/// One summary interval: when it ended (seconds since the start), how long it was, and each
/// measured kind's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalPoint {
    pub end_s: f64,
    pub seconds: f64,
    pub kinds: Vec<IntervalKind>,
}

impl IntervalPoint {
    pub fn from_stats(end_s: f64, seconds: f64, stats: &IntervalStats, kinds: &[Kind]) -> Self {
        Self {
            end_s,
            seconds,
            kinds: kinds
                .iter()
                .map(|&kind| {
                    let k = stats.kind(kind);
                    IntervalKind {
                        kind,
                        count: k.count(),
                        timeouts: k.timeouts,
                        errors: k.errors,
                        skipped: k.skipped,
                        p50_ms: k.total_quantile_ms(0.5),
                        p99_ms: k.total_quantile_ms(0.99),
                        c2p_avg_ms: k.c2p.avg_ms(),
                        p2c_avg_ms: k.p2c.avg_ms(),
                    }
                })
                .collect(),
        }
    }

    fn kind(&self, kind: Kind) -> Option<&IntervalKind> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Successful exchanges per second.
    fn rate(&self, k: &IntervalKind) -> f64 {
        per_second(k.count, self.seconds)
    }
}

fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub scope: Scope,
    /// When the page was made (the tables' time format).
    pub generated: String,
    /// Seconds of run the figures cover.
    pub elapsed_s: f64,
    /// The measured kinds (`EnableMethod`/`EnableMessage`).
    pub kinds: Vec<Kind>,
    /// One per measured kind.
    pub figures: Vec<KindFigures>,
    pub intervals: Vec<IntervalPoint>,
    /// Method against message over the run; `None` when only one kind is measured.
    pub verdict: Option<Verdict>,
    /// Label and value, in order: schedule, rate, gateway, versions, …
    pub settings: Vec<(String, String)>,
    /// A sweep's steps so far; `None` for a plain run (no sweep section).
    pub sweep: Option<sweep::SweepFigures>,
}

impl Report {
    fn figures(&self, kind: Kind) -> Option<&KindFigures> {
        self.figures.iter().find(|f| f.kind == kind)
    }

    /// The measured kinds that have samples, in display order.
    fn with_samples(&self) -> Vec<&KindFigures> {
        Kind::ALL
            .iter()
            .filter_map(|&k| self.figures(k))
            .filter(|f| f.count > 0)
            .collect()
    }
}

const STYLE: &str = "
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif;
  margin: 0 auto; padding: 16px 24px; max-width: 1380px; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 26px; margin: 4px 0; }
h2 { font-size: 19px; margin: 22px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.status { color: #555; margin: 2px 0 10px; }
#verdict { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 4px 16px 10px; }
#verdict h2 { border: 0; margin-bottom: 2px; }
#verdict .headline { font-size: 22px; font-weight: 600; margin: 4px 0; }
#verdict .detail { color: #444; margin: 4px 0 8px; }
#legend { margin: 10px 0; font-size: 15px; }
#legend span.key { margin-right: 22px; font-weight: 600; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
.plots { display: flex; flex-wrap: wrap; gap: 14px; }
figure.plot { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px;
  padding: 8px; width: 620px; }
figure.plot figcaption { font-size: 14px; color: #333; margin: 0 0 6px; min-height: 2.4em; }
svg.chart { display: block; max-width: 100%; height: auto; }
.no-data { color: #8a4b00; background: #fff6e5; border: 1px solid #f0d9b5; border-radius: 4px;
  padding: 6px 10px; margin: 6px 0 0; }
.note { color: #555; margin: 6px 0 0; font-size: 14px; }
.tables { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
table { border-collapse: collapse; background: #fff; font-size: 13px;
  font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
tr.empty td { text-align: center; color: #888; }
footer { color: #777; font-size: 13px; margin: 24px 0 8px; }
";

fn elapsed_words(s: f64) -> String {
    let s = s.max(0.0);
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The page, one self-contained HTML document.
pub fn render(r: &Report) -> String {
    let scope = match r.scope {
        Scope::Live => "live",
        Scope::Final => "run",
    };
    let status = match r.scope {
        Scope::Live => format!(
            "The run so far: {} of running, as of {} (reload for the latest; the last interval is still open).",
            elapsed_words(r.elapsed_s),
            r.generated
        ),
        Scope::Final => format!(
            "The whole run: {}, ended {}.",
            elapsed_words(r.elapsed_s),
            r.generated
        ),
    };
    let mut out = String::with_capacity(256 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // No favicon request: the page loads nothing at all.
    out.push_str("<link rel=\"icon\" href=\"data:,\">\n");
    out.push_str("<title>Method vs message: report</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n");
    let _ = write!(
        out,
        "<header id=\"report-header\" data-scope=\"{scope}\">\n<h1>IoT Edge method vs message</h1>\n<p class=\"status\">{}</p>\n</header>\n",
        esc(&status)
    );
    out.push_str(&verdict_section(r));
    legend(&mut out, r);
    if let Some(s) = &r.sweep {
        out.push_str(&sweep::sweep_section(s));
    }
    out.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
    out.push_str(&summary_table(r).html());
    out.push_str("</section>\n");
    out.push_str("<section id=\"distribution\">\n<h2>Total latency: distribution and percentiles</h2>\n<div class=\"plots\">\n");
    out.push_str(&histogram_plot(r));
    out.push_str(&percentile_plot(r));
    out.push_str("</div>\n</section>\n");
    out.push_str("<section id=\"legs-and-time\">\n<h2>Legs, and the run over time</h2>\n<div class=\"plots\">\n");
    out.push_str(&legs_plot(r));
    out.push_str(&latency_over_time_plot(r));
    out.push_str(&rate_over_time_plot(r));
    out.push_str("</div>\n</section>\n");
    figures(&mut out, r);
    out.push_str("<section id=\"settings\">\n<h2>Settings</h2>\n");
    out.push_str(&settings_table(r).html());
    out.push_str("</section>\n");
    let _ = write!(
        out,
        "<footer>Made by the consumer module of iotedge-method-vs-message {}; plots drawn with plotters (SVG). Times in ms; C->P and P->C use two modules' wall clocks, Total the consumer's monotonic clock.</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// The key: one swatch per kind, "(not measured)" where the run left it out.
fn legend(out: &mut String, r: &Report) {
    out.push_str("<div id=\"legend\">");
    for kind in Kind::ALL {
        let _ = write!(
            out,
            "<span class=\"key\" data-kind=\"{k}\"><span class=\"swatch\" style=\"background:{c}\"></span>{k}{}</span>",
            if r.kinds.contains(&kind) { "" } else { " (not measured)" },
            k = kind.label(),
            c = css_colour(kind)
        );
    }
    out.push_str("</div>\n");
}

/// The tables behind the plots, so every figure can be read as numbers too.
fn figures(out: &mut String, r: &Report) {
    out.push_str(
        "<section id=\"figures\">\n<h2>The figures behind the plots</h2>\n<div class=\"tables\">\n",
    );
    for t in [
        percentiles_table(r),
        legs_table(r),
        seed_bins_table(r),
        histogram_table(r),
    ] {
        out.push_str(&t.html());
    }
    if let Some(t) = verdict_table(r) {
        out.push_str(&t.html());
    }
    out.push_str(&intervals_table(r).html());
    out.push_str("</div>\n</section>\n");
}
