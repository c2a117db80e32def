//! The one recording path: every exchange outcome updates the interval figures behind the minute
//! table and the Prometheus series together, so the two can never disagree. Each interval taken
//! is also added to the whole run's figures, printed at exit.

use crate::kind::Kind;
use crate::stats::{IntervalStats, Sample};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use telemetry::carrier::TraceExemplar;

/// Bucket bounds in seconds: dense below one second for ms-level quantiles, then every 1 s bound
/// from 1 to 10 (the seed's bins).
pub const LATENCY_BUCKETS: [f64; 22] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
    0.5, 0.75, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0,
];
// 8, 9 and 10 follow; kept apart so the table above stays readable.
const UPPER_BUCKETS: [f64; 3] = [8.0, 9.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LegLabels {
    kind: &'static str,
    leg: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LateLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Handles for one kind, resolved once so recording does no lookup or allocation.
#[derive(Clone)]
struct KindSeries {
    c2p: HistogramWithExemplars<TraceExemplar>,
    p2c: HistogramWithExemplars<TraceExemplar>,
    total: HistogramWithExemplars<TraceExemplar>,
    ok: Counter,
    timeout: Counter,
    /// By `Failure as usize`.
    failed: [Counter; Failure::ALL.len()],
    skipped: Counter,
    /// By `LateReply as usize`.
    late: [Counter; LateReply::ALL.len()],
    first_success: Gauge<f64, AtomicU64>,
    /// Since when a success is awaited to set `first_success` (a (re)connect), if one is.
    reconnected: Arc<Mutex<Option<Instant>>>,
    /// Fast path of the above: a load per success when nothing is awaited.
    awaiting: Arc<AtomicBool>,
}

/// Why an exchange failed, other than by timing out: the `outcome` label's failure classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The hub (or the producer, through it) answered with an error status.
    HubRefused,
    /// No connection to the hub, or it broke (includes an ended MQTT session).
    Transport,
    /// The TLS handshake with the hub failed.
    Tls,
    /// A reply arrived but is not the producer's `{"UtcTime":…}` (or the hub's envelope).
    Malformed,
}

impl Failure {
    pub const ALL: [Failure; 4] = [
        Failure::HubRefused,
        Failure::Transport,
        Failure::Tls,
        Failure::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::HubRefused => "hub_refused",
            Failure::Transport => "transport",
            Failure::Tls => "tls",
            Failure::Malformed => "malformed",
        }
    }
}

/// A reply no exchange is waiting for: counted in `iotedge_late_replies_total{kind,reason}`,
/// never a sample and never a second outcome of its exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LateReply {
    /// The first reply to an exchange that had already timed out (the timeout is its outcome).
    AfterTimeout,
    /// A further copy of a reply already taken (a hub resend after a lost PUBACK).
    Duplicate,
    /// A correlation id this consumer does not remember sending (too old, or foreign).
    Unmatched,
}

impl LateReply {
    pub const ALL: [LateReply; 3] = [
        LateReply::AfterTimeout,
        LateReply::Duplicate,
        LateReply::Unmatched,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LateReply::AfterTimeout => "after_timeout",
            LateReply::Duplicate => "duplicate",
            LateReply::Unmatched => "unmatched",
        }
    }
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Ok(Sample),
    Timeout,
    Failed(Failure),
    /// Open loop: the exchange was due but `max_in_flight` were already running.
    Skipped,
}

#[derive(Clone)]
pub struct Recorder {
    interval: Arc<Mutex<IntervalStats>>,
    run: Arc<Mutex<IntervalStats>>,
    method: KindSeries,
    message: KindSeries,
}

