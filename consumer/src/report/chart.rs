//! The plotters side of the page: one colour per kind, and charts drawn one series per layer.

use super::tables::esc;
use super::{round_sig, Report};
use crate::kind::Kind;
use plotters::coord::ranged1d::{AsRangedCoord, DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;

// Colours: one per kind, the same in every plot, table and legend.

pub(super) const METHOD_RGB: (u8, u8, u8) = (0x00, 0x72, 0xb2); // Okabe–Ito blue
pub(super) const MESSAGE_RGB: (u8, u8, u8) = (0xd5, 0x5e, 0x00); // Okabe–Ito vermillion

pub(super) fn rgb(kind: Kind) -> (u8, u8, u8) {
    match kind {
        Kind::Method => METHOD_RGB,
        Kind::Message => MESSAGE_RGB,
    }
}

pub(super) fn colour(kind: Kind) -> RGBColor {
    let (r, g, b) = rgb(kind);
    RGBColor(r, g, b)
}

pub(super) fn css_colour(kind: Kind) -> String {
    let (r, g, b) = rgb(kind);
    format!("#{r:02x}{g:02x}{b:02x}")
}

pub(super) const GREY: RGBColor = RGBColor(0x88, 0x88, 0x88);
pub(super) const FONT: &str = "sans-serif";

// ---------------------------------------------------------------------------------------------
// Plots: each series drawn by plotters into its own layer of the same chart.

pub(super) const PLOT_SIZE: (u32, u32) = (620, 330);
/// The verdict's strip: one interval against zero.
pub(super) const VERDICT_SIZE: (u32, u32) = (620, 130);

pub(super) type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;
pub(super) type DrawResult = Result<(), String>;
/// Draws one series (or the axes' guides) on a chart.
pub(super) type DrawFn<'d, X, Y> = dyn Fn(&mut Chart<'_, '_, X, Y>) -> DrawResult + 'd;

pub(super) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One series' layer: its attributes on the wrapping `<g>`, and how plotters draws it.
pub(super) struct Layer<'d, X: Ranged, Y: Ranged> {
    pub(super) kind: Option<Kind>,
    pub(super) series: &'static str,
    pub(super) points: usize,
    pub(super) draw: Box<DrawFn<'d, X, Y>>,
}

/// Each kind's p50 (thick line, dots) and p99 (thin line, triangles) as layers, from
/// `series(kind, p99)`: the over-time and the sweep plots draw their latencies alike.
pub(super) fn p50_p99_layers<'d, X, Y>(
    kinds: &[Kind],
    series: impl Fn(Kind, bool) -> Vec<(f64, f64)>,
) -> Vec<Layer<'d, X, Y>>
where
    X: Ranged<ValueType = f64> + 'd,
    Y: Ranged<ValueType = f64> + 'd,
{
    let mut layers = Vec::new();
    for &kind in kinds {
        for p99 in [false, true] {
            let points = series(kind, p99);
            let c = colour(kind);
            layers.push(Layer {
                kind: Some(kind),
                series: if p99 { "p99" } else { "p50" },
                points: points.len(),
                draw: Box::new(move |chart: &mut Chart<'_, '_, X, Y>| {
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
    layers
}

/// The chart's frame: how its axes are built and labelled.
pub(super) struct Frame<'f, XR: AsRangedCoord, YR: AsRangedCoord> {
    pub(super) size: (u32, u32),
    /// The axes' ranges, made anew for every layer (plotters' ranges are not all `Clone`).
    pub(super) x: &'f dyn Fn() -> XR,
    pub(super) y: &'f dyn Fn() -> YR,
    pub(super) x_desc: &'f str,
    pub(super) y_desc: &'f str,
    pub(super) x_fmt: &'f dyn Fn(&XR::Value) -> String,
    pub(super) y_fmt: &'f dyn Fn(&YR::Value) -> String,
    /// Extra reference lines drawn with the axes (e.g. the seed's 1-second bins).
    pub(super) guides: &'f DrawFn<'f, XR::CoordDescType, YR::CoordDescType>,
}

pub(super) fn build<'a, 'b, XR, YR>(
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
pub(super) fn layered_svg<XR, YR>(
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
pub(super) struct Ticked {
    pub(super) range: std::ops::Range<f64>,
    pub(super) keys: Vec<f64>,
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

pub(super) fn no_guides<X: Ranged, Y: Ranged>(_: &mut Chart<'_, '_, X, Y>) -> DrawResult {
    Ok(())
}

/// Axis labels in ms, on log axes: 10 µs, 0.1 ms, 1 ms, … 1 s, 10 s.
pub(super) fn ms_axis(v: &f64) -> String {
    let v = *v;
    if v >= 1000.0 {
        format!("{} s", trim(v / 1000.0))
    } else if v < 0.1 {
        format!("{} µs", trim(v * 1000.0))
    } else {
        format!("{} ms", trim(v))
    }
}

pub(super) fn trim(v: f64) -> String {
    let s = format!("{:.3}", round_sig(v, 3));
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A log range that covers `values` (ms), widened to whole decades; values at or below zero
/// (a cross-clock leg can read negative) are drawn at the floor.
pub(super) fn log_span(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
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
pub(super) const LOG_FLOOR_MS: f64 = 0.001;

pub(super) fn figure(id: &str, caption: &str, body: &str, notes: &[String]) -> String {
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
pub(super) fn no_data_notes(r: &Report, what: &str) -> Vec<String> {
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

pub(super) fn plot_or_error(svg: Result<String, String>) -> String {
    svg.unwrap_or_else(|e| format!("<p class=\"plot-error\">plot failed: {}</p>\n", esc(&e)))
}
