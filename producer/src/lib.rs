//! The producer module: answers the direct method `GetTimeMethod` and the input `GetTimeMessage`
//! with the current UTC time (the seed's Producer.cs, docs/protocol.md#the-seeds-wire-contract),
//! instrumented, with a watchdog that ends the process when its session or handler hangs.
#![forbid(unsafe_code)]

use anyhow::Result;
use chrono::Utc;
use clap::{Parser, Subcommand};
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
    /// Watchdog: when the MQTT session (connected or retrying), the request handler or the
    /// metrics server makes no progress for this long, log what stopped and exit with status 3,
    /// so that the runtime (restartPolicy: always) restarts the module. 0 turns it off.
    #[arg(long, env = "WATCHDOG_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub watchdog_timeout: Duration,
    /// Bytes of padding in every reply (both kinds), in a `padding` field beside `UtcTime` that
    /// the seed's consumer ignores: 0, 512, 16KiB, 120KiB… At most 127 KiB (a direct method's
    /// 128 KiB response limit, less 1 KiB for the JSON framing and trace context).
    #[arg(long, env = "REPLY_BYTES", default_value = "0", value_parser = reply_size)]
    pub reply_bytes: usize,
    /// TEST ONLY (tests/watchdog.rs): after this long, the request handler blocks for good on the
    /// next request, to show the watchdog acting. Never set it in a deployment.
    #[arg(long, env = "TEST_FREEZE_AFTER", hide = true, value_parser = humantime::parse_duration)]
    pub test_freeze_after: Option<Duration>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `REPLY_BYTES`: a size with a binary unit, within a method response's limit.
fn reply_size(text: &str) -> Result<usize, String> {
    let size = edge::payload::parse_size(text).map_err(|e| e.to_string())?;
    edge::payload::check_method("REPLY_BYTES", size).map_err(|e| e.to_string())?;
    Ok(size)
}

/// Besides running the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Ask this module's GET /healthz (127.0.0.1, METRICS_ADDR's port) and exit 0 if it answers
    /// 200, 1 otherwise with the reason on stderr (the images' HEALTHCHECK). Starts nothing.
    Healthcheck,
}

/// The longest a request's handling may take when all is well (it takes microseconds; a full
/// request queue may hold a reply back a little).
const HANDLER_BOUND: Duration = Duration::from_secs(1);

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

/// A reply as sent: the seed's `UtcTime`, our trace context and the workload's padding.
#[derive(serde::Serialize)]
struct Reply<'a> {
    #[serde(flatten)]
    time: TimeReply,
    /// Built once at start-up (`REPLY_BYTES`); absent when empty, as the seed's reply.
    #[serde(skip_serializing_if = "str::is_empty")]
    padding: &'a str,
}

/// The reply's JSON, written in one buffer sized for it.
fn reply_body(padding: &str) -> serde_json::Result<Vec<u8>> {
    let mut time = TimeReply {
        utc_time: edge::time::round_trip(Utc::now()),
        trace: Default::default(),
    };
    telemetry::inject_current(|k, v| {
        time.trace.insert(k.to_owned(), v);
    });
    let mut body = Vec::with_capacity(padding.len() + 256);
    serde_json::to_writer(&mut body, &Reply { time, padding })?;
    Ok(body)
}

