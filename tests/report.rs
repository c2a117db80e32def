//! The HTML report in a real browser (issue 12): the local run with `--report FILE`, its live
//! `GET /report` during the run and the file written at exit, each opened in headless Chromium
//! over the DevTools protocol. Each page must load nothing but itself (no request to anywhere
//! else, favicon included), log no console error, render both kinds' series in every plot, and
//! make a screenshot that is not blank and shows both kinds' colours.
//!
//! `UPDATE_REPORT_PNG=1` also saves the final page's screenshot as docs/report.png (the README's).

use std::collections::BTreeSet;
use std::time::Duration;
use test_support::*;

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 2400;
/// The kinds' colours in the report (consumer/src/report.rs).
const METHOD_RGB: [u8; 3] = [0x00, 0x72, 0xb2];
const MESSAGE_RGB: [u8; 3] = [0xd5, 0x5e, 0x00];

/// Every plot with its series layers (kind, series, points, rendered width and height), the
/// "no data" notes, and the kinds in the summary table, as the browser sees them.
const PROBE: &str = r#"({
  plots: Array.from(document.querySelectorAll('figure.plot')).map(f => ({
    id: f.id,
    series: Array.from(f.querySelectorAll('g[data-series]')).map(g => {
      const r = g.getBoundingClientRect();
      return { kind: g.dataset.kind || null, series: g.dataset.series,
               points: Number(g.dataset.points), w: r.width, h: r.height };
    }),
    noData: Array.from(f.querySelectorAll('[data-no-data]')).map(p => p.dataset.noData),
  })),
  summary: Array.from(document.querySelectorAll('#table-summary tr[data-kind]')).map(r => r.dataset.kind),
  intervals: document.querySelectorAll('#table-intervals tr[data-kind]').length,
  scope: document.querySelector('#report-header').dataset.scope,
  faster: document.querySelector('#verdict').dataset.faster,
  height: document.documentElement.scrollHeight,
})"#;

/// Distinct colours, pixels of each kind's colour, and the share of pixels that are not the
/// page's background.
fn pixels(png: &[u8]) -> (usize, usize, usize, f64) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    assert_eq!(
        (info.width, info.height),
        (WIDTH, HEIGHT),
        "screenshot size"
    );
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let mut colours = BTreeSet::new();
    let (mut method, mut message, mut background) = (0, 0, 0);
    for px in buf[..info.buffer_size()].chunks_exact(channels) {
        let rgb = [px[0], px[1], px[2]];
        colours.insert(rgb);
        match rgb {
            METHOD_RGB => method += 1,
            MESSAGE_RGB => message += 1,
            [0xfa, 0xfa, 0xfa] => background += 1,
            _ => {}
        }
    }
    let total = (info.width * info.height) as f64;
    (
        colours.len(),
        method,
        message,
        1.0 - background as f64 / total,
    )
}

/// The checks every report page must pass in the browser.
fn check_visit(what: &str, url: &str, visit: &PageVisit, scope: &str) {
    assert_eq!(
        visit.requests,
        vec![url.to_owned()],
        "{what}: the page must load nothing but itself"
    );
    assert!(
        visit.errors.is_empty(),
        "{what}: console errors: {:#?}",
        visit.errors
    );
    let p = &visit.probe;
    assert_eq!(p["scope"], scope, "{what}: {p:#}");
    assert_eq!(
        p["summary"],
        serde_json::json!(["message", "method"]),
        "{what}"
    );
    for plot in [
        "plot-total-histogram",
        "plot-total-percentiles",
        "plot-legs",
        "plot-latency-over-time",
        "plot-rate-over-time",
    ] {
        let fig = p["plots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == plot)
            .unwrap_or_else(|| panic!("{what}: no {plot}: {p:#}"));
        assert_eq!(
            fig["noData"],
            serde_json::json!([]),
            "{what}: {plot}: {fig:#}"
        );
        for kind in ["method", "message"] {
            let drawn: Vec<&serde_json::Value> = fig["series"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["kind"] == kind && s["points"].as_u64().unwrap_or(0) > 0)
                .collect();
            assert!(
                !drawn.is_empty(),
                "{what}: {plot} has no {kind} series: {fig:#}"
            );
            for s in drawn {
                assert!(
                    s["w"].as_f64().unwrap_or(0.0) > 0.0 && s["h"].as_f64().unwrap_or(0.0) > 0.0,
                    "{what}: {plot}: {kind} series not rendered: {s}"
                );
            }
        }
    }
    assert!(
        matches!(p["faster"].as_str(), Some("method" | "message" | "none")),
        "{what}: no verdict: {p:#}"
    );
    for kind in ["method", "message"] {
        assert!(
            visit.dom.contains(&format!(
                "data-kind=\"{kind}\" data-series=\"total-histogram\""
            )),
            "{what}: rendered DOM lacks the {kind} histogram"
        );
    }
    let (colours, method, message, ink) = pixels(&visit.png);
    assert!(
        colours >= 32,
        "{what}: screenshot has {colours} colours: blank?"
    );
    assert!(
        ink > 0.05,
        "{what}: only {:.1}% of the screenshot is not background",
        ink * 100.0
    );
    assert!(
        method >= 100 && message >= 100,
        "{what}: kind colours in the screenshot: method {method} px, message {message} px"
    );
}

#[test]
fn the_report_opens_in_chromium_live_and_at_exit() {
    // The browser starts while the run does (both take a few seconds on this machine).
    let mut browser = Browser::launch("report", WIDTH, HEIGHT);
    let dir = tempdir("report");
    let file = dir.join("report.html");
    let mut cmd = local_run_command(
        &dir.join("state"),
        &["--summary-interval", "2s", "--duration", "8s"],
    );
    cmd.arg("--report").arg(&file);
    let mut run = Proc::spawn("local-run", cmd);
    let line = run.wait_for_line(Duration::from_secs(60), |l| l.contains("consumer http://"));
    let consumer = line
        .split("consumer http://")
        .nth(1)
        .and_then(|s| s.split("/metrics").next())
        .unwrap_or_else(|| panic!("no consumer address in {line:?}"))
        .to_owned();
    // The live page once an interval has been printed, while the run goes on.
    run.wait_for_line(Duration::from_secs(30), |l| {
        l.contains("items in 2 seconds")
    });
    let live_html = http_get(&consumer, "/report", "text/html");
    assert!(
        live_html.starts_with("<!DOCTYPE html>") && live_html.contains("data-scope=\"live\""),
        "{live_html:.300}"
    );
    let live_url = format!("http://{consumer}/report");
    let live = browser.visit(&live_url, WIDTH, HEIGHT, PROBE);
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the run ended before the live page was checked: lengthen --duration"
    );
    std::fs::write(dir.join("live.png"), &live.png).unwrap();
    check_visit("GET /report", &live_url, &live, "live");

    let status = run.wait(Duration::from_secs(90));
    let out = run.output();
    assert!(status.success(), "exit {status}:\n{out}");
    assert!(out.contains("report written to"), "{out}");
    let html =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}\n{out}", file.display()));
    assert!(html.contains("data-scope=\"run\""));
    let url = format!("file://{}", file.display());
    let visit = browser.visit(&url, WIDTH, HEIGHT, PROBE);
    std::fs::write(dir.join("report.png"), &visit.png).unwrap();
    check_visit("--report", &url, &visit, "run");
    // 8 s at 2 s intervals: at least three whole intervals of both kinds.
    assert!(
        visit.probe["intervals"].as_u64().unwrap_or(0) >= 6,
        "{:#}",
        visit.probe
    );
    if std::env::var_os("UPDATE_REPORT_PNG").is_some() {
        let docs = repo().join("docs/report.png");
        std::fs::write(&docs, &visit.png).unwrap();
        eprintln!("wrote {}", docs.display());
    }
}

