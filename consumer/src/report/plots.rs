//! The page's plots: distribution, percentiles, legs, and latency and rate over time.

use super::chart::{
    colour, err, figure, layered_svg, log_span, ms_axis, no_data_notes, no_guides, p50_p99_layers,
    plot_or_error, trim, Chart, DrawResult, Frame, Layer, Ticked, FONT, GREY, LOG_FLOOR_MS,
    PLOT_SIZE,
};
use super::{
    histogram_edges_ms, IntervalKind, KindFigures, Report, HISTOGRAM_DECADES, OVERFLOW_DRAWN_TO_MS,
};
use crate::kind::Kind;
use crate::stats::LegStats;
use plotters::prelude::*;

pub(super) fn histogram_plot(r: &Report) -> String {
    let kinds = r.with_samples();
    let notes = no_data_notes(r, "in the latency distribution");
    let caption = "Total latency distribution: share of each kind's exchanges per bucket \
                   (10 per decade, log scale; grey lines: the seed's 1-second bins)";
    if kinds.is_empty() {
        return figure("total-histogram", caption, "", &notes);
    }
    let edges = histogram_edges_ms();
    let top = kinds
        .iter()
        .flat_map(|f| f.histogram.iter().map(|&n| share(f, n)))
        .fold(0.0f64, f64::max);
    let decades: Vec<f64> = (HISTOGRAM_DECADES.0..=HISTOGRAM_DECADES.1)
        .map(|d| 10f64.powi(d))
        .collect();
    let guides = |chart: &mut Chart<'_, '_, _, _>| seed_bin_lines(chart, top);
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
    let layers: Vec<Layer<'_, _, _>> = kinds
        .iter()
        .enumerate()
        .map(|(slot, f)| histogram_layer(f, slot, kinds.len(), &edges))
        .collect();
    figure(
        "total-histogram",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &notes,
    )
}

/// Percent of the kind's exchanges.
fn share(f: &KindFigures, n: u64) -> f64 {
    100.0 * n as f64 / f.count.max(1) as f64
}

/// The seed's 1-second bins, as grey lines up to `top` (%).
fn seed_bin_lines<X, Y>(chart: &mut Chart<'_, '_, X, Y>, top: f64) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series((1..=10).map(|s| {
            let x = f64::from(s) * 1000.0;
            PathElement::new(vec![(x, 0.0), (x, top * 1.1)], GREY.mix(0.5))
        }))
        .map_err(err)?;
    Ok(())
}

/// One kind's bars, the `slot`th of `n` side by side within each bucket (in log space).
fn histogram_layer<'d, X, Y>(
    f: &KindFigures,
    slot: usize,
    n: usize,
    edges: &[f64],
) -> Layer<'d, X, Y>
where
    X: Ranged<ValueType = f64> + 'd,
    Y: Ranged<ValueType = f64> + 'd,
{
    let upper = |i: usize| edges.get(i + 1).copied().unwrap_or(OVERFLOW_DRAWN_TO_MS);
    let bars: Vec<(f64, f64, f64)> = f
        .histogram
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(i, &c)| {
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
}

/// Position of quantile `q` on the percentile axis: -log10(1 - q), so p90, p99 and p99.9 are
/// evenly spaced.
pub(super) fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-9).log10()
}

pub(super) fn percentile_label(q: f64) -> String {
    let p = 100.0 * q;
    let s = format!("{p:.3}");
    format!("p{}", s.trim_end_matches('0').trim_end_matches('.'))
}

pub(super) fn percentile_plot(r: &Report) -> String {
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

pub(super) const LEGS: [&str; 3] = ["C->P", "P->C", "Total"];

pub(super) fn legs_of(f: &KindFigures) -> [&LegStats; 3] {
    [&f.c2p, &f.p2c, &f.total]
}

pub(super) fn legs_plot(r: &Report) -> String {
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
        .map(|(slot, f)| legs_layer(f, (slot as f64 - (n - 1.0) / 2.0) * 0.22))
        .collect();
    figure(
        "legs",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &notes,
    )
}

/// One kind's whiskers (min to max, the average a dot), `offset` beside each leg's tick.
fn legs_layer<'d, X, Y>(f: &KindFigures, offset: f64) -> Layer<'d, X, Y>
where
    X: Ranged<ValueType = f64> + 'd,
    Y: Ranged<ValueType = f64> + 'd,
{
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
            for &whisker in &whiskers {
                draw_whisker(chart, c, whisker)?;
            }
            Ok(())
        }),
    }
}

/// A vertical line from `min` to `max` at `x` with a cap at each end, and a dot at `avg`.
fn draw_whisker<X, Y>(
    chart: &mut Chart<'_, '_, X, Y>,
    c: RGBColor,
    (x, min, avg, max): (f64, f64, f64, f64),
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series([
            PathElement::new(vec![(x, min), (x, max)], c.stroke_width(2)),
            PathElement::new(vec![(x - 0.06, min), (x + 0.06, min)], c.stroke_width(2)),
            PathElement::new(vec![(x - 0.06, max), (x + 0.06, max)], c.stroke_width(2)),
        ])
        .map_err(err)?;
    chart
        .draw_series([Circle::new((x, avg), 5, c.filled())])
        .map_err(err)?;
    Ok(())
}

