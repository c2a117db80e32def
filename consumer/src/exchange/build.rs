//! The run's exchanges, one per measured kind, built on the module's link and method client and
//! sharing the recorder, the workload and the watchdog; and, at exit, the wait for replies still
//! owed to exchanges that timed out.

use super::message::MessageExchange;
use super::method::{self, MethodExchange};
use super::{Common, ErrorStreak, Exchange};
use crate::config::Config;
use crate::kind::Kind;
use crate::link::Link;
use crate::metrics::Metrics;
use crate::replies::{CidClock, PendingReplies};
use crate::schedule::Schedule;
use anyhow::Result;
use edge::{MethodClient, ModuleIdentity};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the exchanges of every measured kind share.
pub(crate) struct Shared<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    pub watchdog: &'a telemetry::Watchdog,
}

/// The run's exchanges, ready for the loops.
pub(crate) struct Exchanges {
    /// One per measured kind (messages first).
    pub kinds: Vec<(Kind, Exchange)>,
    pub owed: OwedReplies,
}

/// Replies still owed to exchanges that timed out, of either kind.
pub(crate) struct OwedReplies {
    pending: Arc<PendingReplies>,
    /// Method calls still running after their exchange timed out.
    overdue: Arc<AtomicUsize>,
}

impl Exchanges {
    /// Builds each measured kind's exchange (the method kind's client too).
    pub(crate) async fn build(
        shared: &Shared<'_>,
        identity: &Arc<ModuleIdentity>,
        link: &Link,
    ) -> Result<Self> {
        let started = Instant::now();
        if let Some(freeze) = shared.config.freeze {
            tracing::warn!(after = ?freeze.after, kind = ?freeze.kind, "TEST_FREEZE_AFTER is set: exchanges will block for good (a test switch)");
        }
        let overdue = Arc::new(AtomicUsize::new(0));
        let mut kinds = Vec::new();
        if shared.config.measures(Kind::Message) {
            kinds.push((Kind::Message, message(shared, link, started)));
        }
        if shared.config.measures(Kind::Method) {
            let exchange = method(shared, identity, &overdue, started).await?;
            kinds.push((Kind::Method, exchange));
        }
        Ok(Self {
            kinds,
            owed: OwedReplies {
                pending: link.pending.clone(),
                overdue,
            },
        })
    }
}

impl OwedReplies {
    /// At exit, once the loops have ended: waits up to `grace` for the replies still owed to
    /// timed-out exchanges, so that they are counted as late if they come now.
    pub(crate) async fn drain(&self, grace: Duration) {
        tokio::join!(
            self.pending.drain(grace),
            method::drain(&self.overdue, grace)
        );
    }
}

/// The longest a healthy loop goes without concluding an exchange: one that times out, after the
/// closed loop's pause or the open loop's period.
fn quiet(config: &Config) -> Duration {
    config.exchange_timeout
        + match config.schedule {
            Schedule::Closed => super::CLOSED_LOOP_BACKOFF,
            Schedule::Open { rate, .. } => Duration::from_secs_f64(1.0 / rate),
        }
}

fn common(shared: &Shared<'_>, kind: Kind) -> Common {
    Common {
        kind,
        timeout: shared.config.exchange_timeout,
        recorder: shared.metrics.recorder.clone(),
        streak: ErrorStreak::default(),
        progress: shared.watchdog.pulse(
            format!("the {} loop", kind.label()),
            "last exchange finished",
            quiet(shared.config),
        ),
        workload: shared.metrics.workload.clone(),
    }
}

fn message(shared: &Shared<'_>, link: &Link, started: Instant) -> Exchange {
    let message = Arc::new(MessageExchange {
        common: common(shared, Kind::Message),
        client: link.client.clone(),
        pending: link.pending.clone(),
        cids: CidClock::default(),
    });
    let freeze = shared.config.freeze_at(Kind::Message, started);
    Arc::new(move |scheduled| {
        let message = message.clone();
        Box::pin(async move {
            test_freeze(freeze).await;
            message.run(scheduled).await
        })
    })
}

async fn method(
    shared: &Shared<'_>,
    identity: &Arc<ModuleIdentity>,
    overdue: &Arc<AtomicUsize>,
    started: Instant,
) -> Result<Exchange> {
    let client = MethodClient::new(identity.clone()).await?;
    let target = client.target(&identity.device_id, &shared.config.producer)?;
    let method = Arc::new(MethodExchange {
        common: common(shared, Kind::Method),
        client: Arc::new(client),
        target,
        overdue: overdue.clone(),
    });
    // The first call connects.
    shared.metrics.recorder.reconnected(Kind::Method);
    let freeze = shared.config.freeze_at(Kind::Method, started);
    Ok(Arc::new(move |scheduled| {
        let method = method.clone();
        Box::pin(async move {
            test_freeze(freeze).await;
            method.run(scheduled).await
        })
    }))
}

/// Test only: blocks for good once `at` has passed (see `Config::freeze`).
async fn test_freeze(at: Option<Instant>) {
    if at.is_some_and(|at| Instant::now() >= at) {
        std::future::pending::<()>().await;
    }
}
