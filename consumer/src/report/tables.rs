//! The page's tables: every figure behind a plot, in HTML with stable ids.

use super::chart::css_colour;
use super::plots::{legs_of, percentile_label, LEGS};
use super::{histogram_edges_ms, per_second, KindFigures, Report, CURVE_QUANTILES};
use crate::kind::Kind;
pub(super) use crate::render::ms;
use crate::stats::{LegStats, BINS};
use std::fmt::Write as _;

pub(super) fn esc(s: &str) -> String {
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

pub(super) fn leg_cells(l: &LegStats) -> [String; 3] {
    let some = |v: f64| (l.count > 0).then_some(v);
    [ms(some(l.min_ms)), ms(l.avg_ms()), ms(some(l.max_ms))]
}

pub(super) struct Table {
    id: &'static str,
    caption: String,
    head: Vec<String>,
    rows: Vec<(Option<Kind>, Vec<String>)>,
}

impl Table {
    pub(super) fn new(id: &'static str, caption: &str, head: &[&str]) -> Self {
        Self {
            id,
            caption: caption.to_owned(),
            head: head.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, kind: Option<Kind>, cells: Vec<String>) {
        self.rows.push((kind, cells));
    }

    pub(super) fn html(&self) -> String {
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

pub(super) fn measured(r: &Report) -> Vec<&KindFigures> {
    Kind::ALL.iter().filter_map(|&k| r.figures(k)).collect()
}

pub(super) fn summary_table(r: &Report) -> Table {
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

pub(super) fn histogram_table(r: &Report) -> Table {
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

pub(super) const SEED_BIN_LABELS: [&str; BINS] = [
    "<1000", "1000", "2000", "3000", "4000", "5000", "6000", "7000", "8000", "9000", ">10000",
];

pub(super) fn seed_bins_table(r: &Report) -> Table {
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

pub(super) fn percentiles_table(r: &Report) -> Table {
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

pub(super) fn legs_table(r: &Report) -> Table {
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

pub(super) fn intervals_table(r: &Report) -> Table {
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

pub(super) fn settings_table(r: &Report) -> Table {
    let mut t = Table::new("settings", "The run's settings", &["setting", "value"]);
    for (k, v) in &r.settings {
        t.row(None, vec![k.clone(), v.clone()]);
    }
    t
}
