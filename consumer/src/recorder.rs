//! The one recording path: every exchange outcome updates the interval figures behind the minute
//! table and the Prometheus series together, so the two can never disagree. Each interval taken
//! is also added to the whole run's figures, printed at exit.

use crate::stats::{IntervalStats, Kind, Sample};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};
use std::sync::{Arc, Mutex};
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

/// Handles for one kind, resolved once so recording does no lookup or allocation.
#[derive(Clone)]
struct KindSeries {
    c2p: HistogramWithExemplars<TraceExemplar>,
    p2c: HistogramWithExemplars<TraceExemplar>,
    total: HistogramWithExemplars<TraceExemplar>,
    ok: Counter,
    timeout: Counter,
    error: Counter,
    skipped: Counter,
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Ok(Sample),
    Timeout,
    Error,
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
        registry.register_with_unit(
            "iotedge_exchange_latency",
            "Exchange latency by kind (method|message) and leg (c2p|p2c|total); exemplars carry the trace id on total",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "iotedge_exchanges",
            "Exchanges by kind and outcome (ok|timeout|error|skipped)",
            exchanges.clone(),
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
            let c2p = leg("c2p");
            let p2c = leg("p2c");
            let total = leg("total");
            let ok = outcome("ok");
            let timeout = outcome("timeout");
            let error = outcome("error");
            let skipped = outcome("skipped");
            KindSeries {
                c2p,
                p2c,
                total,
                ok,
                timeout,
                error,
                skipped,
            }
        };
        Self {
            interval: Arc::new(Mutex::new(IntervalStats::default())),
            run: Arc::new(Mutex::new(IntervalStats::default())),
            method: series("method"),
            message: series("message"),
        }
    }

    /// Records an outcome. Call inside the exchange's span so the exemplar names its trace.
    pub fn record(&self, kind: Kind, outcome: Outcome) {
        let series = match kind {
            Kind::Method => &self.method,
            Kind::Message => &self.message,
        };
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
            }
            Outcome::Timeout => {
                series.timeout.inc();
            }
            Outcome::Error => {
                series.error.inc();
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
                Outcome::Error => k.errors += 1,
                Outcome::Skipped => k.skipped += 1,
            }
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
        r.record(Kind::Message, Outcome::Error);
        r.record(Kind::Message, Outcome::Skipped);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"iotedge_exchanges_total{kind="method",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"iotedge_exchanges_total{kind="method",outcome="timeout"} 1"#));
        assert!(text.contains(r#"iotedge_exchanges_total{kind="message",outcome="error"} 1"#));
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