async fn on_method(
    client: &ModuleClient,
    metrics: &ProducerMetrics,
    padding: &str,
    request: MethodRequest,
) {
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
        let body = match reply_body(padding) {
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
    padding: &str,
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
        let body = match reply_body(padding) {
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

/// Test only: blocks for good once `at` has passed (see `Args::test_freeze_after`).
async fn test_freeze(at: Option<Instant>) {
    if at.is_some_and(|at| Instant::now() >= at) {
        std::future::pending::<()>().await;
    }
}

/// Runs until SIGTERM/Ctrl-C; `healthcheck` asks a running one's /healthz instead.
pub async fn run(args: Args) -> Result<()> {
    if let Some(Command::Healthcheck) = args.command {
        return telemetry::healthcheck(args.metrics_addr).map_err(anyhow::Error::msg);
    }
    let tracing_guard = telemetry::init_module_tracing("producer", args.trace_sample_ratio)?;
    let identity = Arc::new(ModuleIdentity::from_env()?);
    tracing::info!(identity = ?identity, watchdog = ?args.watchdog_timeout, reply_bytes = args.reply_bytes, "producer starting");
    // Built once: a reply copies it, never makes it.
    let padding = edge::payload::padding(args.reply_bytes);

    let watchdog = telemetry::Watchdog::new(args.watchdog_timeout);
    let mut registry = telemetry::new_registry("producer");
    let metrics = ProducerMetrics::register(&mut registry);
    let _server = telemetry::serve_module_metrics_watched(
        args.metrics_addr,
        registry,
        args.metrics_addr_file.as_deref(),
        None,
        Some(watchdog.clone()),
    )
    .await?;

    let (client, mut deliveries) = ModuleClient::connect(identity, Subscriptions::ALL).await?;
    let session = client.heartbeat();
    watchdog.watch("the MQTT session", "its loop last turned", move || {
        telemetry::Progress {
            last: session.last(),
            due: session.due(),
        }
    });
    let handler = watchdog.pulse(
        "the request handler",
        "it last took a request",
        HANDLER_BOUND,
    );
    handler.idle();
    let freeze_at = args.test_freeze_after.map(|after| {
        tracing::warn!(
            ?after,
            "TEST_FREEZE_AFTER is set: the request handler will block for good (a test switch)"
        );
        Instant::now() + after
    });
    watchdog.start()?;
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + args.summary_interval,
        args.summary_interval,
    );
    let (mut methods, mut messages) = (0u64, 0u64);
    let shutdown = edge::signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            incoming = deliveries.recv() => {
                let Some(incoming) = incoming else {
                    watchdog.stop();
                    anyhow::bail!("the edge hub session ended");
                };
                handler.beat();
                test_freeze(freeze_at).await;
                match incoming {
                    // Acknowledged once answered: the reply leaves first.
                    Incoming::Method { request, ack } => {
                        methods += 1;
                        on_method(&client, &metrics, &padding, request).await;
                        drop(ack);
                    }
                    Incoming::Input { input, message, ack } => {
                        messages += 1;
                        on_message(&client, &metrics, &padding, &input, message).await;
                        drop(ack);
                    }
                }
                handler.idle();
            }
            _ = ticker.tick() => {
                // The seed's line: "{0:O} - {1} Method calls, {2} Message calls ".
                println!("{} - {methods} Method calls, {messages} Message calls", edge::time::round_trip_offset(Utc::now()));
                (methods, messages) = (0, 0);
            }
            _ = &mut shutdown => break,
        }
    }
    watchdog.stop();
    println!(
        "{} - {methods} Method calls, {messages} Message calls",
        edge::time::round_trip_offset(Utc::now())
    );
    tracing::info!("producer stopping");
    client.disconnect().await;
    tracing_guard.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_needs_no_other_argument_and_the_freeze_switch_is_hidden() {
        let args = Args::try_parse_from(["producer", "healthcheck"]).unwrap();
        assert_eq!(args.command, Some(Command::Healthcheck));
        assert_eq!(args.watchdog_timeout, Duration::from_secs(60));
        let off = Args::try_parse_from(["producer", "--watchdog-timeout", "0"]).unwrap();
        assert!(off.watchdog_timeout.is_zero());
        let help = <Args as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("WATCHDOG_TIMEOUT") && help.contains("healthcheck"),
            "{help}"
        );
        assert!(!help.contains("freeze"), "{help}");
    }

    #[test]
    fn replies_carry_the_asked_padding_beside_the_seed_fields() {
        let args = Args::try_parse_from(["producer", "--reply-bytes", "16KiB"]).unwrap();
        assert_eq!(args.reply_bytes, 16 * 1024);
        let body = reply_body(&edge::payload::padding(args.reply_bytes)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["padding"].as_str().map(str::len), Some(16 * 1024));
        let seed: TimeReply = serde_json::from_slice(&body).unwrap();
        assert!(
            edge::time::parse(&seed.utc_time).is_some(),
            "{}",
            seed.utc_time
        );
        // No padding: the seed's reply exactly.
        let plain: serde_json::Value = serde_json::from_slice(&reply_body("").unwrap()).unwrap();
        assert_eq!(plain.as_object().map(|o| o.len()), Some(1), "{plain}");
        for (bad, why) in [("129KiB", "128 KiB payload limit"), ("1KB", "unknown unit")] {
            let e = Args::try_parse_from(["producer", "--reply-bytes", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
