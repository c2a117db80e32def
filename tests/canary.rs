//! The always-on canary (issue 10, items 1–3): the open-loop schedule of `--rate`, percentiles
//! and the verdict in the JSON summaries, and coordinated omission — a producer paused for 2 s is
//! felt by every exchange the open loop had scheduled meanwhile, by one in the closed loop.

use serde_json::Value;
use std::time::{Duration, Instant};
use test_support::*;

const PERCENTILES: [&str; 5] = [
    "total_p50_ms",
    "total_p90_ms",
    "total_p99_ms",
    "total_p999_ms",
    "total_max_ms",
];

/// `method-vs-message <args>` (the local run, as `cargo run --release -- <args>`) on free ports,
/// for 20 s with 5 s JSON summaries; returns the JSON lines (intervals, then the whole run).
fn local_run(name: &str, extra: &[&str]) -> (Vec<Value>, String) {
    let state = tempdir(name);
    // Free ports, so no FixedPorts lock is needed.
    let mut cmd = local_run_command(
        &state,
        &[
            "--summary-interval",
            "5s",
            "--duration",
            "20s",
            "--summary-format",
            "json",
        ],
    );
    cmd.args(extra);
    let mut run = Proc::spawn(name, cmd);
    let status = run.wait(Duration::from_secs(90));
    let out = run.output();
    assert!(status.success(), "exit {status}:\n{out}");
    assert!(!out.contains("panicked"), "{out}");
    let lines = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (lines, out)
}

fn scope<'a>(lines: &'a [Value], which: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["scope"] == which).collect()
}

fn assert_percentiles(s: &Value, kind: &str, out: &str) {
    let k = &s["kinds"][kind];
    let values: Vec<f64> = PERCENTILES
        .iter()
        .map(|f| {
            k[f].as_f64()
                .unwrap_or_else(|| panic!("{kind}.{f} missing:\n{s}\n{out}"))
        })
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]) && values[0] > 0.0,
        "{kind}: percentiles not ordered {values:?}"
    );
}

fn assert_verdict(s: &Value, out: &str) {
    let v = &s["verdict"];
    assert!(
        ["method", "message", "none"].contains(&v["faster"].as_str().unwrap_or("")),
        "{s}\n{out}"
    );
    let d = v["median_diff_ms"].as_f64().expect("median_diff_ms");
    let ci = v["ci95_ms"].as_array().expect("ci95_ms");
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(lo <= d && d <= hi, "{v}");
    let faster = match () {
        _ if lo > 0.0 => "message",
        _ if hi < 0.0 => "method",
        _ => "none",
    };
    assert_eq!(v["faster"], faster, "{v}");
    for kind in ["method", "message"] {
        let n = v["n"][kind].as_u64().unwrap();
        assert!(
            n >= 20 && n <= count(s, kind, "count").min(2048),
            "{kind} n {n}: {s}"
        );
    }
}

#[test]
fn an_open_loop_local_run_keeps_the_rate_and_reports_percentiles_and_a_verdict() {
    let (lines, out) = local_run("canary-open", &["--rate", "50"]);
    let intervals = scope(&lines, "interval");
    let full: Vec<&&Value> = intervals
        .iter()
        .filter(|s| s["interval_seconds"] == 5.0)
        .collect();
    assert!(full.len() >= 3, "expected 3 full intervals:\n{out}");
    for s in &full {
        assert_eq!(s["schedule"], "open", "{s}");
        assert_eq!(s["rate"], 50.0, "{s}");
        assert_eq!(s["max_in_flight"], 100, "{s}");
        for kind in ["method", "message"] {
            // 50/s for 5 s: 250 ± 10 %.
            let n = count(s, kind, "count");
            assert!((225..=275).contains(&n), "{kind}: {n} exchanges:\n{s}");
            assert_eq!(count(s, kind, "skipped"), 0, "{s}");
            assert_percentiles(s, kind, &out);
        }
        assert_verdict(s, &out);
    }
    // The whole run at exit: 20 s at 50/s, and its own verdict.
    let run = scope(&lines, "run");
    assert_eq!(run.len(), 1, "{out}");
    let run = run[0];
    assert_eq!(run["schedule"], "open");
    for kind in ["method", "message"] {
        let n = count(run, kind, "count");
        assert!((900..=1100).contains(&n), "{kind}: {n} in the run:\n{run}");
        assert_percentiles(run, kind, &out);
    }
    assert_verdict(run, &out);
    eprintln!("open loop, an interval: {}", full[1]);
    eprintln!("open loop, the whole run: {run}");
}

