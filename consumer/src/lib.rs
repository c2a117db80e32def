//! The consumer module: drives direct-method and message exchanges with the producer, times each
//! one (C->P, P->C, Total), prints the seed's table every interval and records every sample in
//! Prometheus histograms, with a trace across both modules per exchange.
//!
//! Two schedules: the seed's closed loop (the next exchange starts when the previous one ends —
//! a benchmark) and, with `--rate`, an open loop (exchanges start on a fixed schedule whatever
//! the replies, timed from their planned start — a canary; see `schedule`).
#![forbid(unsafe_code)]

pub mod recorder;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod verdict;

use anyhow::{bail, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use edge::seed::{TimeReply, TimeRequest, MESSAGE_ENDPOINT, METHOD_NAME};
use edge::session::Subscriptions;
use edge::{Incoming, Message, MethodClient, ModuleClient, ModuleIdentity};
use recorder::{Outcome, Recorder};
use schedule::{Lane, OpenLoop};
use stats::{IntervalStats, Kind, Sample, Schedule, Scope};
use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::Instrument;

/// Above this the schedule's period would drop below 10 µs: not a canary any more.
pub const MAX_RATE: f64 = 100_000.0;

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
    /// Exchanges per second of each enabled kind, started on a fixed schedule whatever the replies
    /// and timed from their planned start (open loop: a canary); 0 keeps the seed's closed loop
    /// (the next exchange starts when the previous one ends: a benchmark).
    #[arg(long, env = "EXCHANGE_RATE", default_value_t = 0.0)]
    pub rate: f64,
    /// Open loop: at most this many exchanges of each kind at once; a due exchange beyond it is
    /// counted as skipped.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 100)]
    pub max_in_flight: usize,
    /// When the run ends, write its HTML report to this file (the page GET /report serves live).
    #[arg(long, env = "REPORT_FILE")]
    pub report: Option<std::path::PathBuf>,
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

    /// The schedule `--rate` and `--max-in-flight` ask for.
    pub fn schedule(&self) -> Result<Schedule> {
        if !(self.rate.is_finite() && (0.0..=MAX_RATE).contains(&self.rate)) {
            bail!(
                "EXCHANGE_RATE must be 0 (closed loop) or a rate up to {MAX_RATE} per second, not {}",
                self.rate
            );
        }
        if self.rate == 0.0 {
            return Ok(Schedule::Closed);
        }
        if self.max_in_flight == 0 || self.max_in_flight > Semaphore::MAX_PERMITS.min(1 << 20) {
            bail!(
                "MAX_IN_FLIGHT must be between 1 and {}, not {}",
                1 << 20,
                self.max_in_flight
            );
        }
        Ok(Schedule::Open {
            rate: self.rate,
            max_in_flight: self.max_in_flight,
        })
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

/// Logs an error streak once, and its end. Shared by the open loop's concurrent exchanges.
#[derive(Default)]
struct ErrorStreak(AtomicU64);

impl ErrorStreak {
    fn failed(&self, kind: Kind, what: &str) {
        if self.0.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                kind = kind.label(),
                error = what,
                "exchange failed; further failures are counted, not logged (the closed loop retries every second)"
            );
        }
    }
    fn succeeded(&self, kind: Kind) {
        // A load first: the common case (no streak) writes nothing.
        if self.0.load(Ordering::Relaxed) > 0 {
            let failures = self.0.swap(0, Ordering::Relaxed);
            if failures > 0 {
                tracing::info!(kind = kind.label(), failures, "exchanges succeed again");
            }
        }
    }
}

/// Send times that are unique correlation ids: the seed's `$.cid` is the send time in round-trip
/// format (100 ns ticks), and two open-loop sends within one tick get consecutive ticks.
#[derive(Default)]
struct CidClock(AtomicI64);

impl CidClock {
    const TICKS_PER_SECOND: i64 = 10_000_000;

    fn next(&self) -> DateTime<Utc> {
        let now = Utc::now();
        let ticks = now.timestamp() * Self::TICKS_PER_SECOND
            + i64::from((now.timestamp_subsec_nanos() / 100).min(9_999_999));
        let previous = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(ticks.max(last + 1))
            })
            .unwrap_or(ticks);
        let t = ticks.max(previous + 1);
        DateTime::from_timestamp(
            t.div_euclid(Self::TICKS_PER_SECOND),
            (t.rem_euclid(Self::TICKS_PER_SECOND) * 100) as u32,
        )
        .unwrap_or(now)
    }
}

