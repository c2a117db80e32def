//! The verdict: its headline, the difference of the medians against zero, and its table.

use super::chart::{
    colour, err, figure, layered_svg, plot_or_error, Chart, DrawResult, Frame, Layer, VERDICT_SIZE,
};
use super::tables::{esc, Table};
use super::Report;
use crate::kind::Kind;
use crate::verdict::{Faster, Verdict, MIN_SAMPLES};
use plotters::prelude::*;
use std::fmt::Write as _;

pub(super) fn verdict_headline(v: &Verdict) -> (String, &'static str) {
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

pub(super) fn verdict_section(r: &Report) -> String {
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
pub(super) fn verdict_plot(d: f64, lo: f64, hi: f64, faster: &str) -> String {
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

pub(super) fn verdict_table(r: &Report) -> Option<Table> {
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
