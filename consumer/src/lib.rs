//! The consumer module: drives direct-method and message exchanges with the producer, times each
//! one (C->P, P->C, Total), prints the seed's table every interval and records every sample in
//! Prometheus histograms, with a trace across both modules per exchange.
//!
//! Two schedules: the seed's closed loop (the next exchange starts when the previous one ends —
//! a benchmark) and, with `--rate`, an open loop (exchanges start on a fixed schedule whatever
//! the replies, timed from their planned start — a canary; see `schedule`).
//!
//! A watchdog (`WATCHDOG_TIMEOUT`) ends the process when a loop stops concluding exchanges (a
//! timeout or a failure is progress: a hub that is down is no hang), the MQTT session stops
//! turning or the metrics server stops answering, so that the runtime restarts the module.
#![forbid(unsafe_code)]

mod exchange;
pub mod kind;
mod output;
pub mod recorder;
pub mod render;
mod replies;
pub mod report;
pub mod schedule;
pub mod snapshot;
pub mod stats;
pub mod sweep;
pub mod verdict;
pub mod workload;
mod workload_args;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use edge::seed::MESSAGE_ENDPOINT;
use edge::session::Subscriptions;
use edge::{Incoming, MethodClient, ModuleClient, ModuleIdentity};
use exchange::message::MessageExchange;
use exchange::method::MethodExchange;
use exchange::{Common, ErrorStreak, Exchange};
use kind::Kind;
use output::Output;
use recorder::Recorder;
use render::SummaryScope as Scope;
use replies::{CidClock, Delivery, PendingReplies};
use schedule::Schedule;
use schedule::{Lane, OpenLoop};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
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

fn kind(s: &str) -> Result<Kind, String> {
    Kind::ALL
        .into_iter()
        .find(|k| k.label() == s)
        .ok_or_else(|| format!("{s:?} is not method or message"))
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
    /// Bytes of padding in every request (the message body and the method payload), in a
    /// `padding` field the seed's producer ignores: 0, 512, 16KiB, 120KiB… (B, KiB, MiB).
    /// Refused over a kind's limit: 127 KiB for a direct method (its 128 KiB payload less 1 KiB
    /// for framing and trace context), 255 KiB for a message (256 KiB with its properties).
    #[arg(long, env = "PAYLOAD_BYTES", default_value = "0", value_parser = workload_args::size)]
    pub payload_bytes: usize,
    /// A sweep, instead of one workload until stopped: `rate=50,100,200,400` (the open loop at
    /// each rate) or `payload=0,1KiB,16KiB,120KiB` (each request size, at EXCHANGE_RATE). Each
    /// step runs WARMUP, then STEP measured; one summary per step, a final table with each
    /// kind's capacity and the crossover, and the module exits.
    #[arg(long, env = "SWEEP", value_parser = sweep::Sweep::parse)]
    pub sweep: Option<sweep::Sweep>,
    /// How long each sweep step is measured (after its warm-up).
    #[arg(long, env = "STEP", default_value = "30s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// Before each sweep step is measured, this long at its workload, not counted (queues from
    /// the previous step drain, connections settle). At most STEP.
    #[arg(long, env = "WARMUP", default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// A rate-sweep step is sustained when Total's p99 is under this bound (and no exchange was
    /// skipped, timed out or failed); a kind's capacity is the highest rate sustained.
    #[arg(long, env = "CAPACITY_P99", default_value = sweep::DEFAULT_P99_BOUND, value_parser = humantime::parse_duration)]
    pub capacity_p99: Duration,
    /// When the run ends, write its HTML report to this file (the page GET /report serves live).
    #[arg(long, env = "REPORT_FILE")]
    pub report: Option<std::path::PathBuf>,
    /// Watchdog: when an exchange loop concludes no exchange (a timeout or a failure counts), the
    /// MQTT session stops turning or the metrics server stops, for this long, log what stopped
    /// and exit with status 3, so that the runtime (restartPolicy: always) restarts the module.
    /// Must be longer than EXCHANGE_TIMEOUT; 0 turns it off.
    #[arg(long, env = "WATCHDOG_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub watchdog_timeout: Duration,
    /// TEST ONLY (tests/watchdog.rs): after this long, every exchange that starts blocks for good,
    /// to show the watchdog acting. Never set it in a deployment.
    #[arg(long, env = "TEST_FREEZE_AFTER", hide = true, value_parser = humantime::parse_duration)]
    pub test_freeze_after: Option<Duration>,
    /// TEST ONLY: freeze only this kind's exchanges (method or message); default both.
    #[arg(long, env = "TEST_FREEZE_KIND", hide = true, value_parser = kind)]
    pub test_freeze_kind: Option<Kind>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Besides running the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Ask this module's GET /healthz (127.0.0.1, METRICS_ADDR's port) and exit 0 if it answers
    /// 200, 1 otherwise with the reason on stderr (the images' HEALTHCHECK). Starts nothing.
    Healthcheck,
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

    /// The schedule `--rate` and `--max-in-flight` ask for (a rate sweep's starts at its first
    /// rate).
    pub fn schedule(&self) -> Result<Schedule> {
        let rate = match &self.sweep {
            Some(sweep::Sweep::Rate(rates)) if self.rate == 0.0 => {
                rates.first().copied().unwrap_or(0.0)
            }
            _ => self.rate,
        };
        if !(self.rate.is_finite() && (0.0..=MAX_RATE).contains(&self.rate)) {
            bail!(
                "EXCHANGE_RATE must be 0 (closed loop) or a rate up to {MAX_RATE} per second, not {}",
                self.rate
            );
        }
        if rate == 0.0 {
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
            rate,
            max_in_flight: self.max_in_flight,
        })
    }

    /// Refuses a watchdog that would end a healthy loop: one exchange may take EXCHANGE_TIMEOUT.
    pub fn check_watchdog(&self) -> Result<()> {
        let (watchdog, exchange) = (self.watchdog_timeout, self.exchange_timeout);
        if !watchdog.is_zero() && watchdog <= exchange {
            bail!(
                "WATCHDOG_TIMEOUT ({}) must be longer than EXCHANGE_TIMEOUT ({}): an exchange that times out is the longest a healthy loop goes without progress (0 turns the watchdog off)",
                humantime::format_duration(watchdog),
                humantime::format_duration(exchange)
            );
        }
        Ok(())
    }

    /// Test only: when `kind`'s exchanges freeze, if they do.
    fn freeze_at(&self, kind: Kind, start: Instant) -> Option<Instant> {
        let after = self.test_freeze_after?;
        self.test_freeze_kind
            .is_none_or(|k| k == kind)
            .then_some(start + after)
    }
}