/// Open loop: the message exchanges waiting for a reply, by correlation id, so that concurrent
/// exchanges each get their own reply (a method's reply comes back on its own HTTP request).
#[derive(Default)]
struct PendingReplies(Mutex<PendingMap>);

#[derive(Default)]
struct PendingMap {
    waiting: HashMap<String, oneshot::Sender<Message>>,
    closed: bool,
}

impl PendingReplies {
    fn with_capacity(n: usize) -> Self {
        Self(Mutex::new(PendingMap {
            waiting: HashMap::with_capacity(n),
            closed: false,
        }))
    }

    /// Registers an exchange before its message is sent (the reply may beat the send's return).
    fn expect(&self, cid: String) -> oneshot::Receiver<Message> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.0.lock() {
            if !p.closed {
                p.waiting.insert(cid, tx);
            }
        }
        rx // dropped sender (session over): the receiver fails at once
    }

    fn forget(&self, cid: &str) {
        if let Ok(mut p) = self.0.lock() {
            p.waiting.remove(cid);
        }
    }

    /// Hands a reply to its exchange; false for a late or foreign reply.
    fn complete(&self, reply: Message) -> bool {
        let waiter = match (reply.correlation_id(), self.0.lock()) {
            (Some(cid), Ok(mut p)) => p.waiting.remove(cid),
            _ => None,
        };
        match waiter {
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        }
    }

    /// The session's deliveries ended: every waiting exchange fails now, later ones at once.
    fn close(&self) {
        if let Ok(mut p) = self.0.lock() {
            p.closed = true;
            p.waiting.clear();
        }
    }
}

/// Where message replies go: the closed loop's single waiter, or the open loop's table.
enum ReplyRoute {
    Channel(mpsc::Sender<Message>),
    Pending(Arc<PendingReplies>),
}

/// One method call. `scheduled` is the open loop's planned start, from which Total and the
/// deadline count; the closed loop passes `None` (they count from now) and pauses a second
/// after an error.
async fn method_exchange(
    client: &MethodClient,
    device: &str,
    producer: &str,
    timeout: Duration,
    recorder: &Recorder,
    streak: &ErrorStreak,
    scheduled: Option<Instant>,
) {
    let mut request = TimeRequest::default();
    telemetry::inject_current(|k, v| {
        request.trace.insert(k.to_owned(), v);
    });
    let payload = serde_json::to_value(&request).unwrap_or(serde_json::Value::Null);
    let sent = Utc::now();
    let start = scheduled.unwrap_or_else(Instant::now);
    // Our deadline is the exchange timeout; the hub's own (at least 5 s) only bounds its wait.
    let result = match tokio::time::timeout_at(
        tokio::time::Instant::from_std(start + timeout),
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
            if scheduled.is_none() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Records a message exchange's reply (its exchange already matched it by correlation id).
fn message_replied(
    reply: &Message,
    sent: DateTime<Utc>,
    total: Duration,
    recorder: &Recorder,
    streak: &ErrorStreak,
) {
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
}

/// The closed loop's message exchange: one at a time, replies on one channel.
async fn message_exchange(
    client: &ModuleClient,
    replies: &mut mpsc::Receiver<Message>,
    timeout: Duration,
    recorder: &Recorder,
    streak: &ErrorStreak,
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
        message_replied(&reply, sent, start.elapsed(), recorder, streak);
        return;
    }
}

/// The open loop's message exchange: many may be in flight, each waits for the reply that carries
/// its correlation id. Total and the deadline count from the planned start.
async fn open_message_exchange(
    client: &ModuleClient,
    pending: &PendingReplies,
    cids: &CidClock,
    timeout: Duration,
    recorder: &Recorder,
    streak: &ErrorStreak,
    scheduled: Instant,
) {
    let deadline = tokio::time::Instant::from_std(scheduled + timeout);
    let sent = cids.next();
    let cid = edge::time::round_trip(sent);
    let reply = pending.expect(cid.clone());
    let mut message = Message::new(Bytes::new()).with_correlation_id(cid.as_str());
    telemetry::inject_current(|k, v| message.properties.insert(k, v));
    let failure = match tokio::time::timeout_at(
        deadline,
        client.send_output(MESSAGE_ENDPOINT, message),
    )
    .await
    {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            streak.failed(Kind::Message, &e.to_string());
            Some(Outcome::Error)
        }
        Err(_) => Some(Outcome::Timeout),
    };
    if let Some(outcome) = failure {
        pending.forget(&cid);
        recorder.record(Kind::Message, outcome);
        return;
    }
    match tokio::time::timeout_at(deadline, reply).await {
        Err(_) => {
            pending.forget(&cid);
            tracing::debug!(correlation_id = %cid, "message reply timed out");
            recorder.record(Kind::Message, Outcome::Timeout);
        }
        Ok(Err(_)) => {
            streak.failed(Kind::Message, "the edge hub session ended");
            recorder.record(Kind::Message, Outcome::Error);
        }
        Ok(Ok(reply)) => message_replied(&reply, sent, scheduled.elapsed(), recorder, streak),
    }
}

