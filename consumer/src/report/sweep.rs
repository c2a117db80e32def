//! A sweep's section of the page: Total's p50 and p99 of both kinds against the rate and against
//! the payload size, one point per step (evenly spaced, labelled with the step's value), each
//! kind's capacity marked by a dashed line in its colour and the crossover by a grey one; the
//! figures behind them in a table. Plain runs have no such section.

use super::chart::{
    colour, err, figure, layered_svg, log_span, ms_axis, no_guides, p50_p99_layers, plot_or_error,
    Frame, Layer, Ticked, FONT, GREY, PLOT_SIZE,
};
use super::tables::{esc, ms, Table};
use crate::kind::Kind;
use crate::sweep::{Capacity, Crossover, Plan, StepResult, Sweep};
use edge::payload::format_size;
use plotters::prelude::*;

/// One step's point of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub kind: Kind,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub count: u64,
    pub skipped: u64,
    pub timeouts: u64,
    pub errors: u64,
}

/// Everything the sweep section shows.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepFigures {
    /// `rate` or `payload`.
    pub axis: &'static str,
    /// The steps' labels (`50/s`, `16KiB`) and their points, in order.
    pub steps: Vec<(String, Vec<SweepPoint>)>,
    /// The held value of the axis not swept (`payload 0`, `rate 50/s`).
    pub held: String,
    /// Rate sweeps: each kind's capacity (step position, if any) and in words.
    pub capacity: Vec<(Kind, Option<usize>, String)>,
    /// The first flip's step position and the crossover in words.
    pub crossover: (Option<usize>, String),
}

impl SweepFigures {
    pub fn of(plan: &Plan, kinds: &[Kind], results: &[StepResult]) -> Self {
        let steps = results
            .iter()
            .map(|r| {
                let points = kinds
                    .iter()
                    .map(|&kind| {
                        let k = r.stats.kind(kind);
                        SweepPoint {
                            kind,
                            p50_ms: k.total_quantile_ms(0.5),
                            p99_ms: k.total_quantile_ms(0.99),
                            count: k.count(),
                            skipped: k.skipped,
                            timeouts: k.timeouts,
                            errors: k.errors,
                        }
                    })
                    .collect();
                (plan.value_label(&r.plan), points)
            })
            .collect();
        let position = |index: usize| results.iter().position(|r| r.plan.index == index);
        let capacity = match plan.sweep {
            Sweep::Rate(_) => kinds
                .iter()
                .filter_map(|&k| {
                    let c = Capacity::of(results, k, plan.p99_bound)?;
                    let at = c
                        .rate()
                        .and_then(|rate| results.iter().position(|r| r.plan.rate == rate));
                    Some((k, at, c.words()))
                })
                .collect(),
            Sweep::Payload(_) => Vec::new(),
        };
        let crossover = (kinds.len() == 2).then(|| Crossover::of(plan, results));
        let held = match (&plan.sweep, plan.steps.first()) {
            (Sweep::Rate(_), Some(s)) => format!("payload {}", format_size(s.payload_bytes)),
            (Sweep::Payload(_), Some(s)) if s.rate > 0.0 => format!("rate {}/s", s.rate),
            _ => "closed loop".into(),
        };
        Self {
            axis: plan.sweep.axis(),
            steps,
            held,
            capacity,
            crossover: crossover
                .map(|c| (c.flips.first().and_then(|(i, _)| position(*i)), c.words))
                .unwrap_or((None, String::new())),
        }
    }

    fn series(&self, kind: Kind, p99: bool) -> Vec<(f64, f64)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, (_, points))| {
                let p = points.iter().find(|p| p.kind == kind)?;
                Some((i as f64, if p99 { p.p99_ms? } else { p.p50_ms? }))
            })
            .collect()
    }
}