/// Test only: blocks for good once `at` has passed (see `Args::test_freeze_after`).
async fn test_freeze(at: Option<Instant>) {
    if at.is_some_and(|at| Instant::now() >= at) {
        std::future::pending::<()>().await;
    }
}

/// How long the exit waits for exchanges in flight, then again for replies still owed to
/// timed-out ones (counted as late).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Starts exchanges of one kind until told to stop, each in its `exchange` span.
fn traced(
    kind: Kind,
    exchange: &Exchange,
    scheduled: Option<Instant>,
) -> impl std::future::Future<Output = ()> {
    let span = tracing::info_span!("exchange", otel.kind = "client", kind = kind.label());
    exchange(scheduled).instrument(span)
}

/// Runs until SIGTERM/Ctrl-C, then prints the last (partial) interval and the whole run;
/// `healthcheck` asks a running one's /healthz instead.
pub async fn run(args: Args) -> Result<()> {
    if let Some(Command::Healthcheck) = args.command {
        return telemetry::healthcheck(args.metrics_addr).map_err(anyhow::Error::msg);
    }
    let kinds = args.kinds();
    if kinds.is_empty() {
        bail!("EnableMethod and EnableMessage are both false: there is nothing to measure");
    }
    if args.summary_interval.is_zero() || args.exchange_timeout.is_zero() {
        bail!("SUMMARY_INTERVAL and EXCHANGE_TIMEOUT must be longer than zero");
    }
    let schedule = args.schedule()?;
    let plan = args.plan()?;
    args.check_watchdog()?;
    let tracing_guard = telemetry::init_module_tracing("consumer", args.trace_sample_ratio)?;
    let identity = Arc::new(ModuleIdentity::from_env()?);
    tracing::info!(identity = ?identity, producer = %args.producer, method = args.enable_method, message = args.enable_message, schedule = ?schedule, watchdog = ?args.watchdog_timeout, "consumer starting");

    let watchdog = telemetry::Watchdog::new(args.watchdog_timeout);
    let mut registry = telemetry::new_registry("consumer");
    let recorder = Recorder::register(&mut registry);
    let workload = workload::Workload::register(
        &mut registry,
        &plan
            .as_ref()
            .map_or_else(|| vec![args.payload_bytes], sweep::Plan::sizes),
        schedule.rate(),
    );
    let report_log = report::collect::RunLog::new(
        kinds.clone(),
        report::collect::settings(&args, schedule, &identity),
    );
    let _server = telemetry::serve_module_metrics_watched(
        args.metrics_addr,
        registry,
        args.metrics_addr_file.as_deref(),
        Some(report::collect::pages(report_log.clone(), recorder.clone())),
        Some(watchdog.clone()),
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
    let session = client.heartbeat();
    watchdog.watch("the MQTT session", "its loop last turned", move || {
        telemetry::Progress {
            last: session.last(),
            due: session.due(),
        }
    });
    if args.enable_message {
        // Every (re)connect of the session restarts the message kind's time to first success.
        let (mut connections, recorder) = (client.connections(), recorder.clone());
        tokio::spawn(async move {
            while connections.changed().await.is_ok() {
                recorder.reconnected(Kind::Message);
            }
        });
    }
    let pending = Arc::new(match schedule {
        Schedule::Closed => PendingReplies::default(),
        Schedule::Open { max_in_flight, .. } => PendingReplies::with_capacity(max_in_flight),
    });
    {
        let (pending, recorder) = (pending.clone(), recorder.clone());
        tokio::spawn(async move {
            while let Some(incoming) = deliveries.recv().await {
                match incoming {
                    Incoming::Input {
                        input,
                        message,
                        ack,
                    } if input == MESSAGE_ENDPOINT => {
                        match pending.complete(message) {
                            Delivery::Taken => {
                                // The woken exchange records its sample and, in the closed loop,
                                // sends the next request before this PUBACK is queued: the
                                // PUBACK is on no exchange's critical path, the request is.
                                tokio::task::yield_now().await;
                            }
                            Delivery::Ignored(why) => {
                                tracing::debug!(reason = why.as_str(), "reply ignored");
                                recorder.late(Kind::Message, why);
                            }
                        }
                        drop(ack);
                    }
                    Incoming::Input { input, .. } => {
                        tracing::debug!(%input, "message on an unexpected input ignored")
                    }
                    Incoming::Method { request, .. } => {
                        tracing::debug!(method = %request.method, "unexpected method request ignored")
                    }
                }
            }
            pending.close();
        });
    }

    // The longest a healthy loop goes without concluding an exchange: one that times out, after
    // the closed loop's pause or the open loop's period.
    let quiet = args.exchange_timeout
        + match schedule {
            Schedule::Closed => exchange::CLOSED_LOOP_BACKOFF,
            Schedule::Open { rate, .. } => Duration::from_secs_f64(1.0 / rate),
        };
    let common = |kind: Kind| Common {
        kind,
        timeout: args.exchange_timeout,
        recorder: recorder.clone(),
        streak: ErrorStreak::default(),
        progress: watchdog.pulse(
            format!("the {} loop", kind.label()),
            "last exchange finished",
            quiet,
        ),
        workload: workload.clone(),
    };
    let started_loops = Instant::now();
    if let Some(after) = args.test_freeze_after {
        tracing::warn!(?after, kind = ?args.test_freeze_kind, "TEST_FREEZE_AFTER is set: exchanges will block for good (a test switch)");
    }
    let overdue = Arc::new(AtomicUsize::new(0));
    let mut exchanges: Vec<(Kind, Exchange)> = Vec::new();
    if args.enable_message {
        let message = Arc::new(MessageExchange {
            common: common(Kind::Message),
            client: client.clone(),
            pending: pending.clone(),
            cids: CidClock::default(),
        });
        let freeze = args.freeze_at(Kind::Message, started_loops);
        exchanges.push((
            Kind::Message,
            Arc::new(move |scheduled| {
                let message = message.clone();
                Box::pin(async move {
                    test_freeze(freeze).await;
                    message.run(scheduled).await
                })
            }),
        ));
    }
    if args.enable_method {
        let method = Arc::new(MethodExchange {
            common: common(Kind::Method),
            client: Arc::new(MethodClient::new(identity.clone()).await?),
            device: identity.device_id.as_str().into(),
            producer: args.producer.as_str().into(),
            overdue: overdue.clone(),
        });
        // The first call connects.
        recorder.reconnected(Kind::Method);
        let freeze = args.freeze_at(Kind::Method, started_loops);
        exchanges.push((
            Kind::Method,
            Arc::new(move |scheduled| {
                let method = method.clone();
                Box::pin(async move {
                    test_freeze(freeze).await;
                    method.run(scheduled).await
                })
            }),
        ));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = Vec::new();
    let mut open_loop = None;
    match schedule {
        Schedule::Closed => {
            for (kind, exchange) in exchanges {
                let stop = stop_rx.clone();
                // An exchange in flight at the stop ends (within EXIT_GRACE) and is counted.
                loops.push(tokio::spawn(async move {
                    while !*stop.borrow() {
                        traced(kind, &exchange, None).await;
                    }
                }));
            }
        }
        Schedule::Open {
            rate,
            max_in_flight,
        } => {
            let runtime = tokio::runtime::Handle::current();
            let period = Duration::from_secs_f64(1.0 / rate);
            let lanes = exchanges
                .into_iter()
                .enumerate()
                .map(|(i, (kind, exchange))| {
                    let runtime = runtime.clone();
                    Lane {
                        kind,
                        // Staggered by half a period, so the two kinds do not collide.
                        offset: period / 2 * i as u32,
                        start: Box::new(move |scheduled, permit| {
                            let started = traced(kind, &exchange, Some(scheduled));
                            runtime.spawn(async move {
                                started.await;
                                drop(permit);
                            });
                        }),
                    }
                })
                .collect();
            open_loop = Some(OpenLoop::start(
                rate,
                max_in_flight,
                lanes,
                recorder.clone(),
            )?);
        }
    }

    watchdog.start()?;

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
    let shutdown = edge::signal::shutdown();
    tokio::pin!(shutdown);
    // A sweep's steps are its summaries; it ends after the last one.
    let steps = match &plan {
        Some(plan) => Some(
            sweep::Driver {
                plan,
                recorder: &recorder,
                workload: &workload,
                open_loop: open_loop.as_ref(),
                report_log: &report_log,
                output: &output,
            }
            .run(&mut shutdown)
            .await,
        ),
        None => None,
    };
    if plan.is_none() {
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
    }
    tracing::info!("consumer stopping");
    // Its work ends now, on purpose.
    watchdog.stop();
    let _ = stop_tx.send(true);
    if let Some(open_loop) = open_loop {
        open_loop.stop(EXIT_GRACE).await;
    }
    for l in loops {
        if tokio::time::timeout(EXIT_GRACE, l).await.is_err() {
            tracing::info!("an exchange still in flight at exit is not counted");
        }
    }
    // Replies still owed to timed-out exchanges: counted as late if they come now.
    tokio::join!(
        pending.drain(EXIT_GRACE),
        exchange::method::drain(&overdue, EXIT_GRACE)
    );
    if plan.is_none() {
        let (stats, covered) = (recorder.take_interval(), last.elapsed());
        report_log.interval(&stats, covered);
        output.print(Scope::Interval, stats, covered).await;
    } else {
        // Replies after the last step: not a step's.
        recorder.discard_interval();
    }
    let run = recorder.run_total();
    let report_written = match &args.report {
        Some(path) => report::collect::write_final(report_log, run.clone(), path.clone()).await,
        None => Ok(()),
    };
    output.print(Scope::Run, run, started.elapsed()).await;
    if let (Some(plan), Some(steps)) = (&plan, steps) {
        sweep::print_final(&output, plan, steps).await;
    }
    client.disconnect().await;
    tracing_guard.shutdown().await;
    report_written
}

#[cfg(test)]
mod tests;
