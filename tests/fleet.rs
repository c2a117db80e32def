//! Fleet forwarding with the real engine (issue 10, item 5): the local run, a stand-in for
//! edgeAgent serving its documented metrics, a Prometheus agent started from the shipped
//! prometheus-agent.yml (only its targets and central URL rewritten to this test's ports) and a
//! central Prometheus with the remote-write receiver that loads prometheus-rules.yml and scrapes
//! nothing itself — so everything it holds came through remote write. On the central side: the
//! four targets' `up` carry the agent's `device` label, the latency quantiles and exchange rates
//! the dashboard shows come out per device, edgeAgent's series keep their `module_name`, every
//! dashboard expression (the Runtime row's included) returns data for that device
//! (tests/stack/query_dashboard.py --var device=...), the trace-id exemplars arrived (Prometheus
//! 2.42 forwards them with `send_exemplars: true`), and the recording and alerting rules evaluate
//! without error and stay silent on a healthy device.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use test_support::*;

/// The agent's IOTEDGE_DEVICEID: not the local run's own device id, so the label can only come
/// from the agent's `external_labels`.
const DEVICE: &str = "fleet-test-device";

/// A minimal OTLP/HTTP trace sink: answers every request 200 with an empty (valid, empty protobuf)
/// body. The modules put trace-id exemplars on their histograms only while they export traces.
fn otlp_http_sink() -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return; // closed
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A stand-in for edgeAgent's /metrics on a healthy device, with the names, types and labels of
/// Azure/iotedge doc/BuiltInMetrics.md: start and stop counts that do not change during the test
/// (the producer was restarted once, long ago: no alert), and every module running all the time
/// it was expected to but for the producer's 10 s. The time gauges grow with the wall clock, as
/// edgeAgent's do.
fn fake_edge_agent() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            // Whatever the request, once its headers are read: the metrics.
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let body = edge_agent_metrics(600.0 + started.elapsed().as_secs_f64());
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// edgeAgent's exposition after `uptime` seconds (see fake_edge_agent).
fn edge_agent_metrics(uptime: f64) -> String {
    const RUNTIME: &str = r#"iothub="fleet-hub.azure-devices.net",edge_device="fleet-test-device",instance_number="3f2c0a8e-5d1b-4c36-9a4e-0b7d2f1e6c55""#;
    // module_name, module_version, starts, stops, seconds down
    let modules = [
        ("edgeHub", "", 1, 0, 0.0),
        ("producer", "1.0", 2, 1, 10.0),
        ("consumer", "1.0", 1, 0, 0.0),
    ];
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, sample: &dyn Fn(u32, u32, f64) -> f64| {
        out += &format!("# TYPE {name} {kind}\n");
        for (module, version, starts, stops, down) in modules {
            // The counters also carry module_version; the gauges only module_name.
            let version = if kind == "counter" {
                format!(r#",module_version="{version}""#)
            } else {
                String::new()
            };
            let value = sample(starts, stops, down);
            out += &format!("{name}{{{RUNTIME},module_name=\"{module}\"{version}}} {value}\n");
        }
    };
    family("edgeAgent_module_start_total", "counter", &|s, _, _| {
        f64::from(s)
    });
    family("edgeAgent_module_stop_total", "counter", &|_, s, _| {
        f64::from(s)
    });
    family(
        "edgeAgent_total_time_running_correctly_seconds",
        "gauge",
        &|_, _, down| uptime - down,
    );
    family(
        "edgeAgent_total_time_expected_running_seconds",
        "gauge",
        &|_, _, _| uptime,
    );
    out
}

/// The local run, stopped with SIGTERM even when the test fails: killing it outright would leave
/// its hub, producer and consumer running.
struct LocalRun(Proc);

impl Drop for LocalRun {
    fn drop(&mut self) {
        if let Ok(None) = self.0.child.try_wait() {
            self.0.signal("TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(self.0.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
        } // then Proc's drop kills it if it is still there
    }
}

fn query(port: u16, expr: &str) -> Vec<serde_json::Value> {
    let v = prometheus_api(port, "/api/v1/query", &[("query", expr)]);
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(series: &serde_json::Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|x| x.parse().ok())
        .unwrap_or(f64::NAN)
}

fn label<'a>(series: &'a serde_json::Value, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or("")
}

fn start_prometheus(name: &str, port: u16, args: &[String], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(require_program("prometheus"));
    cmd.args(args)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .envs(env.iter().copied());
    let mut p = Proc::spawn(name, cmd);
    wait_prometheus_ready(&mut p, port, Duration::from_secs(30));
    p
}

/// The shipped agent configuration with its targets and central URL pointed at this test.
fn agent_config(
    hub: &str,
    producer: &str,
    consumer: &str,
    edge_agent: u16,
    central: u16,
) -> String {
    let shipped = std::fs::read_to_string(repo().join("prometheus-agent.yml")).unwrap();
    let mut config = shipped.clone();
    for (from, to) in [
        ("edgeHub:9600", hub.to_owned()),
        ("producer:9600", producer.to_owned()),
        ("consumer:9600", consumer.to_owned()),
        ("edgeAgent:9600", format!("127.0.0.1:{edge_agent}")),
        (
            "http://central-prometheus:9090",
            format!("http://127.0.0.1:{central}"),
        ),
    ] {
        assert!(
            shipped.contains(from),
            "prometheus-agent.yml no longer contains {from}"
        );
        config = config.replace(from, &to);
    }
    config
}

#[test]
fn the_shipped_agent_config_is_valid() {
    let (ok, out) = run_capture(
        Command::new(require_program("promtool"))
            .args(["check", "config", "--agent", "prometheus-agent.yml"])
            .current_dir(repo()),
    );
    assert!(ok, "{out}");
}

#[test]
fn an_agent_forwards_the_local_run_to_a_central_prometheus() {
    let dir = tempdir("fleet");

    // The local run on free ports, exporting traces (so that its histograms carry exemplars).
    let otlp = otlp_http_sink();
    let mut cmd = local_run_command(&dir.join("run"), &["--summary-interval", "5s"]);
    cmd.env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{otlp}"),
    )
    .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    let mut run = LocalRun(Proc::spawn("local-run", cmd));
    let line = run.0.wait_for_line(Duration::from_secs(60), |l| {
        l.contains("metrics: hub http://")
    });
    let addr = |who: &str| {
        line.split(&format!("{who} http://"))
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("no {who} address in {line:?}"))
            .to_owned()
    };
    let (hub, producer, consumer) = (addr("hub"), addr("producer"), addr("consumer"));

    // The central Prometheus: remote-write receiver, exemplar storage, the rules; no scrape job.
    let central_port = free_tcp_port();
    let central_yml = dir.join("central.yml");
    let rules = repo().join("prometheus-rules.yml");
    std::fs::write(
        &central_yml,
        format!(
            "global:\n  evaluation_interval: 5s\nstorage:\n  exemplars:\n    max_exemplars: 100000\n\
             rule_files:\n  - {}\n",
            rules.display()
        ),
    )
    .unwrap();
    let path_arg = |flag: &str, p: &Path| format!("{flag}={}", p.display());
    let _central = start_prometheus(
        "central",
        central_port,
        &[
            path_arg("--config.file", &central_yml),
            path_arg("--storage.tsdb.path", &dir.join("central-data")),
            "--web.enable-remote-write-receiver".into(),
            "--enable-feature=exemplar-storage".into(),
        ],
        &[],
    );

    // The agent, with the flags prometheus-agent.yml documents.
    let agent_port = free_tcp_port();
    let agent_yml = dir.join("agent.yml");
    let edge_agent = fake_edge_agent();
    std::fs::write(
        &agent_yml,
        agent_config(&hub, &producer, &consumer, edge_agent, central_port),
    )
    .unwrap();
    let agent = start_prometheus(
        "agent",
        agent_port,
        &[
            "--enable-feature=agent,expand-external-labels".into(),
            path_arg("--config.file", &agent_yml),
            path_arg("--storage.agent.path", &dir.join("agent-wal")),
        ],
        &[(edge::contract::vars::DEVICE_ID, DEVICE)],
    );

    // Wait until the central side has a finite p99 total latency for both kinds of the device
    // (the dashboard's "Total latency: method vs message" query, by device).
    let p99 = format!(
        r#"histogram_quantile(0.99, sum by (le, device, kind) (rate(iotedge_exchange_latency_seconds_bucket{{device="{DEVICE}",leg="total"}}[30s])))"#
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = query(central_port, &p99);
        let finite = |kind: &str| {
            r.iter().any(|s| {
                label(s, "kind") == kind && label(s, "device") == DEVICE && value(s).is_finite()
            })
        };
        if finite("method") && finite("message") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no forwarded p99 for both kinds: {r:?}\nagent:\n{}\nrun:\n{}",
            agent.output(),
            run.0.output()
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // The four targets, as the agent saw them, with the device and module labels.
    let up = query(central_port, "up");
    let mut modules: Vec<&str> = up
        .iter()
        .filter(|s| label(s, "device") == DEVICE && value(s) == 1.0)
        .map(|s| label(s, "module"))
        .collect();
    modules.sort_unstable();
    assert_eq!(
        modules,
        ["consumer", "edgeAgent", "edgeHub", "producer"],
        "{up:?}"
    );
    // Every forwarded series (only these names pass the agent's write_relabel_configs) carries
    // the agent's device label; only the central's own threshold recordings have none.
    let forwarded = r#"{__name__=~"iotedge_.*|edgehub_.*|edgeAgent_.*|process_.*|up"}"#;
    let total = query(central_port, &format!("count({forwarded})"));
    assert!(total.first().is_some_and(|s| value(s) > 50.0), "{total:?}");
    let stray = query(
        central_port,
        &format!(
            r#"{{__name__=~"iotedge_.*|edgehub_.*|edgeAgent_.*|process_.*|up",device!="{DEVICE}"}}"#
        ),
    );
    assert!(
        stray.is_empty(),
        "series without the agent's device label: {stray:?}"
    );

    // Exchanges per second per device and kind, as the dashboard's throughput panels.
    let rate = query(
        central_port,
        r#"sum by (device, kind) (rate(iotedge_exchanges_total{outcome="ok"}[30s]))"#,
    );
    for kind in ["method", "message"] {
        assert!(
            rate.iter().any(|s| label(s, "device") == DEVICE
                && label(s, "kind") == kind
                && value(s) > 0.0),
            "no {kind} exchange rate for {DEVICE}: {rate:?}"
        );
    }
    // The hub's series came along too (edgeHub names).
    assert!(
        !query(
            central_port,
            &format!(r#"edgehub_messages_sent_total{{device="{DEVICE}"}}"#)
        )
        .is_empty(),
        "no edgehub_* series forwarded"
    );

    // edgeAgent's series came along per module, with the target's `module` apart from the
    // `module_name` they describe; two samples of each so that the Runtime row's windows have data.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let starts = query(
            central_port,
            &format!(
                r#"count_over_time(edgeAgent_module_start_total{{device="{DEVICE}",job="edgeAgent",module="edgeAgent"}}[1m]) >= 2"#
            ),
        );
        let mut names: Vec<&str> = starts.iter().map(|s| label(s, "module_name")).collect();
        names.sort_unstable();
        if names == ["consumer", "edgeHub", "producer"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "edgeAgent's start counters not forwarded per module_name: {starts:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Every dashboard expression returns data for this device on the central side, the Runtime
    // row's too (the firing alerts table may be empty: see MAY_BE_EMPTY in query_dashboard.py).
    let (ok, out) = run_capture(
        Command::new(python())
            .args([
                "tests/stack/query_dashboard.py",
                "--prometheus",
                &format!("http://127.0.0.1:{central_port}"),
                "--var",
                &format!("device={DEVICE}"),
            ])
            .current_dir(repo()),
    );
    assert!(
        ok,
        "dashboard queries against the central Prometheus:\n{out}"
    );

    // Exemplars travelled with the samples: trace ids on the total leg, per device.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ex = prometheus_api(
        central_port,
        "/api/v1/query_exemplars",
        &[
            (
                "query",
                &format!(
                    r#"iotedge_exchange_latency_seconds_bucket{{device="{DEVICE}",leg="total"}}"#
                ),
            ),
            ("start", &(now - 600).to_string()),
            ("end", &(now + 60).to_string()),
        ],
    );
    let with_trace: Vec<&serde_json::Value> = ex["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["seriesLabels"]["device"] == DEVICE)
        .flat_map(|s| s["exemplars"].as_array().into_iter().flatten())
        .filter(|e| {
            e["labels"]["trace_id"]
                .as_str()
                .is_some_and(|t| t.len() == 32)
        })
        .collect();
    assert!(
        !with_trace.is_empty(),
        "no exemplars with a trace_id on the central side: {ex}"
    );

    // The rules run centrally on the forwarded data: every rule evaluates without error, the
    // recordings exist per device and kind, and no alert fires (or is pending) on a healthy run.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recorded = loop {
        let r = query(
            central_port,
            &format!(
                r#"device_kind_leg:iotedge_exchange_latency_seconds:p99_rate5m{{device="{DEVICE}",leg="total"}}"#
            ),
        );
        if r.len() == 2 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut kinds: Vec<&str> = recorded.iter().map(|s| label(s, "kind")).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["message", "method"], "{recorded:?}");
    let rules_api = prometheus_api(central_port, "/api/v1/rules", &[]);
    let rules: Vec<&serde_json::Value> = rules_api["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert!(
        rules.iter().filter(|r| r["type"] == "alerting").count() >= 5,
        "{rules_api}"
    );
    for r in &rules {
        assert!(
            r["health"] == "ok" || r["health"] == "unknown",
            "rule {} does not evaluate: {r}",
            r["name"]
        );
    }
    assert!(
        rules.iter().all(|r| r["health"] == "ok"),
        "some rule never evaluated: {rules_api}"
    );
    let alerts = query(central_port, "ALERTS");
    assert!(alerts.is_empty(), "alerts on a healthy device: {alerts:?}");

    // The agent's own counters: samples and exemplars sent to the central Prometheus.
    let metrics = http_get(&format!("127.0.0.1:{agent_port}"), "/metrics", "text/plain");
    let sent = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        sent("prometheus_remote_storage_samples_total") > 0.0,
        "{metrics}"
    );
    assert!(
        sent("prometheus_remote_storage_exemplars_total") > 0.0,
        "{metrics}"
    );

    run.0.signal("TERM");
    let status = run.0.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", run.0.output());
    // The agent and the central Prometheus are killed when their Procs drop.
}