pub(super) fn no_intervals_note() -> Vec<String> {
    vec!["<p class=\"no-data\" data-no-data=\"intervals\">No data over time yet: the first summary interval has not ended.</p>\n".to_owned()]
}

pub(super) fn time_span(r: &Report) -> f64 {
    r.intervals
        .iter()
        .map(|p| p.end_s)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.05
}

pub(super) fn seconds_axis(v: &f64) -> String {
    format!("{} s", trim(*v))
}

pub(super) fn latency_over_time_plot(r: &Report) -> String {
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
    let layers = p50_p99_layers(&kinds, series);
    figure(
        "latency-over-time",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &notes,
    )
}

pub(super) fn rate_over_time_plot(r: &Report) -> String {
    let caption = "Successful exchanges per second per summary interval; intervals with \
                   timeouts (▲) or errors (✕) are marked along the top with their count";
    if r.intervals.is_empty() {
        return figure("rate-over-time", caption, "", &no_intervals_note());
    }
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| r.kinds.contains(k))
        .collect();
    let top = kinds
        .iter()
        .flat_map(|&k| rates(r, k))
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
        layers.push(rate_layer(kind, rates(r, kind)));
        // Each kind a little to its own side of the interval's end, so both stay visible.
        let dx = (slot as f64 - 0.5) * span * 0.012;
        for (series, row) in [("timeouts", 0.94), ("errors", 0.86)] {
            let marks = failures(r, kind, series);
            layers.push(marks_layer(kind, series, marks, (dx, y_top * row)));
        }
    }
    figure(
        "rate-over-time",
        caption,
        &plot_or_error(layered_svg(&frame, &layers)),
        &no_failures_note(r),
    )
}

/// `kind`'s successful exchanges per second, at each interval's end.
fn rates(r: &Report, kind: Kind) -> Vec<(f64, f64)> {
    r.intervals
        .iter()
        .filter_map(|p| p.kind(kind).map(|k| (p.end_s, p.rate(k))))
        .collect()
}

/// The intervals in which `kind` had `series` (timeouts or errors), with how many.
fn failures(r: &Report, kind: Kind, series: &str) -> Vec<(f64, u64)> {
    let count = |k: &IntervalKind| {
        if series == "timeouts" {
            k.timeouts
        } else {
            k.errors
        }
    };
    r.intervals
        .iter()
        .filter_map(|p| p.kind(kind).map(|k| (p.end_s, count(k))))
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// One kind's rate: a line with a dot per interval.
fn rate_layer<'d, X, Y>(kind: Kind, rate: Vec<(f64, f64)>) -> Layer<'d, X, Y>
where
    X: Ranged<ValueType = f64> + 'd,
    Y: Ranged<ValueType = f64> + 'd,
{
    let c = colour(kind);
    Layer {
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
    }
}

/// One kind's timeouts (▲) or errors (✕) with their count, at the intervals' ends shifted by
/// `dx`, at height `y`.
fn marks_layer<'d, X, Y>(
    kind: Kind,
    series: &'static str,
    marks: Vec<(f64, u64)>,
    (dx, y): (f64, f64),
) -> Layer<'d, X, Y>
where
    X: Ranged<ValueType = f64> + 'd,
    Y: Ranged<ValueType = f64> + 'd,
{
    let c = colour(kind);
    let label = (FONT, 12).into_font().color(&c);
    Layer {
        kind: Some(kind),
        series,
        points: marks.len(),
        draw: Box::new(move |chart| {
            let at = |x: f64| EmptyElement::at((x + dx, y));
            let count = |n: u64| Text::new(n.to_string(), (7, -6), label.clone());
            if series == "timeouts" {
                chart
                    .draw_series(marks.iter().map(|&(x, n)| {
                        at(x) + TriangleMarker::new((0, 0), 6, c.filled()) + count(n)
                    }))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(
                        marks.iter().map(|&(x, n)| {
                            at(x) + Cross::new((0, 0), 5, c.stroke_width(3)) + count(n)
                        }),
                    )
                    .map_err(err)?;
            }
            Ok(())
        }),
    }
}

/// Says so when no interval had a timeout or an error (the plot has no marks then).
fn no_failures_note(r: &Report) -> Vec<String> {
    let failures: u64 = r
        .intervals
        .iter()
        .flat_map(|p| p.kinds.iter().map(|k| k.timeouts + k.errors))
        .sum();
    let mut notes = Vec::new();
    if failures == 0 {
        notes.push("<p class=\"note\" data-note=\"no-failures\">No timeouts or errors in any interval.</p>\n".to_owned());
    }
    notes
}