#[test]
fn without_rate_the_local_run_keeps_the_closed_loop() {
    let (lines, out) = local_run("canary-closed", &[]);
    let intervals = scope(&lines, "interval");
    let full: Vec<&&Value> = intervals
        .iter()
        .filter(|s| s["interval_seconds"] == 5.0)
        .collect();
    assert!(full.len() >= 3, "{out}");
    for s in &full {
        assert_eq!(s["schedule"], "closed", "{s}");
        assert_eq!(s["rate"], 0.0, "{s}");
        assert!(s["max_in_flight"].is_null(), "{s}");
        for kind in ["method", "message"] {
            // Flat out, not 50/s: far more than an open loop's 250.
            assert!(count(s, kind, "count") > 500, "{kind}:\n{s}");
            assert_eq!(count(s, kind, "skipped"), 0, "{s}");
            assert_percentiles(s, kind, &out);
        }
        assert_verdict(s, &out);
    }
    let run = scope(&lines, "run");
    assert_eq!(run.len(), 1, "{out}");
    assert_verdict(run[0], &out);
    eprintln!("closed loop, an interval: {}", full[1]);
}

/// One figure from the consumer's /metrics, which must be there.
fn required(text: &str, name: &str, labels: &[&str]) -> f64 {
    metric_sum(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
}

/// Per kind: exchanges by outcome, and how many took ≥ 1 s or ≥ 100 ms (from the histogram).
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    ok: f64,
    timeout: f64,
    error: f64,
    skipped: f64,
    over_1s: f64,
    over_100ms: f64,
}

impl Figures {
    fn read(text: &str, kind: &str) -> Self {
        let k = format!("kind=\"{kind}\"");
        let outcome = |o: &str| {
            required(
                text,
                "iotedge_exchanges_total",
                &[&k, &format!("outcome=\"{o}\"")],
            )
        };
        let total = ["leg=\"total\"", &k];
        let count = required(text, "iotedge_exchange_latency_seconds_count", &total);
        // The text format writes whole bounds as `le="1"`, OpenMetrics as `le="1.0"`.
        let le = |b: f64| {
            [format!("le=\"{b}\""), format!("le=\"{b:?}\"")]
                .iter()
                .find_map(|bound| {
                    metric_sum(
                        text,
                        "iotedge_exchange_latency_seconds_bucket",
                        &[total[0], total[1], bound],
                    )
                })
                .unwrap_or_else(|| panic!("no bucket {b} in:\n{text}"))
        };
        Figures {
            ok: outcome("ok"),
            timeout: outcome("timeout"),
            // Every failure class but the timeout (iotedge_exchanges_total's outcomes).
            error: ["hub_refused", "transport", "tls", "malformed"]
                .into_iter()
                .map(outcome)
                .sum(),
            skipped: outcome("skipped"),
            over_1s: count - le(1.0),
            over_100ms: count - le(0.1),
        }
    }

    fn minus(self, before: Figures) -> Figures {
        Figures {
            ok: self.ok - before.ok,
            timeout: self.timeout - before.timeout,
            error: self.error - before.error,
            skipped: self.skipped - before.skipped,
            over_1s: self.over_1s - before.over_1s,
            over_100ms: self.over_100ms - before.over_100ms,
        }
    }

    fn all(self) -> f64 {
        self.ok + self.timeout + self.error + self.skipped
    }
}

struct Pause {
    method: Figures,
    message: Figures,
    /// Between the two readings.
    seconds: f64,
    summaries: Vec<Value>,
}

