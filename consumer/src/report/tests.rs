//! The page of fixed runs: golden structure, self-containment, colours and no-data notes.

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
        sweep: None,
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
