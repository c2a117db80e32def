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
//!
//! `cli` reads the command line into a [`Config`]; [`run`] measures: it serves /metrics, connects
//! the `link`, builds the `exchange`s, starts the `schedule`'s loops and prints the `summaries`
//! until stopped.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
mod exchange;
pub mod kind;
mod link;
mod metrics;
mod output;
pub mod recorder;
pub mod render;
mod replies;
pub mod report;
pub mod schedule;
pub mod snapshot;
pub mod stats;
mod summaries;
pub mod sweep;
pub mod verdict;
pub mod workload;

pub use cli::{Args, Command, SummaryFormat, MAX_RATE};
pub use config::Config;

use anyhow::Result;
use edge::ModuleIdentity;
use exchange::{Exchanges, Shared};
use kind::Kind;
use link::Link;
use metrics::Metrics;
use schedule::Loops;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use summaries::Summaries;
use tokio_util::sync::CancellationToken;

/// How long the exit waits for exchanges in flight, then again for replies still owed to
/// timed-out ones (counted as late).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Measures until `shutdown` (SIGTERM/Ctrl-C) or the end of a sweep, then prints the last
/// (partial) interval and the whole run. Every part stops with one cancellation token.
pub async fn run(
    config: Config,
    identity: Arc<ModuleIdentity>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tracing::info!(identity = ?identity, producer = %config.producer, method = config.measures(Kind::Method), message = config.measures(Kind::Message), schedule = ?config.schedule, watchdog = ?config.watchdog_timeout, "consumer starting");
    let watchdog = telemetry::Watchdog::new(config.watchdog_timeout);
    let (metrics, _server) = Metrics::serve(&config, &identity, &watchdog).await?;
    let link = Link::connect(identity.clone(), &config, &metrics.recorder, &watchdog).await?;
    let shared = Shared {
        config: &config,
        metrics: &metrics,
        watchdog: &watchdog,
    };
    let Exchanges { kinds, owed } = Exchanges::build(&shared, &identity, &link).await?;
    let stop = CancellationToken::new();
    let loops = Loops::start(config.schedule, kinds, &metrics.recorder, &stop)?;
    watchdog.start()?;
    let summaries = Summaries::new(&config, &metrics);
    // The signal ends the summaries first; the loops stop only after the watchdog has been told
    // that the quiet to come is on purpose.
    let summaries_stop = stop.child_token();
    let measured = stop_on(
        shutdown,
        &summaries_stop,
        summaries.until_stopped(&summaries_stop, loops.open_loop()),
    )
    .await;
    tracing::info!("consumer stopping");
    watchdog.stop();
    stop.cancel();
    loops.join(EXIT_GRACE).await;
    owed.drain(EXIT_GRACE).await;
    let report_written = summaries.at_exit(measured).await;
    link.client.disconnect().await;
    report_written
}

/// Runs `work` to its end, cancelling `stop` when `shutdown` comes first (the work then sees
/// the token and ends).
async fn stop_on<T>(
    shutdown: impl Future<Output = ()>,
    stop: &CancellationToken,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return done,
        () = shutdown => stop.cancel(),
    }
    work.await
}
