//! An unreachable OTLP collector (issue 9): each module warns about it, naming the endpoint, at
//! most once a minute; every failed export is counted; the exchanges go on undisturbed.

use std::time::Duration;
use test_support::{http_get, local_run_command, metric_sum, tempdir, Proc};

#[test]
fn an_unreachable_collector_is_counted_and_named_and_never_stalls_an_exchange() {
    // A port nobody listens on: bound, then released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{dead}");
    let state = tempdir("otlp-failures");
    let mut cmd = local_run_command(
        &state,
        &[
            "--summary-interval",
            "2s",
            "--duration",
            "12s",
            "--summary-format",
            "json",
        ],
    );
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let mut run = Proc::spawn("local-run", cmd);
    let line = run.wait_for_line(Duration::from_secs(60), |l| {
        l.contains("metrics: hub http://")
    });
    let consumer = line
        .split("consumer http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_secs(6));
    let metrics = http_get(&consumer, "/metrics", "text/plain");
    let failures = metric_sum(&metrics, "iotedge_otlp_export_failures_total", &[])
        .unwrap_or_else(|| panic!("no export failure counter:\n{metrics}"));
    assert!(failures >= 1.0, "{metrics}");
    assert!(
        run.wait(Duration::from_secs(60)).success(),
        "{}",
        run.output()
    );
    let out = run.output();
    // One warning per module in a 12 s run (at most one a minute), naming the endpoint.
    for module in ["producer", "consumer"] {
        let warnings = out
            .lines()
            .filter(|l| {
                l.contains(module) && l.contains(&format!("OTLP export to {endpoint} failed"))
            })
            .count();
        assert_eq!(warnings, 1, "{module}:\n{out}");
    }
    // The exchanges never waited for the collector: every interval has thousands of them.
    let summaries = test_support::summaries(&run);
    let intervals: Vec<_> = summaries
        .iter()
        .filter(|s| s["scope"] == "interval")
        .collect();
    assert!(intervals.len() >= 4, "{out}");
    for s in &intervals[..intervals.len() - 1] {
        for kind in ["method", "message"] {
            assert!(test_support::count(s, kind, "count") > 100, "{kind}: {s}");
            assert_eq!(test_support::count(s, kind, "timeouts"), 0, "{kind}: {s}");
        }
    }
}