/// The section: both plots, the capacity and crossover in words, the table.
pub(super) fn sweep_section(s: &SweepFigures) -> String {
    let mut out = String::from(
        "<section id=\"sweep\">\n<h2>Sweep: latency against rate and payload size</h2>\n",
    );
    for line in s
        .capacity
        .iter()
        .map(|(k, _, words)| format!("Capacity of {}: {words}.", k.label()))
        .chain((!s.crossover.1.is_empty()).then(|| format!("Crossover: {}.", s.crossover.1)))
    {
        out.push_str(&format!(
            "<p class=\"note\" data-sweep-note>{}</p>\n",
            esc(&line)
        ));
    }
    out.push_str("<div class=\"plots\">\n");
    for (axis, id, what) in [
        ("rate", "sweep-rate", "rate"),
        ("payload", "sweep-size", "payload size"),
    ] {
        let caption = format!(
            "Total latency against the {what}: p50 (●, thick) and p99 (▲) per step; dashed: each kind's capacity, grey: the crossover"
        );
        if s.axis == axis {
            out.push_str(&figure(id, &caption, &plot_or_error(sweep_plot(s)), &[]));
        } else {
            let note = format!(
                "<p class=\"note\" data-note=\"not-swept\">This sweep varied the {} at {}; sweep {axis}=… for this plot.</p>\n",
                if s.axis == "rate" { "rate" } else { "payload size" },
                esc(&s.held)
            );
            out.push_str(&figure(id, &caption, "", &[note]));
        }
    }
    out.push_str("</div>\n");
    out.push_str(&sweep_table(s).html());
    out.push_str("</section>\n");
    out
}

fn sweep_plot(s: &SweepFigures) -> Result<String, String> {
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|&k| s.steps.iter().any(|(_, p)| p.iter().any(|p| p.kind == k)))
        .collect();
    let (lo, hi) = log_span(
        kinds
            .iter()
            .flat_map(|&k| s.series(k, false).into_iter().chain(s.series(k, true)))
            .map(|(_, v)| v),
    );
    let n = s.steps.len().max(1);
    let labels: Vec<String> = s.steps.iter().map(|(l, _)| l.clone()).collect();
    let x_fmt = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let frame = Frame {
        size: PLOT_SIZE,
        x: &|| Ticked {
            range: -0.5..n as f64 - 0.5,
            keys: (0..n).map(|i| i as f64).collect(),
        },
        y: &|| (lo..hi).log_scale(),
        x_desc: if s.axis == "rate" {
            "exchanges per second per kind"
        } else {
            "request payload (padding)"
        },
        y_desc: "Total latency",
        x_fmt: &x_fmt,
        y_fmt: &ms_axis,
        guides: &no_guides,
    };
    let mut layers = p50_p99_layers(&kinds, |kind, p99| s.series(kind, p99));
    layers.extend(mark_layers(s, lo, hi));
    layered_svg(&frame, &layers)
}

/// The capacity of each kind (dashed, in its colour) and the crossover (dashed grey), each a
/// vertical line at its step, labelled.
fn mark_layers<'d, X, Y>(s: &SweepFigures, lo: f64, hi: f64) -> Vec<Layer<'d, X, Y>>
where
    X: Ranged<ValueType = f64> + 'd,
    Y: Ranged<ValueType = f64> + 'd,
{
    let mut layers = Vec::new();
    let marks = s
        .capacity
        .iter()
        .filter_map(|(k, at, _)| Some((Some(*k), "capacity", (*at)?, colour(*k))))
        .chain(s.crossover.0.map(|at| (None, "crossover", at, GREY)));
    for (slot, (kind, series, at, c)) in marks.enumerate() {
        // Two kinds with the same capacity: side by side, both visible.
        let x = at as f64 + (slot as f64 - 1.0) * 0.03;
        let label = (FONT, 12).into_font().color(&c);
        layers.push(Layer {
            kind,
            series,
            points: 1,
            draw: Box::new(move |chart| {
                let dashes = (0..12).map(|i| {
                    let f = |j: f64| lo * (hi / lo).powf(j / 12.0);
                    PathElement::new(
                        vec![(x, f(f64::from(i))), (x, f(f64::from(i) + 0.5))],
                        c.stroke_width(2),
                    )
                });
                chart.draw_series(dashes).map_err(err)?;
                // Labels one under another, so marks at one step stay readable.
                let y = hi / 1.25 / 1.7f64.powi(slot as i32);
                chart
                    .draw_series(std::iter::once(Text::new(series, (x, y), label.clone())))
                    .map_err(err)?;
                Ok(())
            }),
        });
    }
    layers
}

