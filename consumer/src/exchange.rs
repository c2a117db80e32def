//! One exchange of either kind, and what both kinds share: the reply's parsing and span, the
//! error streak's logging and how an outcome is concluded. The loops (closed and open) start
//! exchanges through [`Exchange`] without knowing their kind.

mod build;
pub(crate) mod message;
pub(crate) mod method;

pub(crate) use build::{Exchanges, Shared};

use crate::kind::Kind;
use crate::recorder::{Outcome, Recorder};
use chrono::{DateTime, Utc};
use edge::seed::TimeReply;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The closed loop's pause after a failure (not after a timeout, which already waited).
pub(crate) const CLOSED_LOOP_BACKOFF: Duration = Duration::from_secs(1);

/// Starts one exchange of a kind. `scheduled` is the open loop's planned start, from which Total
/// and the deadline count; the closed loop passes `None` (they count from now) and pauses
/// [`CLOSED_LOOP_BACKOFF`] after a failure.
pub(crate) type Exchange =
    Arc<dyn Fn(Option<Instant>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn millis_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a)
        .num_microseconds()
        .map(|us| us as f64 / 1000.0)
        .unwrap_or(f64::NAN)
}

/// The three legs of an exchange sent at `sent`, stamped by the producer at `produced`, and
/// received at `received`, with `total` measured on the monotonic clock.
pub(crate) fn sample(
    sent: DateTime<Utc>,
    produced: DateTime<Utc>,
    received: DateTime<Utc>,
    total: Duration,
) -> crate::stats::Sample {
    crate::stats::Sample {
        c2p_ms: millis_between(sent, produced),
        p2c_ms: millis_between(produced, received),
        total_ms: total.as_secs_f64() * 1000.0,
    }
}

/// A reply as read: the seed's fields, and the padding's length only (never copied).
#[derive(serde::Deserialize)]
struct WireReply {
    #[serde(rename = "UtcTime")]
    utc_time: String,
    #[serde(default)]
    trace: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    padding: PaddingLen,
}

/// The length of a string field, read without keeping the string.
#[derive(Default)]
struct PaddingLen(usize);

impl<'de> serde::Deserialize<'de> for PaddingLen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Len;
        impl serde::de::Visitor<'_> for Len {
            type Value = PaddingLen;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PaddingLen, E> {
                Ok(PaddingLen(v.len()))
            }
        }
        d.deserialize_str(Len)
    }
}

/// The producer's timestamp, trace context and padding length from a reply, or why it is
/// unusable.
pub(crate) fn parse_reply(body: &[u8]) -> Result<(DateTime<Utc>, TimeReply, usize), String> {
    read_reply(serde_json::from_slice(body))
}

fn read_reply(
    parsed: serde_json::Result<WireReply>,
) -> Result<(DateTime<Utc>, TimeReply, usize), String> {
    let reply = parsed.map_err(|e| format!("reply is not {{\"UtcTime\":…}}: {e}"))?;
    let produced = edge::time::parse(&reply.utc_time)
        .ok_or_else(|| format!("UtcTime {:?} is not a time", reply.utc_time))?;
    let seed = TimeReply {
        utc_time: reply.utc_time,
        trace: reply.trace,
    };
    Ok((produced, seed, reply.padding.0))
}

/// The consumer's span around receiving a reply: its parent is the producer's handling span.
pub(crate) fn reply_span(kind: Kind, get: impl Fn(&str) -> Option<String>) {
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
pub(crate) struct ErrorStreak(AtomicU64);

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

/// What every exchange of a kind shares.
pub(crate) struct Common {
    pub kind: Kind,
    pub timeout: Duration,
    pub recorder: Recorder,
    pub streak: ErrorStreak,
    /// The watchdog's view of this kind's loop: beats once per concluded exchange.
    pub progress: Arc<telemetry::Pulse>,
    /// What the requests carry, and the replies' padding seen.
    pub workload: Arc<crate::workload::Workload>,
}

impl Common {
    /// Records how the exchange ended (`why` says what failed) and, in the closed loop, pauses
    /// after a failure.
    async fn conclude(&self, outcome: Outcome, why: &str, scheduled: Option<Instant>) {
        match outcome {
            Outcome::Ok(_) => self.streak.succeeded(self.kind),
            Outcome::Failed(_) => self.streak.failed(self.kind, why),
            Outcome::Timeout => {
                tracing::debug!(kind = self.kind.label(), why, "exchange timed out")
            }
            Outcome::Skipped => {}
        }
        self.recorder.record(self.kind, outcome);
        self.progress.beat();
        if scheduled.is_none() && matches!(outcome, Outcome::Failed(_)) {
            tokio::time::sleep(CLOSED_LOOP_BACKOFF).await;
        }
    }
}
