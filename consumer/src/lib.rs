//! The consumer module: drives direct-method and message exchanges with the producer, times each
//! one (C->P, P->C, Total), prints the seed's table every interval and records every sample in
//! Prometheus histograms, with a trace across both modules per exchange.
#![forbid(unsafe_code)]

pub mod recorder;
pub mod stats;

use anyhow::{bail, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use edge::seed::{TimeReply, TimeRequest, MESSAGE_ENDPOINT, METHOD_NAME};
use edge::session::Subscriptions;
use edge::{Incoming, Message, MethodClient, ModuleClient, ModuleIdentity};
use recorder::{Outcome, Recorder};
use stats::{Kind, Sample};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    /// The seed's plain-text table.
    Table,
    /// One JSON object per interval.
    Json,
    /// The table, then the JSON line.
    Both,
}

fn seed_flag(s: &str) -> Result<bool, String> {
    Ok(edge::seed::parse_flag(Some(s)))
}

/// IoT Edge module that measures a direct method against a message round trip to the producer.
///
/// Identity comes from the IoT Edge runtime (IOTEDGE_* variables and the workload API) or, for
/// local development, from EdgeHubConnectionString and EdgeModuleCACertificateFile.
#[derive(Debug, Clone, Parser)]
#[command(name = "consumer", version, about, long_about = None)]
pub struct Args {
    /// Run the direct-method loop (y|yes|true|on|1, any case, is true; anything else false).
    #[arg(long, env = "EnableMethod", default_value = "true", value_parser = seed_flag, action = clap::ArgAction::Set)]
    pub enable_method: bool,
    /// Run the message loop (same parsing).
    #[arg(long, env = "EnableMessage", default_value = "true", value_parser = seed_flag, action = clap::ArgAction::Set)]
    pub enable_message: bool,
    /// How often to print the table (the seed: every minute).
    #[arg(long, env = "SUMMARY_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub summary_interval: Duration,
    /// Output of each interval.
    #[arg(long, env = "SUMMARY_FORMAT", value_enum, default_value_t = SummaryFormat::Table)]
    pub summary_format: SummaryFormat,
    /// Deadline of one exchange; a reply later than this counts as a timeout (edgeHub's default is 30s).
    #[arg(long, env = "EXCHANGE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub exchange_timeout: Duration,
    /// Module id of the producer.
    #[arg(long, env = "PRODUCER_MODULE_ID", default_value = edge::seed::PRODUCER_MODULE)]
    pub producer: String,
    /// Where /metrics is served.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9600")]
    pub metrics_addr: SocketAddr,
    /// Write the bound metrics address to this file (for launchers that ask for port 0).
    #[arg(long, env = "METRICS_ADDR_FILE", hide = true)]
    pub metrics_addr_file: Option<std::path::PathBuf>,
    /// Trace sampling ratio (parent-based); default: OTEL_TRACES_SAMPLER(_ARG) or always on.
    #[arg(long, env = "TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
}

impl Args {
    pub fn kinds(&self) -> Vec<Kind> {
        let mut kinds = Vec::new();
        if self.enable_message {
            kinds.push(Kind::Message);
        }
        if self.enable_method {
            kinds.push(Kind::Method);
        }
        kinds
    }
}

fn millis_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a)
        .num_microseconds()
        .map(|us| us as f64 / 1000.0)
        .unwrap_or(f64::NAN)
}

/// The producer's timestamp and trace context from a reply, or why it is unusable.
fn parse_reply(body: &[u8]) -> Result<(DateTime<Utc>, TimeReply), String> {
    let reply: TimeReply =
        serde_json::from_slice(body).map_err(|e| format!("reply is not {{\"UtcTime\":…}}: {e}"))?;
    let produced = edge::time::parse(&reply.utc_time)
        .ok_or_else(|| format!("UtcTime {:?} is not a time", reply.utc_time))?;
    Ok((produced, reply))
}

/// The consumer's span around receiving a reply: its parent is the producer's handling span.
fn reply_span(kind: Kind, get: impl Fn(&str) -> Option<String>) {
    let span = tracing::info_span!("receive_reply", otel.kind = "consumer", kind = kind.label());
    let values: Vec<(&str, String)> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| get(k).map(|v| (k, v)))
        .collect();
    telemetry::set_remote_parent(&span, |k| {
        values
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
    });
    let _entered = span.enter();
}

/// Logs an error streak once, and its end.
#[derive(Default)]
struct ErrorStreak(u64);