fn sweep_table(s: &SweepFigures) -> Table {
    let mut t = Table::new(
        "sweep",
        "Each sweep step's Total percentiles and counts",
        &[
            s.axis, "kind", "count", "timeouts", "errors", "skipped", "p50 ms", "p99 ms",
        ],
    );
    for (label, points) in &s.steps {
        for p in points {
            t.row(
                Some(p.kind),
                vec![
                    label.clone(),
                    p.kind.label().to_owned(),
                    p.count.to_string(),
                    p.timeouts.to_string(),
                    p.errors.to_string(),
                    p.skipped.to_string(),
                    ms(p.p50_ms),
                    ms(p.p99_ms),
                ],
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{render, tests::fixture, Scope};
    use crate::stats::{IntervalStats, Sample};
    use std::time::Duration;

    fn result(index: usize, rate: f64, method_ms: f64, message_ms: f64) -> StepResult {
        let mut stats = IntervalStats::default();
        for i in 0..200 {
            for (kind, ms) in [(Kind::Method, method_ms), (Kind::Message, message_ms)] {
                stats.kind_mut(kind).record(&Sample {
                    c2p_ms: 0.0,
                    p2c_ms: 0.0,
                    total_ms: ms + (i % 10) as f64 * 0.001,
                });
            }
        }
        StepResult {
            plan: crate::sweep::StepPlan {
                index,
                rate,
                payload_bytes: 0,
                size_index: 0,
            },
            reply_bytes: 0,
            verdict: stats.verdict(&[Kind::Message, Kind::Method]),
            stats,
        }
    }

    #[test]
    fn a_rate_sweep_draws_both_kinds_against_the_rate_with_capacity_and_crossover() {
        let plan = Plan::new(
            Sweep::Rate(vec![50.0, 100.0, 200.0]),
            0.0,
            0,
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_millis(50),
        );
        let mut results = vec![
            result(0, 50.0, 1.0, 2.0),
            result(1, 100.0, 3.0, 2.0),
            result(2, 200.0, 3.0, 2.0),
        ];
        results[2].stats.method.skipped = 5;
        let kinds = [Kind::Message, Kind::Method];
        let figures = SweepFigures::of(&plan, &kinds, &results);
        assert_eq!(figures.capacity[1].1, Some(1), "{figures:?}");
        assert_eq!(figures.crossover.0, Some(1), "{figures:?}");
        let mut report = fixture(Scope::Final);
        let plain = render(&report);
        assert!(!plain.contains("id=\"sweep\""));
        report.sweep = Some(figures);
        let html = render(&report);
        let plot = html
            .split("id=\"plot-sweep-rate\"")
            .nth(1)
            .and_then(|s| s.split("</figure>").next())
            .expect("the rate plot");
        for kind in ["method", "message"] {
            for series in ["p50", "p99", "capacity"] {
                let points = if series == "capacity" { 1 } else { 3 };
                assert!(
                    plot.contains(&format!(
                        "data-kind=\"{kind}\" data-series=\"{series}\" data-points=\"{points}\""
                    )),
                    "{kind} {series}"
                );
            }
        }
        assert!(plot.contains("data-series=\"crossover\" data-points=\"1\""));
        assert!(
            html.contains("id=\"plot-sweep-size\"") && html.contains("data-note=\"not-swept\"")
        );
        assert!(html.contains("id=\"table-sweep\""));
        assert!(
            html.contains("a message is faster from 100/s up"),
            "crossover words"
        );
    }
}
