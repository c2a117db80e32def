//! One JSON line per summary, for scripts: each kind's figures, the schedule and the verdict.

use super::SummaryScope;
use crate::kind::Kind;
use crate::recorder::{Failure, LateReply};
use crate::schedule::Schedule;
use crate::stats::{IntervalStats, KindStats, LegStats, BINS};
use crate::verdict::Verdict;
use serde::Serialize;
use std::time::Duration;

#[derive(Serialize)]
struct JsonLeg {
    min_ms: Option<f64>,
    max_ms: Option<f64>,
    avg_ms: Option<f64>,
}

impl JsonLeg {
    fn of(l: &LegStats) -> Self {
        Self {
            min_ms: (l.count > 0).then_some(l.min_ms),
            max_ms: (l.count > 0).then_some(l.max_ms),
            avg_ms: l.avg_ms(),
        }
    }
}

#[derive(Serialize)]
struct JsonKind {
    count: u64,
    timeouts: u64,
    /// Every failure other than a timeout: the sum of `failures`.
    errors: u64,
    /// By class: hub_refused, transport, tls, malformed.
    failures: serde_json::Map<String, serde_json::Value>,
    /// Replies ignored, by reason: after_timeout, duplicate, unmatched.
    late_replies: serde_json::Map<String, serde_json::Value>,
    skipped: u64,
    c2p: JsonLeg,
    p2c: JsonLeg,
    total: JsonLeg,
    total_p50_ms: Option<f64>,
    total_p90_ms: Option<f64>,
    total_p99_ms: Option<f64>,
    total_p999_ms: Option<f64>,
    total_max_ms: Option<f64>,
    bins: [u64; BINS],
    /// Run and step lines: the verdict's sample, for `compare` (`snapshot`, docs/compare.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    sample: Option<crate::snapshot::SampleSnapshot>,
}

impl JsonKind {
    fn of(scope: SummaryScope, k: &KindStats) -> Self {
        Self {
            count: k.count(),
            timeouts: k.timeouts,
            errors: k.errors,
            failures: Failure::ALL
                .iter()
                .map(|f| (f.as_str().to_owned(), k.failures[*f as usize].into()))
                .collect(),
            late_replies: LateReply::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), k.late[*r as usize].into()))
                .collect(),
            skipped: k.skipped,
            c2p: JsonLeg::of(&k.c2p),
            p2c: JsonLeg::of(&k.p2c),
            total: JsonLeg::of(&k.total),
            total_p50_ms: k.total_quantile_ms(0.5),
            total_p90_ms: k.total_quantile_ms(0.9),
            total_p99_ms: k.total_quantile_ms(0.99),
            total_p999_ms: k.total_quantile_ms(0.999),
            total_max_ms: k.total_max_ms(),
            bins: k.bins,
            sample: crate::snapshot::SampleSnapshot::for_scope(scope, k),
        }
    }
}

fn verdict_json(v: &Verdict) -> serde_json::Value {
    serde_json::json!({
        "faster": v.faster,
        "median_diff_ms": v.median_diff_ms,
        "ci95_ms": v.ci95_ms.map(|(lo, hi)| [lo, hi]),
        "n": { "method": v.n_method, "message": v.n_message },
    })
}

/// One JSON line with the interval's figures, for scripts (closed loop, verdict computed here).
pub fn render_json(
    stamp: &str,
    interval: Duration,
    stats: &IntervalStats,
    kinds: &[Kind],
) -> String {
    render_summary_json(
        SummaryScope::Interval,
        stamp,
        interval,
        stats,
        kinds,
        Schedule::Closed,
        stats.verdict(kinds).as_ref(),
    )
}

/// One JSON line: an interval's (or the whole run's) figures per kind, the schedule and the
/// verdict (`null` when only one kind is measured).
pub fn render_summary_json(
    scope: SummaryScope,
    stamp: &str,
    interval: Duration,
    stats: &IntervalStats,
    kinds: &[Kind],
    schedule: Schedule,
    verdict: Option<&Verdict>,
) -> String {
    let mut map = serde_json::Map::new();
    for &kind in kinds {
        let j = JsonKind::of(scope, stats.kind(kind));
        map.insert(
            kind.label().to_owned(),
            serde_json::to_value(j).unwrap_or_default(),
        );
    }
    let max_in_flight = match schedule {
        Schedule::Closed => None,
        Schedule::Open { max_in_flight, .. } => Some(max_in_flight),
    };
    serde_json::json!({
        "time": stamp,
        "scope": match scope { SummaryScope::Interval => "interval", SummaryScope::Run => "run", SummaryScope::Step => "step" },
        "interval_seconds": interval.as_secs_f64(),
        "schedule": schedule.label(),
        "rate": schedule.rate(),
        "max_in_flight": max_in_flight,
        "kinds": map,
        "verdict": verdict.map(verdict_json),
    })
    .to_string()
}