impl ErrorStreak {
    fn failed(&mut self, kind: Kind, what: &str) {
        self.0 += 1;
        if self.0 == 1 {
            tracing::warn!(
                kind = kind.label(),
                error = what,
                "exchange failed; retrying every second (further failures are counted, not logged)"
            );
        }
    }
    fn succeeded(&mut self, kind: Kind) {
        if self.0 > 0 {
            tracing::info!(
                kind = kind.label(),
                failures = self.0,
                "exchanges succeed again"
            );
            self.0 = 0;
        }
    }
}

async fn method_exchange(
    client: &MethodClient,
    device: &str,
    producer: &str,
    timeout: Duration,
    recorder: &Recorder,
    streak: &mut ErrorStreak,
) {
    let mut request = TimeRequest::default();
    telemetry::inject_current(|k, v| {
        request.trace.insert(k.to_owned(), v);
    });
    let payload = serde_json::to_value(&request).unwrap_or(serde_json::Value::Null);
    let sent = Utc::now();
    let start = Instant::now();
    // Our deadline is the exchange timeout; the hub's own (at least 5 s) only bounds its wait.
    let result = match tokio::time::timeout(
        timeout,
        client.invoke(device, producer, METHOD_NAME, &payload, timeout),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(edge::InvokeError::Timeout(format!(
            "no answer within {timeout:?}"
        ))),
    };
    let total = start.elapsed();
    let received = Utc::now();
    let outcome = match result {
        Ok(r) if r.status == 200 => match serde_json::to_vec(&r.payload)
            .map_err(|e| e.to_string())
            .and_then(|b| parse_reply(&b))
        {
            Ok((produced, reply)) => {
                reply_span(Kind::Method, |k| reply.trace.get(k).cloned());
                Ok(Sample {
                    c2p_ms: millis_between(sent, produced),
                    p2c_ms: millis_between(produced, received),
                    total_ms: total.as_secs_f64() * 1000.0,
                })
            }
            Err(e) => Err(e),
        },
        Ok(r) => Err(format!(
            "producer answered status {} with {}",
            r.status, r.payload
        )),
        Err(e) if e.is_timeout() || total >= timeout => {
            tracing::debug!(error = %e, "method timed out");
            recorder.record(Kind::Method, Outcome::Timeout);
            return;
        }
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(sample) => {
            streak.succeeded(Kind::Method);
            recorder.record(Kind::Method, Outcome::Ok(sample));
        }
        Err(e) => {
            streak.failed(Kind::Method, &e);
            recorder.record(Kind::Method, Outcome::Error);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn message_exchange(
    client: &ModuleClient,
    replies: &mut mpsc::Receiver<Message>,
    timeout: Duration,
    recorder: &Recorder,
    streak: &mut ErrorStreak,
) {
    let sent = Utc::now();
    // The seed's contract: the correlation id is the send time, round-trip format.
    let cid = edge::time::round_trip(sent);
    let mut message = Message::new(Bytes::new()).with_correlation_id(cid.as_str());
    telemetry::inject_current(|k, v| message.properties.insert(k, v));
    let start = Instant::now();
    if let Err(e) = client.send_output(MESSAGE_ENDPOINT, message).await {
        streak.failed(Kind::Message, &e.to_string());
        recorder.record(Kind::Message, Outcome::Error);
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    }
    let deadline = tokio::time::Instant::from_std(start + timeout);
    loop {
        let reply = match tokio::time::timeout_at(deadline, replies.recv()).await {
            Err(_) => {
                tracing::debug!(correlation_id = %cid, "message reply timed out");
                recorder.record(Kind::Message, Outcome::Timeout);
                return;
            }
            Ok(None) => {
                streak.failed(Kind::Message, "the edge hub session ended");
                recorder.record(Kind::Message, Outcome::Error);
                return;
            }
            Ok(Some(reply)) => reply,
        };
        if reply.correlation_id() != Some(cid.as_str()) {
            // A reply to an exchange that already timed out.
            tracing::debug!(expected = %cid, got = ?reply.correlation_id(), "late or foreign reply ignored");
            continue;
        }
        let total = start.elapsed();
        let received = Utc::now();
        match parse_reply(&reply.body) {
            Ok((produced, _)) => {
                reply_span(Kind::Message, |k| {
                    reply.properties.get(k).map(str::to_owned)
                });
                streak.succeeded(Kind::Message);
                recorder.record(
                    Kind::Message,
                    Outcome::Ok(Sample {
                        c2p_ms: millis_between(sent, produced),
                        p2c_ms: millis_between(produced, received),
                        total_ms: total.as_secs_f64() * 1000.0,
                    }),
                );
            }
            Err(e) => {
                streak.failed(Kind::Message, &e);
                recorder.record(Kind::Message, Outcome::Error);
            }
        }
        return;
    }
}

fn print_summary(args: &Args, kinds: &[Kind], recorder: &Recorder, interval: Duration) {
    let stats = recorder.take_interval();
    let stamp = edge::time::round_trip_offset(Utc::now());
    let mut out = String::new();
    if matches!(
        args.summary_format,
        SummaryFormat::Table | SummaryFormat::Both
    ) {
        out.push_str(&stats::render_table(&stamp, interval, &stats, kinds, true));
    }
    if matches!(
        args.summary_format,
        SummaryFormat::Json | SummaryFormat::Both
    ) {
        out.push_str(&stats::render_json(&stamp, interval, &stats, kinds));
        out.push('\n');
    }
    // One write, so tables from concurrent output never interleave.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// Runs until SIGTERM/Ctrl-C, then prints the last (partial) interval.
pub async fn run(args: Args) -> Result<()> {
    let kinds = args.kinds();
    if kinds.is_empty() {
        bail!("EnableMethod and EnableMessage are both false: there is nothing to measure");
    }
    if args.summary_interval.is_zero() || args.exchange_timeout.is_zero() {
        bail!("SUMMARY_INTERVAL and EXCHANGE_TIMEOUT must be longer than zero");
    }
    let tracing_guard = telemetry::init_module_tracing("consumer", args.trace_sample_ratio)?;
    let identity = Arc::new(ModuleIdentity::from_env()?);
    tracing::info!(identity = ?identity, producer = %args.producer, method = args.enable_method, message = args.enable_message, "consumer starting");

    let mut registry = telemetry::new_registry("consumer");
    let recorder = Recorder::register(&mut registry);
    let _server = telemetry::serve_module_metrics(
        args.metrics_addr,
        registry,
        args.metrics_addr_file.as_deref(),
    )
    .await?;

    let (client, mut deliveries) = ModuleClient::connect(
        identity.clone(),
        Subscriptions {
            inputs: args.enable_message,
            methods: false,
        },
    )
    .await?;
    let (reply_tx, mut reply_rx) = mpsc::channel::<Message>(64);
    tokio::spawn(async move {
        while let Some(incoming) = deliveries.recv().await {
            match incoming {
                Incoming::Input { input, message } if input == MESSAGE_ENDPOINT => {
                    if reply_tx.send(message).await.is_err() {
                        return;
                    }
                }
                Incoming::Input { input, .. } => {
                    tracing::debug!(%input, "message on an unexpected input ignored")
                }
                Incoming::Method(m) => {
                    tracing::debug!(method = %m.method, "unexpected method request ignored")
                }
            }
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = Vec::new();
    if args.enable_method {
        let method_client = MethodClient::new(identity.clone()).await?;
        let (recorder, mut stop, device, producer, timeout) = (
            recorder.clone(),
            stop_rx.clone(),
            identity.device_id.clone(),
            args.producer.clone(),
            args.exchange_timeout,
        );
        loops.push(tokio::spawn(async move {
            let mut streak = ErrorStreak::default();
            while !*stop.borrow() {
                let span = tracing::info_span!("exchange", otel.kind = "client", kind = "method");
                tokio::select! {
                    _ = method_exchange(&method_client, &device, &producer, timeout, &recorder, &mut streak).instrument(span) => {}
                    _ = stop.changed() => break,
                }
            }
        }));
    }
    if args.enable_message {
        let (recorder, mut stop, client, timeout) = (
            recorder.clone(),
            stop_rx.clone(),
            client.clone(),
            args.exchange_timeout,
        );
        loops.push(tokio::spawn(async move {
            let mut streak = ErrorStreak::default();
            while !*stop.borrow() {
                let span = tracing::info_span!("exchange", otel.kind = "client", kind = "message");
                tokio::select! {
                    _ = message_exchange(&client, &mut reply_rx, timeout, &recorder, &mut streak).instrument(span) => {}
                    _ = stop.changed() => break,
                }
            }
        }));
    }

    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + args.summary_interval,
        args.summary_interval,
    );
    let mut last = Instant::now();
    let shutdown = edge::seed::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                print_summary(&args, &kinds, &recorder, args.summary_interval);
                last = Instant::now();
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("consumer stopping");
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = tokio::time::timeout(Duration::from_secs(2), l).await;
    }
    print_summary(&args, &kinds, &recorder, last.elapsed());
    client.disconnect().await;
    tracing_guard.shutdown().await;
    Ok(())
}