/// How summaries are printed.
#[derive(Clone)]
struct Output {
    format: SummaryFormat,
    kinds: Vec<Kind>,
    schedule: Schedule,
}

impl Output {
    fn render(&self, scope: Scope, stats: &IntervalStats, covered: Duration) -> String {
        let stamp = edge::time::round_trip_offset(Utc::now());
        let verdict = stats.verdict(&self.kinds);
        let mut out = String::new();
        if matches!(self.format, SummaryFormat::Table | SummaryFormat::Both) {
            match scope {
                Scope::Interval => {
                    out.push_str(&stats::render_table(
                        &stamp,
                        covered,
                        stats,
                        &self.kinds,
                        true,
                    ));
                    if let Some(v) = &verdict {
                        out.push_str(&stats::render_verdict(v));
                    }
                }
                Scope::Run => out.push_str(&stats::render_run_table(
                    &stamp,
                    covered,
                    stats,
                    &self.kinds,
                    self.schedule,
                    verdict.as_ref(),
                )),
            }
        }
        if matches!(self.format, SummaryFormat::Json | SummaryFormat::Both) {
            out.push_str(&stats::render_summary_json(
                scope,
                &stamp,
                covered,
                stats,
                &self.kinds,
                self.schedule,
                verdict.as_ref(),
            ));
            out.push('\n');
        }
        out
    }

    /// Renders (the verdict's bootstrap takes milliseconds of CPU) and writes off the async
    /// workers, in one write so tables from concurrent output never interleave.
    async fn print(&self, scope: Scope, stats: IntervalStats, covered: Duration) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let out = this.render(scope, &stats, covered);
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        })
        .await;
    }
}

