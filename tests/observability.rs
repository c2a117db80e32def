//! The local run observed the way operators do (issue 4, and issue 5's dashboard check): the real
//! Prometheus scrapes it with exemplar storage on, a real OTLP receiver (opentelemetry-proto's
//! tonic server) gets the spans of both modules, the exposition passes the reference parsers.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::*;

#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: s.name,
                        kind: s.kind,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_otlp_and_the_dashboard_see_the_local_run() {
    let promtool = require_program("promtool");
    require_program("prometheus");

    // A real OTLP gRPC receiver.
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let prom_port = free_tcp_port();
    let state = tempdir("observability");
    let prom_port_arg = prom_port.to_string();
    let mut cmd = local_run_command(
        &state,
        &[
            "--summary-interval",
            "5s",
            "--with-prometheus",
            "--prometheus-port",
            &prom_port_arg,
        ],
    );
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_BSP_SCHEDULE_DELAY", "500");
    let mut run = Proc::spawn("local-run", cmd);
    let line = run.wait_for_line(Duration::from_secs(60), |l| {
        l.contains("metrics: hub http://")
    });
    let addr = |who: &str| {
        line.split(&format!("{who} http://"))
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_owned()
    };
    let (hub, producer, consumer) = (addr("hub"), addr("producer"), addr("consumer"));

    // Exposition: OpenMetrics through the reference parser, the text format through promtool.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for target in [&hub, &producer, &consumer] {
        let om = http_get(
            target,
            "/metrics",
            "application/openmetrics-text;version=1.0.0",
        );
        let file = state.join("om.txt");
        std::fs::write(&file, &om).unwrap();
        let (ok, out) = run_capture(
            Command::new(python())
                .current_dir(repo())
                .args(["tests/python/check_openmetrics.py", file.to_str().unwrap()]),
        );
        assert!(ok, "{target}: {out}\n{om}");
        let text = http_get(target, "/metrics", "text/plain");
        let mut check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics {target}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let om = http_get(
        &consumer,
        "/metrics",
        "application/openmetrics-text;version=1.0.0",
    );
    assert!(
        om.contains(
            r#"iotedge_exchange_latency_seconds_bucket{le="10.0",kind="method",leg="total"}"#
        ),
        "{om}"
    );
    assert!(
        om.contains("# {trace_id=\""),
        "exemplars expected on the total leg:\n{om}"
    );

    // Prometheus: wait for enough scrapes for a 30 s rate.
    let deadline = Instant::now() + Duration::from_secs(90);
    let p99 = r#"histogram_quantile(0.99, sum by (le, kind) (rate(iotedge_exchange_latency_seconds_bucket{leg="total"}[30s])))"#;
    loop {
        let r = std::panic::catch_unwind(|| {
            prometheus_api(prom_port, "/api/v1/query", &[("query", p99)])
        });
        if let Ok(v) = r {
            let results = v["data"]["result"].as_array().cloned().unwrap_or_default();
            let finite = |kind: &str| {
                results.iter().any(|s| {
                    s["metric"]["kind"] == kind
                        && s["value"][1]
                            .as_str()
                            .and_then(|x| x.parse::<f64>().ok())
                            .is_some_and(f64::is_finite)
                })
            };
            if finite("method") && finite("message") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "p99 never finite for both kinds:\n{}",
            run.output()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let q = |expr: &str| {
        prometheus_api(prom_port, "/api/v1/query", &[("query", expr)])["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        q(r#"iotedge_exchange_latency_seconds_bucket{le="10.0"}"#).len(),
        6,
        "le=10 buckets for 2 kinds x 3 legs"
    );
    assert_eq!(q(r#"iotedge_exchanges_total{outcome="timeout"}"#).len(), 2);
    assert!(q(r#"iotedge_exchanges_total{outcome="ok"} > 0"#).len() == 2);
    assert!(!q(r#"edgehub_messages_sent_total"#).is_empty());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ex = prometheus_api(
        prom_port,
        "/api/v1/query_exemplars",
        &[
            (
                "query",
                r#"iotedge_exchange_latency_seconds_bucket{leg="total"}"#,
            ),
            ("start", &(now - 600).to_string()),
            ("end", &(now + 60).to_string()),
        ],
    );
    let trace_ids: Vec<String> = ex["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
        .collect();
    assert!(!trace_ids.is_empty(), "no exemplars in Prometheus: {ex}");

    // Spans are exported every 500 ms (OTEL_BSP_SCHEDULE_DELAY).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spans = sink.0.lock().unwrap().clone();
    let by_id: HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for kind in ["GetTimeMethod", "GetTimeMessage"] {
        let handled = spans
            .iter()
            .filter(|s| s.service == "producer" && s.name == format!("handle {kind}"))
            .collect::<Vec<_>>();
        assert!(
            !handled.is_empty(),
            "no producer spans for {kind}; got {} spans",
            spans.len()
        );
        let linked = handled.iter().find(|p| {
            let parent = by_id.get(p.parent_span_id.as_str());
            let reply = spans
                .iter()
                .find(|r| r.name == "receive_reply" && r.parent_span_id == p.span_id);
            parent.is_some_and(|e| {
                e.service == "consumer"
                    && e.name == "exchange"
                    && e.kind == 3
                    && e.trace_id == p.trace_id
                    && e.parent_span_id.is_empty()
            }) && p.kind == 2
                && reply.is_some_and(|r| r.service == "consumer" && r.trace_id == p.trace_id)
        });
        assert!(
            linked.is_some(),
            "{kind}: no exchange -> handle -> receive_reply chain across consumer and producer"
        );
    }
    assert!(
        trace_ids
            .iter()
            .any(|t| spans.iter().any(|s| &s.trace_id == t)),
        "no exemplar trace id among the received spans"
    );

    // Every dashboard expression parses and returns data against this Prometheus (issue 5).
    // Rate panels need two samples of every target inside their window: on a busy machine the
    // producer's second scrape can come late, so wait for three scrapes of each target first.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scraped = q("min(count_over_time(up[1m]))");
        let least = scraped
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if least >= 3.0 && q("iotedge_requests_handled_total").len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets were not scraped three times within 60 s: {scraped:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The local run has no IoT Edge runtime: the Runtime row's edgeAgent queries must run but find
    // nothing (tests/fleet.rs proves them with data).
    let (ok, out) = run_capture(Command::new(python()).current_dir(repo()).args([
        "tests/stack/query_dashboard.py",
        "--prometheus",
        &format!("http://127.0.0.1:{prom_port}"),
        "--without-edge-agent",
    ]));
    assert!(ok, "dashboard queries:\n{out}");

    run.signal("TERM");
    let status = run.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", run.output());
}