impl Recorder {
    pub fn register(registry: &mut Registry) -> Self {
        let latency =
            Family::<LegLabels, HistogramWithExemplars<TraceExemplar>>::new_with_constructor(
                || HistogramWithExemplars::new(LATENCY_BUCKETS.into_iter().chain(UPPER_BUCKETS)),
            );
        let exchanges = Family::<OutcomeLabels, Counter>::default();
        let late = Family::<LateLabels, Counter>::default();
        let first_success = Family::<KindLabel, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "iotedge_exchange_latency",
            "Exchange latency by kind (method|message) and leg (c2p|p2c|total); exemplars carry the trace id on total",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "iotedge_exchanges",
            "Exchanges by kind and outcome (ok|timeout|hub_refused|transport|tls|malformed|skipped)",
            exchanges.clone(),
        );
        registry.register(
            "iotedge_late_replies",
            "Replies no exchange waited for, by kind and reason (after_timeout|duplicate|unmatched); ignored, not exchanges",
            late.clone(),
        );
        registry.register_with_unit(
            "iotedge_time_to_first_success",
            "From the latest (re)connect of the kind's transport to its first successful exchange",
            Unit::Seconds,
            first_success.clone(),
        );
        // One handle per statement: a Family guard lives to the end of its statement, and a
        // second get_or_create on the same family within it would wait on that guard.
        let series = |kind: &'static str| {
            let leg = |leg: &'static str| latency.get_or_create(&LegLabels { kind, leg }).clone();
            let outcome = |outcome: &'static str| {
                exchanges
                    .get_or_create(&OutcomeLabels { kind, outcome })
                    .clone()
            };
            let reason = |r: LateReply| {
                late.get_or_create(&LateLabels {
                    kind,
                    reason: r.as_str(),
                })
                .clone()
            };
            let c2p = leg("c2p");
            let p2c = leg("p2c");
            let total = leg("total");
            let ok = outcome("ok");
            let timeout = outcome("timeout");
            let failed = Failure::ALL.map(|f| outcome(f.as_str()));
            let skipped = outcome("skipped");
            let late = LateReply::ALL.map(reason);
            let first_success = first_success.get_or_create(&KindLabel { kind }).clone();
            KindSeries {
                c2p,
                p2c,
                total,
                ok,
                timeout,
                failed,
                skipped,
                late,
                first_success,
                reconnected: Arc::new(Mutex::new(None)),
                awaiting: Arc::new(AtomicBool::new(false)),
            }
        };
        Self {
            interval: Arc::new(Mutex::new(IntervalStats::default())),
            run: Arc::new(Mutex::new(IntervalStats::default())),
            method: series("method"),
            message: series("message"),
        }
    }

    fn series(&self, kind: Kind) -> &KindSeries {
        match kind {
            Kind::Method => &self.method,
            Kind::Message => &self.message,
        }
    }

    /// Records an outcome. Call inside the exchange's span so the exemplar names its trace.
    pub fn record(&self, kind: Kind, outcome: Outcome) {
        let series = self.series(kind);
        match outcome {
            Outcome::Ok(sample) => {
                // Cross-module legs use two wall clocks; a negative reading is clock noise.
                series
                    .c2p
                    .observe((sample.c2p_ms / 1000.0).max(0.0), None, None);
                series
                    .p2c
                    .observe((sample.p2c_ms / 1000.0).max(0.0), None, None);
                series.total.observe(
                    sample.total_ms / 1000.0,
                    telemetry::current_trace_id(),
                    None,
                );
                series.ok.inc();
                if series.awaiting.load(Ordering::Relaxed) {
                    if let Some(since) = series.reconnected.lock().ok().and_then(|mut r| r.take()) {
                        series.awaiting.store(false, Ordering::Relaxed);
                        series.first_success.set(since.elapsed().as_secs_f64());
                    }
                }
            }
            Outcome::Timeout => {
                series.timeout.inc();
            }
            Outcome::Failed(f) => {
                series.failed[f as usize].inc();
            }
            Outcome::Skipped => {
                series.skipped.inc();
            }
        }
        if let Ok(mut interval) = self.interval.lock() {
            let k = interval.kind_mut(kind);
            match outcome {
                Outcome::Ok(sample) => k.record(&sample),
                Outcome::Timeout => k.timeouts += 1,
                Outcome::Failed(f) => k.fail(f),
                Outcome::Skipped => k.skipped += 1,
            }
        }
    }

    /// Counts a reply that no exchange waited for (it is otherwise ignored).
    pub fn late(&self, kind: Kind, why: LateReply) {
        self.series(kind).late[why as usize].inc();
        if let Ok(mut interval) = self.interval.lock() {
            interval.kind_mut(kind).late[why as usize] += 1;
        }
    }

    /// The kind's transport (re)connects now: the next success sets
    /// `iotedge_time_to_first_success_seconds{kind}` to the time since (a later reconnect before
    /// it restarts the clock).
    pub fn reconnected(&self, kind: Kind) {
        let series = self.series(kind);
        if let Ok(mut since) = series.reconnected.lock() {
            *since = Some(Instant::now());
            series.awaiting.store(true, Ordering::Relaxed);
        }
    }

    /// The figures since the last call; the next interval starts empty. They are added to the
    /// whole run's figures too.
    pub fn take_interval(&self) -> IntervalStats {
        let taken = self
            .interval
            .lock()
            .map(|mut i| i.take())
            .unwrap_or_default();
        if let Ok(mut run) = self.run.lock() {
            run.absorb(&taken);
        }
        taken
    }

    /// Drops the figures since the last take (a sweep step's warm-up): they count nowhere.
    pub fn discard_interval(&self) {
        if let Ok(mut interval) = self.interval.lock() {
            let _ = interval.take();
        }
    }

    /// Every interval taken so far, merged.
    pub fn run_total(&self) -> IntervalStats {
        self.run.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// A copy of the open interval's figures so far (the live report); the interval goes on.
    pub fn current_interval(&self) -> IntervalStats {
        self.interval.lock().map(|i| i.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_metrics_agree() {
        let mut registry = Registry::default();
        let r = Recorder::register(&mut registry);
        r.record(
            Kind::Method,
            Outcome::Ok(Sample {
                c2p_ms: 1.0,
                p2c_ms: 2.0,
                total_ms: 3.5,
            }),
        );
        r.record(Kind::Method, Outcome::Timeout);
        r.record(Kind::Message, Outcome::Failed(Failure::Tls));
        r.late(Kind::Message, LateReply::Duplicate);
        r.record(Kind::Message, Outcome::Skipped);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"iotedge_exchanges_total{kind="method",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"iotedge_exchanges_total{kind="method",outcome="timeout"} 1"#));
        assert!(text.contains(r#"iotedge_exchanges_total{kind="message",outcome="tls"} 1"#));
        assert!(text.contains(r#"iotedge_exchanges_total{kind="message",outcome="transport"} 0"#));
        assert!(!text.contains(r#"outcome="error""#));
        assert!(text.contains(r#"iotedge_late_replies_total{kind="message",reason="duplicate"} 1"#));
        assert!(text.contains(r#"iotedge_exchanges_total{kind="message",outcome="skipped"} 1"#));
        assert!(text.contains(r#"iotedge_exchanges_total{kind="method",outcome="skipped"} 0"#));
        assert!(
            text.contains(
                r#"iotedge_exchange_latency_seconds_bucket{le="0.005",kind="method",leg="total"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"iotedge_exchange_latency_seconds_bucket{le="10.0",kind="method",leg="total"} 1"#
        ));
        assert!(
            text.contains(r#"iotedge_exchange_latency_seconds_count{kind="method",leg="c2p"} 1"#)
        );
        let interval = r.take_interval();
        assert_eq!(
            (
                interval.method.count(),
                interval.method.timeouts,
                interval.message.errors
            ),
            (1, 1, 1)
        );
        assert_eq!(interval.message.skipped, 1);
        assert_eq!(r.take_interval().method.count(), 0);
        r.record(
            Kind::Method,
            Outcome::Ok(Sample {
                c2p_ms: 1.0,
                p2c_ms: 1.0,
                total_ms: 9.0,
            }),
        );
        r.take_interval();
        // The run total holds every interval taken.
        let run = r.run_total();
        assert_eq!((run.method.count(), run.method.timeouts), (2, 1));
        assert_eq!(run.method.total.max_ms, 9.0);
        assert_eq!(run.method.sample().len(), 2);
        assert_eq!((run.message.errors, run.message.skipped), (1, 1));
        assert_eq!(run.message.failures[Failure::Tls as usize], 1);
        assert_eq!(run.message.late[LateReply::Duplicate as usize], 1);
    }

    #[test]
    fn time_to_first_success_runs_from_the_reconnect_to_the_next_success() {
        let mut registry = Registry::default();
        let r = Recorder::register(&mut registry);
        let ok = Outcome::Ok(Sample {
            c2p_ms: 1.0,
            p2c_ms: 1.0,
            total_ms: 2.0,
        });
        let gauge = |r: &Recorder| r.method.first_success.get();
        r.record(Kind::Method, ok);
        assert_eq!(gauge(&r), 0.0, "no reconnect yet");
        r.reconnected(Kind::Method);
        std::thread::sleep(std::time::Duration::from_millis(20));
        r.record(Kind::Method, Outcome::Failed(Failure::Transport));
        assert_eq!(gauge(&r), 0.0, "a failure is not a success");
        r.record(Kind::Method, ok);
        let first = gauge(&r);
        assert!((0.02..1.0).contains(&first), "{first}");
        r.record(Kind::Method, ok);
        assert_eq!(
            gauge(&r),
            first,
            "only the first success after a reconnect counts"
        );
        assert_eq!(r.message.first_success.get(), 0.0);
    }

    #[test]
    fn buckets_cover_the_seed_bins() {
        let all: Vec<f64> = LATENCY_BUCKETS
            .iter()
            .chain(&UPPER_BUCKETS)
            .copied()
            .collect();
        for s in 1..=10 {
            assert!(all.contains(&(s as f64)), "{s}");
        }
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }
}