/// Runs until SIGTERM/Ctrl-C, then prints the last (partial) interval and the whole run.
pub async fn run(args: Args) -> Result<()> {
    let kinds = args.kinds();
    if kinds.is_empty() {
        bail!("EnableMethod and EnableMessage are both false: there is nothing to measure");
    }
    if args.summary_interval.is_zero() || args.exchange_timeout.is_zero() {
        bail!("SUMMARY_INTERVAL and EXCHANGE_TIMEOUT must be longer than zero");
    }
    let schedule = args.schedule()?;
    let tracing_guard = telemetry::init_module_tracing("consumer", args.trace_sample_ratio)?;
    let identity = Arc::new(ModuleIdentity::from_env()?);
    tracing::info!(identity = ?identity, producer = %args.producer, method = args.enable_method, message = args.enable_message, schedule = ?schedule, "consumer starting");

    let mut registry = telemetry::new_registry("consumer");
    let recorder = Recorder::register(&mut registry);
    let report_log = report::collect::RunLog::new(
        kinds.clone(),
        report::collect::settings(&args, schedule, &identity),
    );
    let _server = telemetry::serve_module_metrics_with(
        args.metrics_addr,
        registry,
        args.metrics_addr_file.as_deref(),
        Some(report::collect::pages(report_log.clone(), recorder.clone())),
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
    let pending = Arc::new(match schedule {
        Schedule::Closed => PendingReplies::default(),
        Schedule::Open { max_in_flight, .. } => PendingReplies::with_capacity(max_in_flight),
    });
    let route = match schedule {
        Schedule::Closed => ReplyRoute::Channel(reply_tx),
        Schedule::Open { .. } => ReplyRoute::Pending(pending.clone()),
    };
    tokio::spawn(async move {
        while let Some(incoming) = deliveries.recv().await {
            match incoming {
                Incoming::Input { input, message } if input == MESSAGE_ENDPOINT => match &route {
                    ReplyRoute::Channel(tx) => {
                        if tx.send(message).await.is_err() {
                            return;
                        }
                    }
                    ReplyRoute::Pending(pending) => {
                        if !pending.complete(message) {
                            tracing::debug!("late or foreign reply ignored");
                        }
                    }
                },
                Incoming::Input { input, .. } => {
                    tracing::debug!(%input, "message on an unexpected input ignored")
                }
                Incoming::Method(m) => {
                    tracing::debug!(method = %m.method, "unexpected method request ignored")
                }
            }
        }
        if let ReplyRoute::Pending(pending) = &route {
            pending.close();
        }
    });

    let method_client = match args.enable_method {
        true => Some(Arc::new(MethodClient::new(identity.clone()).await?)),
        false => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = Vec::new();
    let mut open_loop = None;
    match schedule {
        Schedule::Closed => {
            if let Some(method_client) = method_client {
                let (recorder, mut stop, device, producer, timeout) = (
                    recorder.clone(),
                    stop_rx.clone(),
                    identity.device_id.clone(),
                    args.producer.clone(),
                    args.exchange_timeout,
                );
                loops.push(tokio::spawn(async move {
                    let streak = ErrorStreak::default();
                    while !*stop.borrow() {
                        let span =
                            tracing::info_span!("exchange", otel.kind = "client", kind = "method");
                        tokio::select! {
                            _ = method_exchange(&method_client, &device, &producer, timeout, &recorder, &streak, None).instrument(span) => {}
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
                    let streak = ErrorStreak::default();
                    while !*stop.borrow() {
                        let span =
                            tracing::info_span!("exchange", otel.kind = "client", kind = "message");
                        tokio::select! {
                            _ = message_exchange(&client, &mut reply_rx, timeout, &recorder, &streak).instrument(span) => {}
                            _ = stop.changed() => break,
                        }
                    }
                }));
            }
        }
        Schedule::Open {
            rate,
            max_in_flight,
        } => {
            let runtime = tokio::runtime::Handle::current();
            let timeout = args.exchange_timeout;
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut lanes = Vec::new();
            if args.enable_message {
                let (recorder, client, runtime, pending) = (
                    recorder.clone(),
                    client.clone(),
                    runtime.clone(),
                    pending.clone(),
                );
                let (cids, streak) = (
                    Arc::new(CidClock::default()),
                    Arc::new(ErrorStreak::default()),
                );
                lanes.push(Lane {
                    kind: Kind::Message,
                    offset: Duration::ZERO,
                    start: Box::new(move |scheduled, permit| {
                        let (recorder, client, pending, cids, streak) = (
                            recorder.clone(),
                            client.clone(),
                            pending.clone(),
                            cids.clone(),
                            streak.clone(),
                        );
                        runtime.spawn(async move {
                            let span = tracing::info_span!(
                                "exchange",
                                otel.kind = "client",
                                kind = "message"
                            );
                            open_message_exchange(
                                &client, &pending, &cids, timeout, &recorder, &streak, scheduled,
                            )
                            .instrument(span)
                            .await;
                            drop(permit);
                        });
                    }),
                });
            }
            if let Some(method_client) = method_client {
                let (recorder, runtime) = (recorder.clone(), runtime.clone());
                let device: Arc<str> = identity.device_id.as_str().into();
                let producer: Arc<str> = args.producer.as_str().into();
                let streak = Arc::new(ErrorStreak::default());
                lanes.push(Lane {
                    kind: Kind::Method,
                    // Half a period after the messages, so the two kinds do not collide.
                    offset: if args.enable_message {
                        period / 2
                    } else {
                        Duration::ZERO
                    },
                    start: Box::new(move |scheduled, permit| {
                        let (recorder, client, device, producer, streak) = (
                            recorder.clone(),
                            method_client.clone(),
                            device.clone(),
                            producer.clone(),
                            streak.clone(),
                        );
                        runtime.spawn(async move {
                            let span = tracing::info_span!(
                                "exchange",
                                otel.kind = "client",
                                kind = "method"
                            );
                            method_exchange(
                                &client,
                                &device,
                                &producer,
                                timeout,
                                &recorder,
                                &streak,
                                Some(scheduled),
                            )
                            .instrument(span)
                            .await;
                            drop(permit);
                        });
                    }),
                });
            }
            open_loop = Some(OpenLoop::start(
                rate,
                max_in_flight,
                lanes,
                recorder.clone(),
            )?);
        }
    }

    let output = Output {
        format: args.summary_format,
        kinds,
        schedule,
    };
    let started = Instant::now();
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
                let stats = recorder.take_interval();
                // The next interval starts now, not once this one is printed.
                last = Instant::now();
                report_log.interval(&stats, args.summary_interval);
                output.print(Scope::Interval, stats, args.summary_interval).await;
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("consumer stopping");
    let _ = stop_tx.send(true);
    if let Some(open_loop) = open_loop {
        open_loop.stop(Duration::from_secs(2)).await;
    }
    for l in loops {
        let _ = tokio::time::timeout(Duration::from_secs(2), l).await;
    }
    let (stats, covered) = (recorder.take_interval(), last.elapsed());
    report_log.interval(&stats, covered);
    output.print(Scope::Interval, stats, covered).await;
    let run = recorder.run_total();
    let report_written = match &args.report {
        Some(path) => report::collect::write_final(report_log, run.clone(), path.clone()).await,
        None => Ok(()),
    };
    output.print(Scope::Run, run, started.elapsed()).await;
    client.disconnect().await;
    tracing_guard.shutdown().await;
    report_written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_unique_send_times_in_the_seeds_format() {
        let cids = CidClock::default();
        let before = Utc::now();
        let ids: Vec<String> = (0..10_000)
            .map(|_| edge::time::round_trip(cids.next()))
            .collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let first = edge::time::parse(&ids[0]).unwrap();
        assert!(
            (first - before).num_milliseconds().abs() < 1000,
            "{}",
            ids[0]
        );
        assert!(ids[0].ends_with('Z') && ids[0].len() == 28, "{}", ids[0]);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[tokio::test]
    async fn concurrent_message_replies_go_to_their_own_exchange() {
        let pending = PendingReplies::with_capacity(4);
        let reply = |cid: &str, body: &'static str| {
            Message::new(Bytes::from_static(body.as_bytes())).with_correlation_id(cid)
        };
        let a = pending.expect("a".into());
        let b = pending.expect("b".into());
        // Replies in the other order, and one for nobody.
        assert!(pending.complete(reply("b", "to b")));
        assert!(!pending.complete(reply("zzz", "late")));
        assert!(pending.complete(reply("a", "to a")));
        assert_eq!(&a.await.unwrap().body[..], b"to a");
        assert_eq!(&b.await.unwrap().body[..], b"to b");
        // A forgotten (timed-out) exchange's reply is ignored.
        let c = pending.expect("c".into());
        pending.forget("c");
        assert!(!pending.complete(reply("c", "too late")));
        assert!(c.await.is_err());
        // When the session's deliveries end, waiting and later exchanges fail at once.
        let d = pending.expect("d".into());
        pending.close();
        assert!(d.await.is_err());
        assert!(pending.expect("e".into()).await.is_err());
    }

    #[test]
    fn rate_zero_is_the_closed_loop_and_bad_values_are_refused() {
        let args = |extra: &[&str]| {
            let mut argv = vec!["consumer"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).unwrap()
        };
        assert_eq!(args(&[]).schedule().unwrap(), Schedule::Closed);
        assert_eq!(
            args(&["--rate", "50"]).schedule().unwrap(),
            Schedule::Open {
                rate: 50.0,
                max_in_flight: 100
            }
        );
        assert_eq!(
            args(&["--rate", "0.5", "--max-in-flight", "3"])
                .schedule()
                .unwrap(),
            Schedule::Open {
                rate: 0.5,
                max_in_flight: 3
            }
        );
        for bad in [
            &["--rate=-1"][..],
            &["--rate", "NaN"],
            &["--rate", "1e9"],
            &["--rate", "5", "--max-in-flight", "0"],
        ] {
            assert!(args(bad).schedule().is_err(), "{bad:?}");
        }
    }
}