/// Runs a consumer with `env` against `hub`/`producer`, pauses the producer (SIGSTOP) for 2 s once
/// the consumer measures steadily, and returns what the consumer counted from just before the
/// pause until the backlog has cleared.
fn pause_the_producer(hub: &Hub, producer: &Proc, name: &str, env: &[(&str, &str)]) -> Pause {
    let addr_file = hub.state.join(format!("{name}.metrics"));
    let mut e = hub.module_env("consumer");
    e.extend([
        ("SUMMARY_INTERVAL".to_owned(), "2s".to_owned()),
        ("SUMMARY_FORMAT".into(), "json".into()),
        ("METRICS_ADDR_FILE".into(), addr_file.display().to_string()),
    ]);
    e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut consumer = module("consumer", &e);
    consumer.name = name.to_owned();
    // Two intervals with both kinds measured: connected and past the start-up.
    wait_for_summary(&mut consumer, Duration::from_secs(30), |s| {
        count(s, "method", "count") > 0 && count(s, "message", "count") > 0
    });
    let seen = summaries(&consumer).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while summaries(&consumer).len() <= seen {
        assert!(Instant::now() < deadline, "{}", consumer.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    let addr = std::fs::read_to_string(&addr_file).unwrap();
    let scrape = || http_get(addr.trim(), "/metrics", "text/plain");

    let before = scrape();
    let t0 = Instant::now();
    producer.signal("STOP");
    std::thread::sleep(Duration::from_secs(2));
    producer.signal("CONT");
    // The backlog clears in well under a second; give it four.
    std::thread::sleep(Duration::from_secs(4));
    let after = scrape();
    let seconds = t0.elapsed().as_secs_f64();
    let summaries_seen = summaries(&consumer);
    assert!(consumer.terminate().success(), "{}", consumer.output());
    Pause {
        method: Figures::read(&after, "method").minus(Figures::read(&before, "method")),
        message: Figures::read(&after, "message").minus(Figures::read(&before, "message")),
        seconds,
        summaries: summaries_seen,
    }
}

#[test]
fn a_paused_producer_delays_every_scheduled_exchange_in_the_open_loop_and_one_in_the_closed() {
    // Every open-loop method call in flight holds one HTTPS connection: room for all of them, so
    // that the hub's cap (64 by default; beyond it 503, counted as errors) does not decide.
    let hub = Hub::start(
        "canary-pause",
        &repo().join("tests/fixtures/seed-deployment.json"),
        0,
        0,
        &["--max-https-connections", "1000"],
    );
    let producer = module("producer", &hub.module_env("producer"));

    // The seed's closed loop: each kind has one exchange in flight when the producer stops, and
    // sends nothing more until it answers: one slow sample per kind.
    let closed = pause_the_producer(&hub, &producer, "closed-loop", &[]);
    eprintln!(
        "closed loop over {:.1} s: {closed_m:?} {closed_g:?}",
        closed.seconds,
        closed_m = closed.method,
        closed_g = closed.message
    );
    for (kind, f) in [("method", closed.method), ("message", closed.message)] {
        assert!(
            (1.0..=2.0).contains(&f.over_1s),
            "closed loop, {kind}: {f:?}"
        );
        assert_eq!(
            (f.timeout, f.error, f.skipped),
            (0.0, 0.0, 0.0),
            "closed loop, {kind}: {f:?}"
        );
        assert!(f.ok > 100.0, "closed loop, {kind}: {f:?}");
    }

    // The open loop at 100/s, with room for every exchange the pause holds up: the 2 s pause
    // delays the ~200 exchanges scheduled meanwhile (each timed from its planned start), those of
    // the first second by ≥ 1 s.
    let open = pause_the_producer(
        &hub,
        &producer,
        "open-loop",
        &[("EXCHANGE_RATE", "100"), ("MAX_IN_FLIGHT", "1000")],
    );
    eprintln!(
        "open loop over {:.1} s: {:?} {:?}",
        open.seconds, open.method, open.message
    );
    let scheduled = 100.0 * open.seconds;
    for (kind, f) in [("method", open.method), ("message", open.message)] {
        // Every scheduled exchange is counted once: none lost, none skipped here.
        assert!(
            (f.all() - scheduled).abs() <= 0.03 * scheduled + 3.0,
            "open loop, {kind}: {f:?}, {scheduled:.0} scheduled"
        );
        assert_eq!((f.skipped, f.error), (0.0, 0.0), "open loop, {kind}: {f:?}");
        assert!(f.over_100ms >= 180.0, "open loop, {kind}: {f:?}");
        assert!(f.over_1s + f.timeout >= 90.0, "open loop, {kind}: {f:?}");
    }
    let slow =
        open.method.over_1s + open.method.timeout + open.message.over_1s + open.message.timeout;
    assert!(slow >= 190.0, "open loop: {slow} exchanges ≥ 1 s");
    // And the percentiles show it: the interval with the pause has p99 ≥ 1 s for both kinds.
    assert!(
        open.summaries.iter().any(|s| {
            ["method", "message"]
                .iter()
                .all(|k| s["kinds"][k]["total_p99_ms"].as_f64() >= Some(1000.0))
        }),
        "{:#?}",
        open.summaries
    );

    // The default bound (here 50) with the same pause: what cannot start is skipped, and counted.
    let bounded = pause_the_producer(
        &hub,
        &producer,
        "bounded",
        &[("EXCHANGE_RATE", "100"), ("MAX_IN_FLIGHT", "50")],
    );
    eprintln!(
        "open loop, 50 in flight, over {:.1} s: {:?} {:?}",
        bounded.seconds, bounded.method, bounded.message
    );
    let scheduled = 100.0 * bounded.seconds;
    for (kind, f) in [("method", bounded.method), ("message", bounded.message)] {
        assert!(
            (f.all() - scheduled).abs() <= 0.03 * scheduled + 3.0,
            "bounded, {kind}: {f:?}, {scheduled:.0} scheduled"
        );
        // 200 due during the pause, 50 of them running: about 150 skipped.
        assert!(
            (120.0..=170.0).contains(&f.skipped),
            "bounded, {kind}: {f:?}"
        );
        assert!(f.over_100ms >= 45.0, "bounded, {kind}: {f:?}");
    }
    assert!(
        bounded
            .summaries
            .iter()
            .any(|s| count(s, "method", "skipped") > 0 && count(s, "message", "skipped") > 0),
        "skipped in the JSON too: {:#?}",
        bounded.summaries
    );
}
