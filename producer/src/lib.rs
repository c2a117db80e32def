//! The producer module: answers the direct method `GetTimeMethod` and the input `GetTimeMessage`
//! with the current UTC time (the seed's Producer.cs, docs/protocol.md#the-seeds-wire-contract),
//! instrumented.
#![forbid(unsafe_code)]

use anyhow::Result;
use chrono::Utc;
use clap::Parser;
use edge::seed::{TimeReply, TimeRequest, MESSAGE_ENDPOINT, METHOD_NAME};
use edge::session::Subscriptions;
use edge::{Incoming, Message, MethodRequest, ModuleClient, ModuleIdentity};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// IoT Edge module that answers GetTimeMethod and GetTimeMessage with the current UTC time.
///
/// Identity comes from the IoT Edge runtime (IOTEDGE_* variables and the workload API) or, for
/// local development, from EdgeHubConnectionString and EdgeModuleCACertificateFile.
#[derive(Debug, Clone, Parser)]
#[command(name = "producer", version, about, long_about = None)]
pub struct Args {
    /// Where /metrics is served.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9600")]
    pub metrics_addr: SocketAddr,
    /// Write the bound metrics address to this file (for launchers that ask for port 0).
    #[arg(long, env = "METRICS_ADDR_FILE", hide = true)]
    pub metrics_addr_file: Option<std::path::PathBuf>,
    /// How often to print the count line.
    #[arg(long, env = "SUMMARY_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub summary_interval: Duration,
    /// Trace sampling ratio (parent-based); default: OTEL_TRACES_SAMPLER(_ARG) or always on.
    #[arg(long, env = "TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// `iotedge_requests_handled_total{kind}` and `iotedge_request_handle_duration_seconds{kind}`.
#[derive(Clone)]
pub struct ProducerMetrics {
    method_handled: Counter,
    message_handled: Counter,
    method_duration: Histogram,
    message_duration: Histogram,
}

impl ProducerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let handled = Family::<KindLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                0.1, 1.0,
            ])
        });
        registry.register(
            "iotedge_requests_handled",
            "Requests the producer answered, by kind",
            handled.clone(),
        );
        registry.register(
            "iotedge_request_handle_duration_seconds",
            "Time from receiving a request to queueing its answer",
            duration.clone(),
        );
        let get = |kind| {
            (
                handled.get_or_create(&KindLabels { kind }).clone(),
                duration.get_or_create(&KindLabels { kind }).clone(),
            )
        };
        let (method_handled, method_duration) = get("method");
        let (message_handled, message_duration) = get("message");
        Self {
            method_handled,
            message_handled,
            method_duration,
            message_duration,
        }
    }
}

fn reply_body() -> TimeReply {
    let mut reply = TimeReply {
        utc_time: edge::time::round_trip(Utc::now()),
        trace: Default::default(),
    };
    telemetry::inject_current(|k, v| {
        reply.trace.insert(k.to_owned(), v);
    });
    reply
}

async fn on_method(client: &ModuleClient, metrics: &ProducerMetrics, request: MethodRequest) {
    let started = Instant::now();
    if request.method != METHOD_NAME {
        tracing::warn!(method = %request.method, "unknown method; answering 501");
        let body = serde_json::json!({ "message": format!("method {} is not implemented; this producer answers {METHOD_NAME}", request.method) });
        let _ = client.respond(&request, 501, body.to_string()).await;
        return;
    }
    // The seed sent no payload; ours carries trace context.
    let carried: TimeRequest = serde_json::from_slice(&request.payload).unwrap_or_default();
    let span = tracing::info_span!(
        "handle GetTimeMethod",
        otel.kind = "server",
        kind = "method"
    );
    telemetry::set_remote_parent(&span, |k| carried.trace.get(k).map(String::as_str));
    async {
        let body = match serde_json::to_vec(&reply_body()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the reply");
                let _ = client.respond(&request, 500, "{}").await;
                return;
            }
        };
        if client.respond(&request, 200, body).await.is_err() {
            tracing::warn!("session closed before the method response was sent");
        }
    }
    .instrument(span)
    .await;
    metrics.method_handled.inc();
    metrics
        .method_duration
        .observe(started.elapsed().as_secs_f64());
}

async fn on_message(
    client: &ModuleClient,
    metrics: &ProducerMetrics,
    input: &str,
    message: Message,
) {
    let started = Instant::now();
    if input != MESSAGE_ENDPOINT {
        tracing::debug!(
            input,
            "message on an input this producer does not serve; ignored"
        );
        return;
    }
    let span = tracing::info_span!(
        "handle GetTimeMessage",
        otel.kind = "server",
        kind = "message"
    );
    telemetry::set_remote_parent(&span, |k| message.properties.get(k));
    async {
        let body = match serde_json::to_vec(&reply_body()) {
            Ok(b) => b,
            Err(e) => return tracing::error!(error = %e, "cannot encode the reply"),
        };
        let mut reply = Message::new(body);
        if let Some(cid) = message.correlation_id() {
            reply.properties.insert(edge::bag::CORRELATION_ID, cid);
        }
        telemetry::inject_current(|k, v| reply.properties.insert(k, v));
        if client.send_output(MESSAGE_ENDPOINT, reply).await.is_err() {
            tracing::warn!("session closed before the reply was sent");
        }
    }
    .instrument(span)
    .await;
    metrics.message_handled.inc();
    metrics
        .message_duration
        .observe(started.elapsed().as_secs_f64());
}

/// Runs until SIGTERM/Ctrl-C.
pub async fn run(args: Args) -> Result<()> {
    let tracing_guard = telemetry::init_module_tracing("producer", args.trace_sample_ratio)?;
    let identity = Arc::new(ModuleIdentity::from_env()?);
    tracing::info!(identity = ?identity, "producer starting");

    let mut registry = telemetry::new_registry("producer");
    let metrics = ProducerMetrics::register(&mut registry);
    let _server = telemetry::serve_module_metrics(
        args.metrics_addr,
        registry,
        args.metrics_addr_file.as_deref(),
    )
    .await?;

    let (client, mut deliveries) = ModuleClient::connect(identity, Subscriptions::ALL).await?;
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + args.summary_interval,
        args.summary_interval,
    );
    let (mut methods, mut messages) = (0u64, 0u64);
    let shutdown = edge::seed::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            incoming = deliveries.recv() => match incoming {
                // Acknowledged once answered: the reply leaves first.
                Some(Incoming::Method { request, ack }) => {
                    methods += 1;
                    on_method(&client, &metrics, request).await;
                    drop(ack);
                }
                Some(Incoming::Input { input, message, ack }) => {
                    messages += 1;
                    on_message(&client, &metrics, &input, message).await;
                    drop(ack);
                }
                None => anyhow::bail!("the edge hub session ended"),
            },
            _ = ticker.tick() => {
                // The seed's line: "{0:O} - {1} Method calls, {2} Message calls ".
                println!("{} - {methods} Method calls, {messages} Message calls", edge::time::round_trip_offset(Utc::now()));
                (methods, messages) = (0, 0);
            }
            _ = &mut shutdown => break,
        }
    }
    println!(
        "{} - {methods} Method calls, {messages} Message calls",
        edge::time::round_trip_offset(Utc::now())
    );
    tracing::info!("producer stopping");
    client.disconnect().await;
    tracing_guard.shutdown().await;
    Ok(())
}
