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

use crate::stats::{IntervalStats, Kind, KindStats, LegStats, BINS};
use crate::verdict::{Faster, Verdict, MIN_SAMPLES};
use plotters::coord::ranged1d::{AsRangedCoord, DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;

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

// ---------------------------------------------------------------------------------------------
// Colours: one per kind, the same in every plot, table and legend.

const METHOD_RGB: (u8, u8, u8) = (0x00, 0x72, 0xb2); // Okabe–Ito blue
const MESSAGE_RGB: (u8, u8, u8) = (0xd5, 0x5e, 0x00); // Okabe–Ito vermillion

fn rgb(kind: Kind) -> (u8, u8, u8) {
    match kind {
        Kind::Method => METHOD_RGB,
        Kind::Message => MESSAGE_RGB,
    }
}

fn colour(kind: Kind) -> RGBColor {
    let (r, g, b) = rgb(kind);
    RGBColor(r, g, b)
}

fn css_colour(kind: Kind) -> String {
    let (r, g, b) = rgb(kind);
    format!("#{r:02x}{g:02x}{b:02x}")
}

const GREY: RGBColor = RGBColor(0x88, 0x88, 0x88);
const FONT: &str = "sans-serif";

// ---------------------------------------------------------------------------------------------
// Plots: each series drawn by plotters into its own layer of the same chart.

const PLOT_SIZE: (u32, u32) = (620, 330);
/// The verdict's strip: one interval against zero.
const VERDICT_SIZE: (u32, u32) = (620, 130);

type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;
type DrawResult = Result<(), String>;
/// Draws one series (or the axes' guides) on a chart.
type DrawFn<'d, X, Y> = dyn Fn(&mut Chart<'_, '_, X, Y>) -> DrawResult + 'd;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One series' layer: its attributes on the wrapping `<g>`, and how plotters draws it.
struct Layer<'d, X: Ranged, Y: Ranged> {
    kind: Option<Kind>,
    series: &'static str,
    points: usize,
    draw: Box<DrawFn<'d, X, Y>>,
}

/// The chart's frame: how its axes are built and labelled.
struct Frame<'f, XR: AsRangedCoord, YR: AsRangedCoord> {
    size: (u32, u32),
    /// The axes' ranges, made anew for every layer (plotters' ranges are not all `Clone`).
    x: &'f dyn Fn() -> XR,
    y: &'f dyn Fn() -> YR,
    x_desc: &'f str,
    y_desc: &'f str,
    x_fmt: &'f dyn Fn(&XR::Value) -> String,
    y_fmt: &'f dyn Fn(&YR::Value) -> String,
    /// Extra reference lines drawn with the axes (e.g. the seed's 1-second bins).
    guides: &'f DrawFn<'f, XR::CoordDescType, YR::CoordDescType>,
}

fn build<'a, 'b, XR, YR>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    frame: &Frame<'_, XR, YR>,
) -> Result<Chart<'a, 'b, XR::CoordDescType, YR::CoordDescType>, String>
where
    XR: AsRangedCoord,
    YR: AsRangedCoord,
{
    ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((frame.x)(), (frame.y)())
        .map_err(err)
}

