//! How exchanges are started, in one place: the seed's closed loop (the next exchange of a kind
//! starts when the previous one ends — a benchmark) or, with `--rate`, the open loop
//! (`open_loop`: exchanges start on a fixed schedule whatever the replies — a canary). `Loops`
//! starts either for every measured kind and, once the run's token is cancelled, joins them.

mod open_loop;

pub use open_loop::{Lane, OpenLoop, Starter};

use crate::exchange::Exchange;
use crate::kind::Kind;
use crate::recorder::Recorder;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How exchanges are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The seed's loop: the next exchange starts when the previous one ends.
    Closed,
    /// `rate` exchanges per second per kind on a fixed schedule, at most `max_in_flight` at once.
    Open { rate: f64, max_in_flight: usize },
}

impl Schedule {
    pub fn label(self) -> &'static str {
        match self {
            Schedule::Closed => "closed",
            Schedule::Open { .. } => "open",
        }
    }

    /// The configured rate; 0 for the closed loop (as `--rate 0`).
    pub fn rate(self) -> f64 {
        match self {
            Schedule::Closed => 0.0,
            Schedule::Open { rate, .. } => rate,
        }
    }
}

/// Starts one exchange of `kind` in its `exchange` span.
fn traced(
    kind: Kind,
    exchange: &Exchange,
    scheduled: Option<Instant>,
) -> impl std::future::Future<Output = ()> {
    let span = tracing::info_span!("exchange", otel.kind = "client", kind = kind.label());
    exchange(scheduled).instrument(span)
}

/// The exchange loops of a run, on its schedule.
pub(crate) struct Loops {
    /// The closed loop: one task per kind.
    closed: Vec<JoinHandle<()>>,
    open: Option<OpenLoop>,
}

impl Loops {
    /// Starts `exchanges` on `schedule` until `stop` is cancelled.
    pub(crate) fn start(
        schedule: Schedule,
        exchanges: Vec<(Kind, Exchange)>,
        recorder: &Recorder,
        stop: &CancellationToken,
    ) -> std::io::Result<Self> {
        Ok(match schedule {
            Schedule::Closed => Self {
                closed: closed_loops(exchanges, stop),
                open: None,
            },
            Schedule::Open {
                rate,
                max_in_flight,
            } => Self {
                closed: Vec::new(),
                open: Some(OpenLoop::start(
                    rate,
                    max_in_flight,
                    lanes(rate, exchanges),
                    recorder.clone(),
                )?),
            },
        })
    }

    /// The open loop, whose rate a sweep sets per step; none in the closed loop.
    pub(crate) fn open_loop(&self) -> Option<&OpenLoop> {
        self.open.as_ref()
    }

    /// Once the run's token is cancelled: waits up to `grace` for the exchanges in flight (they
    /// are counted), and says when some are not.
    pub(crate) async fn join(self, grace: Duration) {
        if let Some(open_loop) = self.open {
            open_loop.stop(grace).await;
        }
        for l in self.closed {
            if tokio::time::timeout(grace, l).await.is_err() {
                tracing::info!("an exchange still in flight at exit is not counted");
            }
        }
    }
}

/// The seed's loop per kind: the next exchange starts when the previous one ends. An exchange in
/// flight when `stop` is cancelled ends (within the exit's grace) and is counted.
fn closed_loops(exchanges: Vec<(Kind, Exchange)>, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    exchanges
        .into_iter()
        .map(|(kind, exchange)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    traced(kind, &exchange, None).await;
                }
            })
        })
        .collect()
}

/// The open loop's lanes: each kind's exchanges started as tasks at their planned instants.
fn lanes(rate: f64, exchanges: Vec<(Kind, Exchange)>) -> Vec<Lane> {
    let runtime = tokio::runtime::Handle::current();
    let period = Duration::from_secs_f64(1.0 / rate);
    exchanges
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
        .collect()
}
