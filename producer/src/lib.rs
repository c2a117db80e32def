//! The producer module: answers the direct method `GetTimeMethod` and the input `GetTimeMessage`
//! with the current UTC time (the seed's Producer.cs, docs/protocol.md#the-seeds-wire-contract),
//! instrumented, with a watchdog that ends the process when its session or handler hangs.
//!
//! [`cli::main`] is the process (flags, tracing, identity, signals); [`run`] is the module given
//! its [`Config`], its identity and what tells it to stop.
#![forbid(unsafe_code)]

pub mod cli;
mod config;
mod handle;
mod metrics;

pub use cli::{Args, Command};
pub use config::Config;
pub use metrics::ProducerMetrics;

use anyhow::Result;
use chrono::Utc;
use edge::session::Subscriptions;
use edge::{Incoming, ModuleClient, ModuleIdentity};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telemetry::{Pulse, Watchdog};
use tokio::sync::mpsc;

/// The longest a request's handling may take when all is well (it takes microseconds; a full
/// request queue may hold a reply back a little).
const HANDLER_BOUND: Duration = Duration::from_secs(1);

/// Runs the module until `shutdown` completes (or its hub session ends, an error).
pub async fn run(
    config: Config,
    identity: Arc<ModuleIdentity>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tracing::info!(identity = ?identity, watchdog = ?config.watchdog_timeout, reply_bytes = config.reply_bytes, "producer starting");
    let watchdog = Watchdog::new(config.watchdog_timeout);
    let (metrics, _server) = serve_metrics(&config, &watchdog).await?;
    let (client, deliveries) = ModuleClient::connect(identity, Subscriptions::ALL).await?;
    let producer = Producer {
        handler: watch_work(&watchdog, &client),
        freeze_at: freeze_at(config.test_freeze_after),
        // Built once: a reply copies it, never makes it.
        padding: edge::payload::padding(config.reply_bytes),
        client,
        metrics,
    };
    watchdog.start()?;
    let served = producer
        .serve(deliveries, config.summary_interval, shutdown)
        .await;
    watchdog.stop();
    served?.print();
    tracing::info!("producer stopping");
    producer.client.disconnect().await;
    Ok(())
}

/// Registers the producer's metrics and serves them, under the watchdog.
async fn serve_metrics(
    config: &Config,
    watchdog: &Watchdog,
) -> Result<(ProducerMetrics, telemetry::MetricsServer)> {
    let mut registry = telemetry::new_registry("producer");
    let metrics = ProducerMetrics::register(&mut registry);
    let server = telemetry::serve_module_metrics_watched(
        config.metrics_addr,
        registry,
        config.metrics_addr_file.as_deref(),
        None,
        Some(watchdog.clone()),
    )
    .await?;
    Ok((metrics, server))
}

/// Puts the MQTT session and the request handler under the watchdog; the handler's pulse.
fn watch_work(watchdog: &Watchdog, client: &ModuleClient) -> Arc<Pulse> {
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
    handler
}

/// Test only: when the request handler is to block for good (see `Args::test_freeze_after`).
fn freeze_at(after: Option<Duration>) -> Option<Instant> {
    after.map(|after| {
        tracing::warn!(
            ?after,
            "TEST_FREEZE_AFTER is set: the request handler will block for good (a test switch)"
        );
        Instant::now() + after
    })
}

/// Test only: blocks for good once `at` has passed (see `Args::test_freeze_after`).
async fn test_freeze(at: Option<Instant>) {
    if at.is_some_and(|at| Instant::now() >= at) {
        std::future::pending::<()>().await;
    }
}

/// Requests answered since the last count line.
#[derive(Default)]
struct Counts {
    methods: u64,
    messages: u64,
}

impl Counts {
    /// The seed's line: "{0:O} - {1} Method calls, {2} Message calls ".
    fn print(&self) {
        println!(
            "{} - {} Method calls, {} Message calls",
            edge::time::round_trip_offset(Utc::now()),
            self.methods,
            self.messages
        );
    }
}

/// The running module: its session, metrics, reply padding and handler pulse.
struct Producer {
    client: ModuleClient,
    metrics: ProducerMetrics,
    padding: String,
    handler: Arc<Pulse>,
    freeze_at: Option<Instant>,
}

impl Producer {
    /// Answers deliveries and prints the count line every `interval` until `shutdown`; the
    /// counts since the last line.
    async fn serve(
        &self,
        mut deliveries: mpsc::Receiver<Incoming>,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Counts> {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut counts = Counts::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                incoming = deliveries.recv() => {
                    let Some(incoming) = incoming else {
                        anyhow::bail!("the edge hub session ended");
                    };
                    self.handle(incoming, &mut counts).await;
                }
                _ = ticker.tick() => {
                    counts.print();
                    counts = Counts::default();
                }
                _ = &mut shutdown => return Ok(counts),
            }
        }
    }

    /// Answers one delivery, under the handler's pulse.
    async fn handle(&self, incoming: Incoming, counts: &mut Counts) {
        self.handler.beat();
        test_freeze(self.freeze_at).await;
        let (client, metrics, padding) = (&self.client, &self.metrics, self.padding.as_str());
        match incoming {
            // Acknowledged once answered: the reply leaves first.
            Incoming::Method { request, ack } => {
                counts.methods += 1;
                handle::on_method(client, metrics, padding, request).await;
                drop(ack);
            }
            Incoming::Input {
                input,
                message,
                ack,
            } => {
                counts.messages += 1;
                handle::on_message(client, metrics, padding, &input, message).await;
                drop(ack);
            }
        }
        self.handler.idle();
    }
}
