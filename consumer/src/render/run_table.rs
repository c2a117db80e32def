//! The whole run's summary at exit: per kind one line of percentiles and counts, then the verdict.

use super::{interval_words, ms, render_verdict};
use crate::kind::Kind;
use crate::schedule::Schedule;
use crate::stats::IntervalStats;
use crate::verdict::Verdict;
use std::time::Duration;

/// The whole run at exit: per kind one line of percentiles and counts, then the run's verdict.
pub fn render_run_table(
    stamp: &str,
    duration: Duration,
    stats: &IntervalStats,
    kinds: &[Kind],
    schedule: Schedule,
    verdict: Option<&Verdict>,
) -> String {
    let items: u64 = kinds.iter().map(|k| stats.kind(*k).count()).sum();
    let how = match schedule {
        Schedule::Closed => "closed loop".to_owned(),
        Schedule::Open {
            rate,
            max_in_flight,
        } => format!("open loop at {rate}/s per kind, at most {max_in_flight} in flight"),
    };
    let mut out = format!(
        "{stamp} - whole run: {items} items in {}, {how}\n",
        interval_words(duration)
    );
    for &kind in kinds {
        let k = stats.kind(kind);
        let q = |x| ms(k.total_quantile_ms(x));
        out.push_str(&format!(
            "{:<8} Total p50 {} ms | p90 {} ms | p99 {} ms | p99.9 {} ms | max {} ms | count {} | timeouts {} | errors {} | skipped {}\n",
            kind.title(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            ms(k.total_max_ms()),
            k.count(),
            k.timeouts,
            k.errors,
            k.skipped
        ));
    }
    if let Some(v) = verdict {
        out.push_str(&render_verdict(v));
    }
    out
}