/// One `<svg>`: the axes layer, then one `<g data-kind data-series>` per series. Every layer is
/// a whole plotters drawing of the same size and frame, so they line up exactly.
fn layered_svg<XR, YR>(
    frame: &Frame<'_, XR, YR>,
    layers: &[Layer<'_, XR::CoordDescType, YR::CoordDescType>],
) -> Result<String, String>
where
    XR: AsRangedCoord,
    YR: AsRangedCoord,
    XR::CoordDescType: ValueFormatter<XR::Value>,
    YR::CoordDescType: ValueFormatter<YR::Value>,
{
    let (w, h) = frame.size;
    let mut out = format!(
        r#"<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">"#
    );
    out.push('\n');
    let mut axes = String::new();
    {
        let root = SVGBackend::with_string(&mut axes, frame.size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = build(&root, frame)?;
        let label = (FONT, 13).into_font();
        chart
            .configure_mesh()
            .x_desc(frame.x_desc)
            .y_desc(frame.y_desc)
            .x_label_formatter(frame.x_fmt)
            .y_label_formatter(frame.y_fmt)
            .label_style(label.clone())
            .axis_desc_style(label)
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
            .draw()
            .map_err(err)?;
        (frame.guides)(&mut chart)?;
        root.present().map_err(err)?;
    }
    out.push_str("<g data-layer=\"axes\">\n");
    out.push_str(&axes);
    out.push_str("</g>\n");
    for layer in layers {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, frame.size).into_drawing_area();
            let mut chart = build(&root, frame)?;
            (layer.draw)(&mut chart)?;
            root.present().map_err(err)?;
        }
        out.push_str("<g");
        if let Some(kind) = layer.kind {
            let _ = write!(out, r#" data-kind="{}""#, kind.label());
        }
        let _ = write!(
            out,
            r#" data-series="{}" data-points="{}">"#,
            layer.series, layer.points
        );
        out.push('\n');
        out.push_str(&svg);
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    Ok(out)
}

/// A linear axis with ticks exactly at `keys` (plotters' key-point combinator on a plain `f64`
/// range loses the label formatting the mesh needs).
struct Ticked {
    range: std::ops::Range<f64>,
    keys: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let at = (v - self.range.start) / span;
        limit.0 + (at * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

fn no_guides<X: Ranged, Y: Ranged>(_: &mut Chart<'_, '_, X, Y>) -> DrawResult {
    Ok(())
}

/// Axis labels in ms, on log axes: 10 µs, 0.1 ms, 1 ms, … 1 s, 10 s.
fn ms_axis(v: &f64) -> String {
    let v = *v;
    if v >= 1000.0 {
        format!("{} s", trim(v / 1000.0))
    } else if v < 0.1 {
        format!("{} µs", trim(v * 1000.0))
    } else {
        format!("{} ms", trim(v))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{:.3}", round_sig(v, 3));
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A log range that covers `values` (ms), widened to whole decades; values at or below zero
/// (a cross-clock leg can read negative) are drawn at the floor.
fn log_span(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        let v = v.max(LOG_FLOOR_MS);
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.1, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let mut hi = 10f64.powf(hi.log10().ceil());
    if hi <= lo * 1.0001 {
        hi = lo * 10.0;
    }
    (lo, hi)
}

/// The smallest value a log axis shows (1 µs).
const LOG_FLOOR_MS: f64 = 0.001;

fn figure(id: &str, caption: &str, body: &str, notes: &[String]) -> String {
    let mut out = format!(
        "<figure class=\"plot\" id=\"plot-{id}\" data-plot=\"{id}\">\n<figcaption>{}</figcaption>\n",
        esc(caption)
    );
    out.push_str(body);
    for n in notes {
        out.push_str(n);
    }
    out.push_str("</figure>\n");
    out
}

/// "no data for …" notes for the kinds without samples (measured or not), in display order.
fn no_data_notes(r: &Report, what: &str) -> Vec<String> {
    Kind::ALL
        .iter()
        .filter_map(|&kind| {
            let reason = match r.figures(kind) {
                None => format!(
                    "not measured in this run ({} is false)",
                    match kind {
                        Kind::Method => "EnableMethod",
                        Kind::Message => "EnableMessage",
                    }
                ),
                Some(f) if f.count == 0 => format!(
                    "no successful exchange yet ({} timeouts, {} errors, {} skipped)",
                    f.timeouts, f.errors, f.skipped
                ),
                Some(_) => return None,
            };
            Some(format!(
                "<p class=\"no-data\" data-no-data=\"{k}\">No data for {k} {what}: {reason}.</p>\n",
                k = kind.label()
            ))
        })
        .collect()
}

fn plot_or_error(svg: Result<String, String>) -> String {
    svg.unwrap_or_else(|e| format!("<p class=\"plot-error\">plot failed: {}</p>\n", esc(&e)))
}

fn histogram_plot(r: &Report) -> String {
    let kinds = r.with_samples();
    let notes = no_data_notes(r, "in the latency distribution");
    let caption = "Total latency distribution: share of each kind's exchanges per bucket \
                   (10 per decade, log scale; grey lines: the seed's 1-second bins)";
    if kinds.is_empty() {
        return figure("total-histogram", caption, "", &notes);
    }
    let edges = histogram_edges_ms();
    let upper = |i: usize| edges.get(i + 1).copied().unwrap_or(OVERFLOW_DRAWN_TO_MS);
    let share = |f: &KindFigures, n: u64| 100.0 * n as f64 / f.count.max(1) as f64;
    let top = kinds
        .iter()
        .flat_map(|f| f.histogram.iter().map(|&n| share(f, n)))
        .fold(0.0f64, f64::max);
    let decades: Vec<f64> = (HISTOGRAM_DECADES.0..=HISTOGRAM_DECADES.1)
        .map(|d| 10f64.powi(d))
        .collect();
    let guides = |chart: &mut Chart<'_, '_, _, _>| -> DrawResult {
        chart
            .draw_series((1..=10).map(|s| {
                let x = f64::from(s) * 1000.0;
                PathElement::new(vec![(x, 0.0), (x, top * 1.1)], GREY.mix(0.5))
            }))
            .map_err(err)?;
        Ok(())
    };
    let frame = Frame {
        size: PLOT_SIZE,
        x: &|| {
            (edges[0]..OVERFLOW_DRAWN_TO_MS)
                .log_scale()
                .with_key_points(decades.clone())
        },
        y: &|| 0.0..(top * 1.1).max(1.0),
        x_desc: "Total latency (log scale)",
        y_desc: "% of the kind's exchanges",
        x_fmt: &ms_axis,
        y_fmt: &|v: &f64| format!("{v:.0}%"),
        guides: &guides,
    };
    let n = kinds.len();
    let layers: Vec<Layer<'_, _, _>> = kinds
        .iter()
        .enumerate()
        .map(|(slot, f)| {
            let bars: Vec<(f64, f64, f64)> = f
                .histogram
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| {
                    // Side by side within the bucket, in log space.
                    let (a, b) = (edges[i], upper(i));
                    let step = (b / a).powf(1.0 / n as f64);
                    let from = a * step.powf(slot as f64);
                    let to = from * step;
                    (from * step.powf(0.06), to / step.powf(0.06), share(f, c))
                })
                .collect();
            let style = colour(f.kind).filled();
            Layer {
                kind: Some(f.kind),
                series: "total-histogram",
                points: bars.len(),
                draw: Box::new(move |chart| {
                    chart
                        .draw_series(
                            bars.iter()
                                .map(|&(x0, x1, y)| Rectangle::new([(x0, 0.0), (x1, y)], style)),
                        )
                        .map_err(err)?;
                    Ok(())
                }),
            }
        })
        .collect();
    figure(
        "total-histogram",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &notes,
    )
}

/// Position of quantile `q` on the percentile axis: -log10(1 - q), so p90, p99 and p99.9 are
/// evenly spaced.
fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-9).log10()
}

fn percentile_label(q: f64) -> String {
    let p = 100.0 * q;
    let s = format!("{p:.3}");
    format!("p{}", s.trim_end_matches('0').trim_end_matches('.'))
}

fn percentile_plot(r: &Report) -> String {
    let kinds = r.with_samples();
    let notes = no_data_notes(r, "in the percentile curve");
    let caption = "Total latency percentiles p10 … p99.9 (log scale)";
    if kinds.is_empty() {
        return figure("total-percentiles", caption, "", &notes);
    }
    let (lo, hi) = log_span(
        kinds
            .iter()
            .flat_map(|f| f.percentiles.iter().map(|&(_, v)| v)),
    );
    let frame = Frame {
        size: PLOT_SIZE,
        x: &|| Ticked {
            range: 0.0..nines(0.999) + 0.2,
            keys: [0.5, 0.9, 0.99, 0.999].map(nines).to_vec(),
        },
        y: &|| (lo..hi).log_scale(),
        x_desc: "percentile",
        y_desc: "Total latency",
        x_fmt: &|x: &f64| percentile_label(1.0 - 10f64.powf(-x)),
        y_fmt: &ms_axis,
        guides: &no_guides,
    };
    let layers: Vec<Layer<'_, _, _>> = kinds
        .iter()
        .map(|f| {
            let points: Vec<(f64, f64)> = f
                .percentiles
                .iter()
                .map(|&(q, v)| (nines(q), v.max(LOG_FLOOR_MS)))
                .collect();
            let c = colour(f.kind);
            Layer {
                kind: Some(f.kind),
                series: "total-percentiles",
                points: points.len(),
                draw: Box::new(move |chart| {
                    chart
                        .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                        .map_err(err)?;
                    chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                        .map_err(err)?;
                    Ok(())
                }),
            }
        })
        .collect();
    figure(
        "total-percentiles",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &notes,
    )
}

const LEGS: [&str; 3] = ["C->P", "P->C", "Total"];

fn legs_of(f: &KindFigures) -> [&LegStats; 3] {
    [&f.c2p, &f.p2c, &f.total]
}

fn legs_plot(r: &Report) -> String {
    let kinds = r.with_samples();
    let notes = no_data_notes(r, "in the legs");
    let caption = "Each leg per kind: minimum, average (dot) and maximum (log scale). \
                   C->P and P->C compare the two modules' clocks";
    if kinds.is_empty() {
        return figure("legs", caption, "", &notes);
    }
    let (lo, hi) = log_span(kinds.iter().flat_map(|f| {
        legs_of(f)
            .into_iter()
            .filter(|l| l.count > 0)
            .flat_map(|l| [l.min_ms, l.max_ms])
            .collect::<Vec<_>>()
    }));
    let frame = Frame {
        size: PLOT_SIZE,
        x: &|| Ticked {
            range: -0.5..2.5,
            keys: vec![0.0, 1.0, 2.0],
        },
        y: &|| (lo..hi).log_scale(),
        x_desc: "leg",
        y_desc: "latency",
        x_fmt: &|x: &f64| {
            LEGS.get(x.round().max(0.0) as usize)
                .copied()
                .unwrap_or("")
                .to_owned()
        },
        y_fmt: &ms_axis,
        guides: &no_guides,
    };
    let n = kinds.len() as f64;
    let layers: Vec<Layer<'_, _, _>> = kinds
        .iter()
        .enumerate()
        .map(|(slot, f)| {
            let offset = (slot as f64 - (n - 1.0) / 2.0) * 0.22;
            let whiskers: Vec<(f64, f64, f64, f64)> = legs_of(f)
                .into_iter()
                .enumerate()
                .filter(|(_, l)| l.count > 0)
                .map(|(i, l)| {
                    (
                        i as f64 + offset,
                        l.min_ms.max(LOG_FLOOR_MS),
                        l.avg_ms().unwrap_or(l.min_ms).max(LOG_FLOOR_MS),
                        l.max_ms.max(LOG_FLOOR_MS),
                    )
                })
                .collect();
            let c = colour(f.kind);
            Layer {
                kind: Some(f.kind),
                series: "legs",
                points: whiskers.len(),
                draw: Box::new(move |chart| {
                    for &(x, min, avg, max) in &whiskers {
                        chart
                            .draw_series([
                                PathElement::new(vec![(x, min), (x, max)], c.stroke_width(2)),
                                PathElement::new(
                                    vec![(x - 0.06, min), (x + 0.06, min)],
                                    c.stroke_width(2),
                                ),
                                PathElement::new(
                                    vec![(x - 0.06, max), (x + 0.06, max)],
                                    c.stroke_width(2),
                                ),
                            ])
                            .map_err(err)?;
                        chart
                            .draw_series([Circle::new((x, avg), 5, c.filled())])
                            .map_err(err)?;
                    }
                    Ok(())
                }),
            }
        })
        .collect();
    figure(
        "legs",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &notes,
    )
}

fn no_intervals_note() -> Vec<String> {
    vec!["<p class=\"no-data\" data-no-data=\"intervals\">No data over time yet: the first summary interval has not ended.</p>\n".to_owned()]
}

fn time_span(r: &Report) -> f64 {
    r.intervals
        .iter()
        .map(|p| p.end_s)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.05
}

fn seconds_axis(v: &f64) -> String {
    format!("{} s", trim(*v))
}

fn latency_over_time_plot(r: &Report) -> String {
    let caption = "Total latency per summary interval: p50 (dots, solid) and p99 (triangles, \
                   thin) per kind (log scale)";
    if r.intervals.is_empty() {
        return figure("latency-over-time", caption, "", &no_intervals_note());
    }
    let series = |kind: Kind, p99: bool| -> Vec<(f64, f64)> {
        r.intervals
            .iter()
            .filter_map(|p| {
                let k = p.kind(kind)?;
                let v = if p99 { k.p99_ms } else { k.p50_ms }?;
                Some((p.end_s, v.max(LOG_FLOOR_MS)))
            })
            .collect()
    };
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|&k| !series(k, false).is_empty())
        .collect();
    let notes = no_data_notes(r, "over time");
    if kinds.is_empty() {
        return figure("latency-over-time", caption, "", &notes);
    }
    let (lo, hi) = log_span(
        kinds
            .iter()
            .flat_map(|&k| series(k, false).into_iter().chain(series(k, true)))
            .map(|(_, v)| v),
    );
    let frame = Frame {
        size: PLOT_SIZE,
        x: &|| 0.0..time_span(r),
        y: &|| (lo..hi).log_scale(),
        x_desc: "time since the start",
        y_desc: "Total latency",
        x_fmt: &seconds_axis,
        y_fmt: &ms_axis,
        guides: &no_guides,
    };
    let mut layers: Vec<Layer<'_, _, _>> = Vec::new();
    for &kind in &kinds {
        for p99 in [false, true] {
            let points = series(kind, p99);
            let c = colour(kind);
            layers.push(Layer {
                kind: Some(kind),
                series: if p99 { "p99" } else { "p50" },
                points: points.len(),
                draw: Box::new(move |chart| {
                    let width = if p99 { 1 } else { 2 };
                    chart
                        .draw_series(LineSeries::new(
                            points.iter().copied(),
                            c.stroke_width(width),
                        ))
                        .map_err(err)?;
                    if p99 {
                        chart
                            .draw_series(
                                points
                                    .iter()
                                    .map(|&p| TriangleMarker::new(p, 4, c.filled())),
                            )
                            .map_err(err)?;
                    } else {
                        chart
                            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                            .map_err(err)?;
                    }
                    Ok(())
                }),
            });
        }
    }
    figure(
        "latency-over-time",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &notes,
    )
}

fn rate_over_time_plot(r: &Report) -> String {
    let caption = "Successful exchanges per second per summary interval; intervals with \
                   timeouts (▲) or errors (✕) are marked along the top with their count";
    if r.intervals.is_empty() {
        return figure("rate-over-time", caption, "", &no_intervals_note());
    }
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| r.kinds.contains(k))
        .collect();
    let rates = |kind: Kind| -> Vec<(f64, f64)> {
        r.intervals
            .iter()
            .filter_map(|p| p.kind(kind).map(|k| (p.end_s, p.rate(k))))
            .collect()
    };
    let counts = |kind: Kind, what: fn(&IntervalKind) -> u64| -> Vec<(f64, u64)> {
        r.intervals
            .iter()
            .filter_map(|p| p.kind(kind).map(|k| (p.end_s, what(k))))
            .filter(|&(_, n)| n > 0)
            .collect()
    };
    let top = kinds
        .iter()
        .flat_map(|&k| rates(k))
        .map(|(_, v)| v)
        .fold(0.0f64, f64::max);
    // The rates use the lower 80 %; the failure marks sit in the band above.
    let y_top = (top * 1.25).max(1.0);
    let span = time_span(r);
    let frame = Frame {
        size: PLOT_SIZE,
        x: &|| 0.0..span,
        y: &|| 0.0..y_top,
        x_desc: "time since the start",
        y_desc: "exchanges per second",
        x_fmt: &seconds_axis,
        y_fmt: &|v: &f64| trim(*v),
        guides: &no_guides,
    };
    let mut layers: Vec<Layer<'_, _, _>> = Vec::new();
    for (slot, &kind) in kinds.iter().enumerate() {
        let c = colour(kind);
        let rate = rates(kind);
        layers.push(Layer {
            kind: Some(kind),
            series: "rate",
            points: rate.len(),
            draw: Box::new(move |chart| {
                chart
                    .draw_series(LineSeries::new(rate.iter().copied(), c.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(rate.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(err)?;
                Ok(())
            }),
        });
        // Each kind a little to its own side of the interval's end, so both stay visible.
        let dx = (slot as f64 - 0.5) * span * 0.012;
        for (series, row) in [("timeouts", 0.94), ("errors", 0.86)] {
            let marks = counts(
                kind,
                if series == "timeouts" {
                    |k: &IntervalKind| k.timeouts
                } else {
                    |k: &IntervalKind| k.errors
                },
            );
            let label = (FONT, 12).into_font().color(&c);
            layers.push(Layer {
                kind: Some(kind),
                series,
                points: marks.len(),
                draw: Box::new(move |chart| {
                    let at = |x: f64| EmptyElement::at((x + dx, y_top * row));
                    let count = |n: u64| Text::new(n.to_string(), (7, -6), label.clone());
                    if series == "timeouts" {
                        chart
                            .draw_series(marks.iter().map(|&(x, n)| {
                                at(x) + TriangleMarker::new((0, 0), 6, c.filled()) + count(n)
                            }))
                            .map_err(err)?;
                    } else {
                        chart
                            .draw_series(marks.iter().map(|&(x, n)| {
                                at(x) + Cross::new((0, 0), 5, c.stroke_width(3)) + count(n)
                            }))
                            .map_err(err)?;
                    }
                    Ok(())
                }),
            });
        }
    }
    let failures: u64 = r
        .intervals
        .iter()
        .flat_map(|p| p.kinds.iter().map(|k| k.timeouts + k.errors))
        .sum();
    let mut notes = Vec::new();
    if failures == 0 {
        notes.push("<p class=\"note\" data-note=\"no-failures\">No timeouts or errors in any interval.</p>\n".to_owned());
    }
    figure(
        "rate-over-time",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &notes,
    )
}

fn verdict_headline(v: &Verdict) -> (String, &'static str) {
    match (v.faster, v.median_diff_ms, v.ci95_ms) {
        (_, _, None) => (
            format!("Too few samples for a verdict (at least {MIN_SAMPLES} of each kind)"),
            "insufficient",
        ),
        (Faster::None, _, Some(_)) => ("No significant difference".to_owned(), "none"),
        (Faster::Method, Some(d), Some(_)) => {
            (format!("Method faster by {:.4} ms", d.abs()), "method")
        }
        (Faster::Message, Some(d), Some(_)) => {
            (format!("Message faster by {:.4} ms", d.abs()), "message")
        }
        (_, None, Some(_)) => ("No verdict".to_owned(), "insufficient"),
    }
}

fn verdict_section(r: &Report) -> String {
    let mut out = String::from("<section id=\"verdict\"");
    let Some(v) = &r.verdict else {
        let only = r.kinds.first().map(|k| k.label()).unwrap_or("no kind");
        let _ = write!(
            out,
            " data-faster=\"unavailable\">\n<h2>Verdict</h2>\n<p class=\"headline\">No verdict: only {only} is measured in this run.</p>\n</section>\n"
        );
        return out;
    };
    let (headline, faster) = verdict_headline(v);
    let _ = write!(
        out,
        " data-faster=\"{faster}\">\n<h2>Verdict</h2>\n<p class=\"headline\">{}</p>\n",
        esc(&headline)
    );
    let mut detail = Vec::new();
    if let Some(d) = v.median_diff_ms {
        detail.push(format!("median method − message {d:+.4} ms"));
    }
    if let Some((lo, hi)) = v.ci95_ms {
        detail.push(format!("95% CI [{lo:+.4}, {hi:+.4}] ms"));
    }
    detail.push(format!(
        "n method {}, message {} (bootstrap of the medians over a uniform sample of Total)",
        v.n_method, v.n_message
    ));
    let _ = writeln!(out, "<p class=\"detail\">{}</p>", esc(&detail.join(" · ")));
    if let (Some(d), Some((lo, hi))) = (v.median_diff_ms, v.ci95_ms) {
        out.push_str(&verdict_plot(d, lo, hi, faster));
    }
    out.push_str("</section>\n");
    out
}

/// The difference and its interval against zero.
fn verdict_plot(d: f64, lo: f64, hi: f64, faster: &str) -> String {
    let reach = [d, lo, hi].iter().fold(0.0f64, |m, v| m.max(v.abs())) * 1.3;
    let reach = if reach > 0.0 { reach } else { 1.0 };
    let c = match faster {
        "method" => colour(Kind::Method),
        "message" => colour(Kind::Message),
        _ => RGBColor(0x44, 0x44, 0x44),
    };
    let zero = |chart: &mut Chart<'_, '_, _, _>| -> DrawResult {
        chart
            .draw_series([PathElement::new(
                vec![(0.0, 0.0), (0.0, 1.0)],
                BLACK.stroke_width(1),
            )])
            .map_err(err)?;
        Ok(())
    };
    let frame = Frame {
        size: VERDICT_SIZE,
        x: &|| -reach..reach,
        y: &|| 0.0..1.0,
        x_desc: "median method − message (ms): left of 0 method is faster, right of 0 message",
        y_desc: "",
        x_fmt: &|v: &f64| format!("{v:+.3}"),
        y_fmt: &|_: &f64| String::new(),
        guides: &zero,
    };
    let layer = Layer {
        kind: None,
        series: "ci95",
        points: 1,
        draw: Box::new(move |chart| {
            chart
                .draw_series([
                    PathElement::new(vec![(lo, 0.5), (hi, 0.5)], c.stroke_width(3)),
                    PathElement::new(vec![(lo, 0.35), (lo, 0.65)], c.stroke_width(3)),
                    PathElement::new(vec![(hi, 0.35), (hi, 0.65)], c.stroke_width(3)),
                ])
                .map_err(err)?;
            chart
                .draw_series([Circle::new((d, 0.5), 6, c.filled())])
                .map_err(err)?;
            Ok(())
        }),
    };
    figure(
        "verdict",
        "The difference of the medians and its 95% confidence interval",
        &plot_or_error(layered_svg(&frame, &[layer])),
        &[],
    )
}

// ---------------------------------------------------------------------------------------------
// Tables: every figure behind a plot.

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

fn leg_cells(l: &LegStats) -> [String; 3] {
    let some = |v: f64| (l.count > 0).then_some(v);
    [ms(some(l.min_ms)), ms(l.avg_ms()), ms(some(l.max_ms))]
}

struct Table {
    id: &'static str,
    caption: String,
    head: Vec<String>,
    rows: Vec<(Option<Kind>, Vec<String>)>,
}

impl Table {
    fn new(id: &'static str, caption: &str, head: &[&str]) -> Self {
        Self {
            id,
            caption: caption.to_owned(),
            head: head.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, kind: Option<Kind>, cells: Vec<String>) {
        self.rows.push((kind, cells));
    }

    fn html(&self) -> String {
        let mut out = format!(
            "<table id=\"table-{}\">\n<caption>{}</caption>\n<thead><tr>",
            self.id,
            esc(&self.caption)
        );
        for h in &self.head {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        if self.rows.is_empty() {
            let _ = writeln!(
                out,
                "<tr class=\"empty\"><td colspan=\"{}\">no data</td></tr>",
                self.head.len()
            );
        }
        for (kind, cells) in &self.rows {
            match kind {
                Some(k) => {
                    let _ = write!(out, "<tr data-kind=\"{}\">", k.label());
                }
                None => out.push_str("<tr>"),
            }
            for (i, c) in cells.iter().enumerate() {
                if i == 0 {
                    if let Some(k) = kind.filter(|k| c == k.label()) {
                        let _ = write!(
                            out,
                            "<td><span class=\"swatch\" style=\"background:{}\"></span>{}</td>",
                            css_colour(k),
                            esc(c)
                        );
                        continue;
                    }
                }
                let _ = write!(out, "<td>{}</td>", esc(c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }
}

fn measured(r: &Report) -> Vec<&KindFigures> {
    Kind::ALL.iter().filter_map(|&k| r.figures(k)).collect()
}

fn summary_table(r: &Report) -> Table {
    let mut t = Table::new(
        "summary",
        "Total latency per kind over the run (ms) and the exchanges that were not samples",
        &[
            "kind",
            "exchanges",
            "per second",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "timeouts",
            "errors",
            "skipped",
        ],
    );
    for f in measured(r) {
        t.row(
            Some(f.kind),
            vec![
                f.kind.label().into(),
                f.count.to_string(),
                format!("{:.1}", per_second(f.count, r.elapsed_s)),
                ms(f.quantile(0.5)),
                ms(f.quantile(0.9)),
                ms(f.quantile(0.99)),
                ms(f.quantile(0.999)),
                ms((f.count > 0).then_some(f.total.max_ms)),
                f.timeouts.to_string(),
                f.errors.to_string(),
                f.skipped.to_string(),
            ],
        );
    }
    t
}

fn histogram_table(r: &Report) -> Table {
    let kinds = measured(r);
    let mut head = vec!["from (ms)", "below (ms)"];
    let labels: Vec<String> = kinds
        .iter()
        .flat_map(|f| [f.kind.label().to_owned(), format!("{} %", f.kind.label())])
        .collect();
    head.extend(labels.iter().map(String::as_str));
    let mut t = Table::new(
        "total-histogram",
        "Total latency distribution: exchanges per bucket (buckets without any are left out)",
        &head,
    );
    let edges = histogram_edges_ms();
    for (i, &from) in edges.iter().enumerate() {
        if kinds
            .iter()
            .all(|f| f.histogram.get(i).copied().unwrap_or(0) == 0)
        {
            continue;
        }
        let mut cells = vec![
            format!("{from}"),
            edges
                .get(i + 1)
                .map(|e| format!("{e}"))
                .unwrap_or_else(|| "∞".into()),
        ];
        for f in &kinds {
            let n = f.histogram.get(i).copied().unwrap_or(0);
            cells.push(n.to_string());
            cells.push(format!("{:.2}", 100.0 * n as f64 / f.count.max(1) as f64));
        }
        t.row(None, cells);
    }
    t
}

const SEED_BIN_LABELS: [&str; BINS] = [
    "<1000", "1000", "2000", "3000", "4000", "5000", "6000", "7000", "8000", "9000", ">10000",
];

fn seed_bins_table(r: &Report) -> Table {
    let kinds = measured(r);
    let mut head = vec!["millis"];
    head.extend(kinds.iter().map(|f| f.kind.label()));
    let mut t = Table::new(
        "seed-bins",
        "The seed's 1-second bins of Total (the grey lines in the distribution)",
        &head,
    );
    for (i, label) in SEED_BIN_LABELS.iter().enumerate() {
        let mut cells = vec![(*label).to_owned()];
        cells.extend(kinds.iter().map(|f| f.seed_bins[i].to_string()));
        t.row(None, cells);
    }
    t
}

fn percentiles_table(r: &Report) -> Table {
    let kinds = measured(r);
    let mut head = vec!["percentile"];
    head.extend(kinds.iter().map(|f| f.kind.label()));
    let mut t = Table::new(
        "total-percentiles",
        "Total latency percentiles (ms; the top of the HDR histogram's bucket, at most the maximum)",
        &head,
    );
    for q in CURVE_QUANTILES {
        let mut cells = vec![percentile_label(q)];
        cells.extend(kinds.iter().map(|f| ms(f.quantile(q))));
        t.row(None, cells);
    }
    t
}

fn legs_table(r: &Report) -> Table {
    let mut t = Table::new(
        "legs",
        "Each leg per kind (ms)",
        &["kind", "leg", "samples", "min", "avg", "max"],
    );
    for f in measured(r) {
        for (name, leg) in LEGS.iter().zip(legs_of(f)) {
            let [min, avg, max] = leg_cells(leg);
            t.row(
                Some(f.kind),
                vec![
                    f.kind.label().into(),
                    (*name).into(),
                    leg.count.to_string(),
                    min,
                    avg,
                    max,
                ],
            );
        }
    }
    t
}

fn intervals_table(r: &Report) -> Table {
    let mut t = Table::new(
        "intervals",
        "Per summary interval (ms; rate: successful exchanges per second)",
        &[
            "end (s)",
            "length (s)",
            "kind",
            "exchanges",
            "per second",
            "timeouts",
            "errors",
            "skipped",
            "p50",
            "p99",
            "C->P avg",
            "P->C avg",
        ],
    );
    for p in &r.intervals {
        for kind in Kind::ALL {
            let Some(k) = p.kind(kind) else { continue };
            t.row(
                Some(kind),
                vec![
                    format!("{:.1}", p.end_s),
                    format!("{:.1}", p.seconds),
                    kind.label().into(),
                    k.count.to_string(),
                    format!("{:.1}", p.rate(k)),
                    k.timeouts.to_string(),
                    k.errors.to_string(),
                    k.skipped.to_string(),
                    ms(k.p50_ms),
                    ms(k.p99_ms),
                    ms(k.c2p_avg_ms),
                    ms(k.p2c_avg_ms),
                ],
            );
        }
    }
    t
}

fn verdict_table(r: &Report) -> Option<Table> {
    let v = r.verdict.as_ref()?;
    let mut t = Table::new(
        "verdict",
        "The verdict's figures (ms)",
        &[
            "faster",
            "median method − message",
            "95% CI low",
            "95% CI high",
            "n method",
            "n message",
        ],
    );
    let (_, faster) = verdict_headline(v);
    t.row(
        None,
        vec![
            faster.into(),
            v.median_diff_ms
                .map(|d| format!("{d:+.4}"))
                .unwrap_or_else(|| "-".into()),
            v.ci95_ms
                .map(|(lo, _)| format!("{lo:+.4}"))
                .unwrap_or_else(|| "-".into()),
            v.ci95_ms
                .map(|(_, hi)| format!("{hi:+.4}"))
                .unwrap_or_else(|| "-".into()),
            v.n_method.to_string(),
            v.n_message.to_string(),
        ],
    );
    Some(t)
}

fn settings_table(r: &Report) -> Table {
    let mut t = Table::new("settings", "The run's settings", &["setting", "value"]);
    for (k, v) in &r.settings {
        t.row(None, vec![k.clone(), v.clone()]);
    }
    t
}

// ---------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Sample;
    use crate::verdict::SplitMix64;

    /// A fixed run of three 10-second intervals: both kinds, log-normal-ish latencies around
    /// 0.7 ms (message) and 0.8 ms (method) with a few slow outliers, some timeouts and errors.
    pub(crate) fn fixture(scope: Scope) -> Report {
        let kinds = vec![Kind::Message, Kind::Method];
        let mut rng = SplitMix64::new(12);
        let mut run = IntervalStats::default();
        let mut intervals = Vec::new();
        for i in 0..3u32 {
            let mut stats = IntervalStats::default();
            for (kind, median, n) in [(Kind::Message, 0.7, 400), (Kind::Method, 0.8, 380)] {
                for j in 0..n {
                    // exp(N(0, 0.5)) from the sum of uniforms, times the median.
                    let z: f64 = (0..12).map(|_| rng.unit()).sum::<f64>() - 6.0;
                    let mut total = median * (0.5 * z).exp();
                    if j == 7 && i == 1 {
                        total = 1500.0; // one slow exchange in the seed's 1000 bin
                    }
                    if j == 9 && i == 2 && kind == Kind::Method {
                        total = 12_000.0; // and one beyond 10 s
                    }
                    let c2p = total * (0.35 + 0.2 * rng.unit());
                    stats.kind_mut(kind).record(&Sample {
                        c2p_ms: c2p,
                        p2c_ms: total - c2p - 0.01,
                        total_ms: total,
                    });
                }
            }
            if i == 1 {
                stats.message.timeouts = 3;
            }
            if i == 2 {
                stats.method.errors = 2;
                stats.method.timeouts = 1;
            }
            intervals.push(IntervalPoint::from_stats(
                10.0 * f64::from(i + 1),
                10.0,
                &stats,
                &kinds,
            ));
            run.absorb(&stats);
        }
        Report {
            scope,
            generated: "2026-11-28T10:00:30.0000000+00:00".into(),
            elapsed_s: 30.0,
            figures: kinds
                .iter()
                .map(|&k| KindFigures::from_stats(k, run.kind(k)))
                .collect(),
            verdict: run.verdict(&kinds),
            kinds,
            intervals,
            settings: vec![
                ("schedule".into(), "closed loop (a benchmark)".into()),
                ("summary interval".into(), "10s".into()),
                ("gateway".into(), "local hub (connection string)".into()),
                ("consumer version".into(), "0.1.0".into()),
            ],
        }
    }

    /// The page's structure, one line per element a test or script relies on: every element with
    /// an id or data attributes (series layers with how many shapes plotters drew), every table
    /// row's cells, headings and notes. Pixels and plotters' own markup are left out.
    pub(crate) fn structure(html: &str) -> String {
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            rest = &rest[start..];
            let end = rest.find('>').map(|e| e + 1).unwrap_or(rest.len());
            let tag = &rest[..end];
            let after = &rest[end..];
            rest = after;
            if tag.starts_with("</") || tag.starts_with("<!") {
                continue;
            }
            let name: String = tag[1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let attrs = attributes(tag);
            let marked: Vec<String> = attrs
                .iter()
                .filter(|(k, _)| k == "id" || k.starts_with("data-"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let text_until = |close: &str| {
                let inner = &after[..after.find(close).unwrap_or(after.len())];
                text(inner)
            };
            match name.as_str() {
                "tr" => {
                    let inner = &after[..after.find("</tr>").unwrap_or(after.len())];
                    let cells: Vec<String> = inner
                        .replace("</th>", "\u{1}")
                        .replace("</td>", "\u{1}")
                        .split('\u{1}')
                        .map(text)
                        .filter(|c| !c.is_empty())
                        .collect();
                    out.push(format!("  tr{} | {}", prefixed(&marked), cells.join(" | ")));
                }
                "h1" | "h2" => out.push(format!("{name}: {}", text_until("</h"))),
                "p" => out.push(format!(
                    "  p{}{}: {}",
                    attrs
                        .iter()
                        .find(|(k, _)| k == "class")
                        .map(|(_, v)| format!(".{v}"))
                        .unwrap_or_default(),
                    prefixed(&marked),
                    text_until("</p>")
                )),
                "g" if !marked.is_empty() => {
                    let inner = &after[..after.find("</g>").unwrap_or(after.len())];
                    let shapes = [
                        "<rect",
                        "<circle",
                        "<polyline",
                        "<polygon",
                        "<line",
                        "<path",
                    ]
                    .iter()
                    .map(|s| inner.matches(s).count())
                    .sum::<usize>();
                    let shown = if marked.iter().any(|m| m == "data-layer=axes") {
                        String::new()
                    } else {
                        format!(" shapes={shapes}")
                    };
                    out.push(format!("    g{}{shown}", prefixed(&marked)));
                }
                _ if !marked.is_empty() => out.push(format!("{name}{}", prefixed(&marked))),
                _ => {}
            }
        }
        out.join("\n") + "\n"
    }

    fn prefixed(marked: &[String]) -> String {
        marked.iter().map(|m| format!(" {m}")).collect()
    }

    fn attributes(tag: &str) -> Vec<(String, String)> {
        let mut attrs = Vec::new();
        let mut rest = tag;
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq]
                .rsplit(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_owned();
            let value_start = eq + 2;
            let value_end = rest[value_start..]
                .find('"')
                .map(|e| value_start + e)
                .unwrap_or(rest.len());
            attrs.push((key, rest[value_start..value_end].to_owned()));
            rest = &rest[(value_end + 1).min(rest.len())..];
        }
        attrs
    }

    /// Text without tags, whitespace collapsed.
    fn text(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn golden_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report.structure.txt")
    }

    /// The page of a fixed run has the golden structure: the same plots, series (with as many
    /// shapes), tables and figures. `UPDATE_GOLDEN=1` rewrites the file after a deliberate change.
    #[test]
    fn structure_matches_the_golden_file() {
        let html = render(&fixture(Scope::Final));
        let got = structure(&html);
        let path = golden_path();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
            if let Some(dir) = std::env::var_os("REPORT_DUMP_DIR") {
                std::fs::write(std::path::Path::new(&dir).join("fixture.html"), &html).unwrap();
            }
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        if got != want {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .enumerate()
                .filter(|(_, (w, g))| w != g)
                .take(10)
                .map(|(i, (w, g))| format!("line {}:\n  want {w}\n  got  {g}", i + 1))
                .collect();
            panic!(
                "the report's structure changed ({} lines golden, {} now); first differences:\n{}\n(UPDATE_GOLDEN=1 rewrites {} after a deliberate change)",
                want.lines().count(),
                got.lines().count(),
                diff.join("\n"),
                path.display()
            );
        }
    }

    #[test]
    fn the_page_is_self_contained() {
        let html = render(&fixture(Scope::Live));
        assert!(html.starts_with("<!DOCTYPE html>"));
        for banned in [
            "<script",
            "@import",
            "url(",
            "<iframe",
            "<img",
            "@font-face",
            "<link rel=\"stylesheet\"",
        ] {
            assert!(!html.contains(banned), "{banned}");
        }
        // The only URL is SVG's namespace name, which is never fetched.
        let urls = html.matches("http://").count() + html.matches("https://").count();
        assert_eq!(
            urls,
            html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
        assert!(html.contains("data-scope=\"live\""));
        // Every series layer is one whole plotters drawing.
        for layer in html.split("<g data-kind=").skip(1) {
            let layer = &layer[..layer.find("</g>").unwrap()];
            assert_eq!(layer.matches("<svg").count(), 1, "{layer}");
            assert_eq!(layer.matches("</svg>").count(), 1);
        }
    }

    #[test]
    fn every_plot_has_both_kinds_in_the_same_colours() {
        let html = render(&fixture(Scope::Final));
        for (plot, series) in [
            ("total-histogram", "total-histogram"),
            ("total-percentiles", "total-percentiles"),
            ("legs", "legs"),
            ("latency-over-time", "p50"),
            ("latency-over-time", "p99"),
            ("rate-over-time", "rate"),
        ] {
            let fig = &html[html.find(&format!("id=\"plot-{plot}\"")).unwrap()..];
            let fig = &fig[..fig.find("</figure>").unwrap()];
            for kind in Kind::ALL {
                let at = fig
                    .find(&format!(
                        "<g data-kind=\"{}\" data-series=\"{series}\"",
                        kind.label()
                    ))
                    .unwrap_or_else(|| panic!("{plot}: no {series} of {kind:?}"));
                let layer = &fig[at..];
                let layer = &layer[..layer.find("</g>").unwrap()];
                assert!(
                    layer.to_lowercase().contains(&css_colour(kind)),
                    "{plot}/{series}/{kind:?} not drawn in its colour"
                );
            }
        }
        // Timeouts and errors are marked where they happened.
        assert!(html.contains("data-kind=\"message\" data-series=\"timeouts\" data-points=\"1\""));
        assert!(html.contains("data-kind=\"method\" data-series=\"errors\" data-points=\"1\""));
    }

    #[test]
    fn one_kind_and_empty_runs_say_no_data() {
        let mut one = fixture(Scope::Final);
        one.kinds = vec![Kind::Method];
        one.figures.retain(|f| f.kind == Kind::Method);
        one.verdict = None;
        for p in &mut one.intervals {
            p.kinds.retain(|k| k.kind == Kind::Method);
        }
        let html = render(&one);
        for plot in [
            "total-histogram",
            "total-percentiles",
            "legs",
            "latency-over-time",
        ] {
            let fig = &html[html.find(&format!("id=\"plot-{plot}\"")).unwrap()..];
            let fig = &fig[..fig.find("</figure>").unwrap()];
            assert!(fig.contains("data-kind=\"method\""), "{plot}");
            assert!(!fig.contains("<g data-kind=\"message\""), "{plot}");
            assert!(
                fig.contains("data-no-data=\"message\"") && fig.contains("EnableMessage is false"),
                "{plot}: {fig}"
            );
        }
        assert!(html.contains("No verdict: only method is measured"));

        let mut empty = fixture(Scope::Live);
        empty.intervals.clear();
        empty.verdict = IntervalStats::default().verdict(&empty.kinds);
        empty.figures = empty
            .kinds
            .iter()
            .map(|&k| KindFigures::from_stats(k, &KindStats::default()))
            .collect();
        let html = render(&empty);
        assert!(!html.contains("<svg"), "empty axes drawn");
        for kind in ["method", "message"] {
            assert!(html.contains(&format!("No data for {kind} in the latency distribution")));
        }
        assert!(html.contains("the first summary interval has not ended"));
        assert!(html.contains("Too few samples for a verdict"));
    }

    #[test]
    fn buckets_cover_sub_millisecond_to_the_seeds_bins() {
        let edges = histogram_edges_ms();
        assert_eq!(edges.first(), Some(&0.01));
        assert_eq!(edges.last(), Some(&10_000.0));
        assert!(edges.windows(2).all(|w| w[0] < w[1]));
        for s in 1..=10 {
            assert!(edges.contains(&(1000.0 * f64::from(s))) || s % 10 != 0 || s == 10);
        }
        assert_eq!(bucket_of(&edges, 0.001), 0);
        assert_eq!(bucket_of(&edges, 0.01), 0);
        assert_eq!(edges[bucket_of(&edges, 1.0)], 1.0);
        assert_eq!(edges[bucket_of(&edges, 0.99)], 0.7943);
        assert_eq!(bucket_of(&edges, 50_000.0), edges.len() - 1);
        // Every sample lands in exactly one bucket.
        let r = fixture(Scope::Final);
        for f in &r.figures {
            assert_eq!(f.histogram.iter().sum::<u64>(), f.count);
            assert_eq!(f.seed_bins.iter().sum::<u64>(), f.count);
        }
    }
}