/// A sweep's plots: both kinds' p50 and p99 per step, the capacity marks, and the axis not swept
/// explained rather than drawn.
const SWEEP_PROBE: &str = r#"({
  plots: Array.from(document.querySelectorAll('#sweep figure.plot')).map(f => ({
    id: f.id,
    series: Array.from(f.querySelectorAll('g[data-series]')).map(g => {
      const r = g.getBoundingClientRect();
      return { kind: g.dataset.kind || null, series: g.dataset.series,
               points: Number(g.dataset.points), w: r.width, h: r.height };
    }),
    notes: Array.from(f.querySelectorAll('[data-note]')).map(p => p.dataset.note),
  })),
  rows: document.querySelectorAll('#table-sweep tr[data-kind]').length,
  words: Array.from(document.querySelectorAll('#sweep [data-sweep-note]')).map(p => p.textContent),
})"#;

#[test]
fn a_sweep_report_plots_latency_against_the_rate_with_the_capacity() {
    let mut browser = Browser::launch("report-sweep", WIDTH, HEIGHT);
    let dir = tempdir("report-sweep");
    let file = dir.join("sweep.html");
    let mut cmd = local_run_command(
        &dir.join("state"),
        // A lenient bound and room in flight: a pause of this shared machine must not take the
        // capacity marks away (tests/workload.rs checks the capacity itself).
        &[
            "--sweep",
            "rate=20,50",
            "--step",
            "2s",
            "--warmup",
            "1s",
            "--capacity-p99",
            "20s",
            "--max-in-flight",
            "1000",
        ],
    );
    cmd.arg("--report").arg(&file);
    let mut run = Proc::spawn("local-run", cmd);
    let status = run.wait(Duration::from_secs(90));
    let out = run.output();
    assert!(status.success(), "exit {status}:\n{out}");
    let url = format!("file://{}", file.display());
    let visit = browser.visit(&url, WIDTH, HEIGHT, SWEEP_PROBE);
    std::fs::write(dir.join("sweep.png"), &visit.png).unwrap();
    assert_eq!(
        visit.requests,
        vec![url.clone()],
        "the page loads nothing but itself"
    );
    assert!(
        visit.errors.is_empty(),
        "console errors: {:#?}",
        visit.errors
    );
    let p = &visit.probe;
    let plot = |id: &str| {
        p["plots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {p:#}"))
            .clone()
    };
    let rate = plot("plot-sweep-rate");
    for kind in ["method", "message"] {
        for (series, points) in [("p50", 2), ("p99", 2), ("capacity", 1)] {
            let s = rate["series"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["kind"] == kind && s["series"] == series)
                .unwrap_or_else(|| panic!("no {kind} {series}: {rate:#}"));
            assert_eq!(s["points"], points, "{kind} {series}: {s}");
            assert!(
                s["w"].as_f64().unwrap_or(0.0) > 0.0 && s["h"].as_f64().unwrap_or(0.0) > 0.0,
                "{kind} {series} not rendered: {s}"
            );
        }
    }
    assert_eq!(
        plot("plot-sweep-size")["notes"],
        serde_json::json!(["not-swept"])
    );
    assert_eq!(p["rows"], 4, "{p:#}");
    let words = p["words"].to_string();
    assert!(
        words.contains("Capacity of method") && words.contains("Crossover"),
        "{words}"
    );
}
