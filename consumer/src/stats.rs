//! One interval's figures per kind of exchange: min/max/sum per leg, the seed's 1-second bins, an
//! HDR histogram of Total for percentiles and a reservoir sample for the verdict, merged into the
//! whole run's. `render` turns them into the tables and JSON lines.

use crate::kind::Kind;
use crate::recorder::{Failure, LateReply};
use crate::verdict::{self, Reservoir, Verdict};
use hdrhistogram::Histogram;
use serde::Serialize;

/// One exchange's three legs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub c2p_ms: f64,
    pub p2c_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LegStats {
    pub count: u64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub sum_ms: f64,
}

impl LegStats {
    fn record(&mut self, ms: f64) {
        if self.count == 0 {
            self.min_ms = ms;
            self.max_ms = ms;
        } else {
            self.min_ms = self.min_ms.min(ms);
            self.max_ms = self.max_ms.max(ms);
        }
        self.count += 1;
        self.sum_ms += ms;
    }

    pub fn avg_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }

    fn absorb(&mut self, other: &LegStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
        self.count += other.count;
        self.sum_ms += other.sum_ms;
    }
}

/// The seed's 1-second bins of Total: `<1000, 1000 … 9000, >10000`.
pub const BINS: usize = 11;

/// Figures of one kind over one interval.
#[derive(Debug, Clone)]
pub struct KindStats {
    pub c2p: LegStats,
    pub p2c: LegStats,
    pub total: LegStats,
    pub bins: [u64; BINS],
    pub timeouts: u64,
    /// Failures other than timeouts, all classes: the sum of `failures`.
    pub errors: u64,
    /// Failures by class (`Failure as usize`).
    pub failures: [u64; Failure::ALL.len()],
    /// Replies no exchange waited for, by reason (`LateReply as usize`); not exchanges.
    pub late: [u64; LateReply::ALL.len()],
    /// Open loop: scheduled exchanges that did not start because `max_in_flight` were running.
    pub skipped: u64,
    /// Total in microseconds, 1 µs … 1 h at 3 significant digits, for percentiles.
    total_us: Histogram<u64>,
    /// A bounded uniform sample of Total (ms) for the verdict's bootstrap.
    sample: Reservoir,
}

impl Default for KindStats {
    fn default() -> Self {
        Self {
            c2p: LegStats::default(),
            p2c: LegStats::default(),
            total: LegStats::default(),
            bins: [0; BINS],
            timeouts: 0,
            errors: 0,
            failures: [0; Failure::ALL.len()],
            late: [0; LateReply::ALL.len()],
            skipped: 0,
            total_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| unreachable!("valid bounds")),
            sample: Reservoir::new(verdict::RESERVOIR, verdict::SEED),
        }
    }
}

impl KindStats {
    pub fn record(&mut self, s: &Sample) {
        self.c2p.record(s.c2p_ms);
        self.p2c.record(s.p2c_ms);
        self.total.record(s.total_ms);
        let bin = ((s.total_ms / 1000.0).floor().max(0.0) as usize).min(BINS - 1);
        self.bins[bin] += 1;
        self.total_us
            .saturating_record((s.total_ms * 1000.0).max(1.0) as u64);
        self.sample.push(s.total_ms);
    }

    pub fn count(&self) -> u64 {
        self.total.count
    }

    /// Counts a failed exchange in its class and in `errors`.
    pub fn fail(&mut self, f: Failure) {
        self.failures[f as usize] += 1;
        self.errors += 1;
    }

    /// Total at quantile `q` (0..=1) in milliseconds. The histogram reports the top of a value's
    /// bucket (within 0.1 %); capped at the exact maximum so that p99.9 never exceeds max.
    pub fn total_quantile_ms(&self, q: f64) -> Option<f64> {
        (self.count() > 0)
            .then(|| (self.total_us.value_at_quantile(q) as f64 / 1000.0).min(self.total.max_ms))
    }

    /// The exact largest Total.
    pub fn total_max_ms(&self) -> Option<f64> {
        (self.count() > 0).then_some(self.total.max_ms)
    }

    /// Total's recorded values in ms (the top of each HDR bucket, as the percentiles) with how
    /// many samples each holds: the HTML report's histogram.
    pub fn total_distribution_ms(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.total_us
            .iter_recorded()
            .map(|v| (v.value_iterated_to() as f64 / 1000.0, v.count_at_value()))
    }

    /// The sample of Total behind the verdict.
    pub fn sample(&self) -> &[f64] {
        self.sample.values()
    }

    fn reset(&mut self) {
        self.c2p = LegStats::default();
        self.p2c = LegStats::default();
        self.total = LegStats::default();
        self.bins = [0; BINS];
        self.timeouts = 0;
        self.errors = 0;
        self.failures = [0; Failure::ALL.len()];
        self.late = [0; LateReply::ALL.len()];
        self.skipped = 0;
        self.total_us.reset();
        self.sample.clear();
    }

    /// Adds another interval's figures (for the whole run): histograms merge, never percentiles.
    fn absorb(&mut self, other: &KindStats) {
        self.c2p.absorb(&other.c2p);
        self.p2c.absorb(&other.p2c);
        self.total.absorb(&other.total);
        for (a, b) in self.bins.iter_mut().zip(other.bins) {
            *a += b;
        }
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
        for (a, b) in self.late.iter_mut().zip(other.late) {
            *a += b;
        }
        self.skipped += other.skipped;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.total_us.add(&other.total_us);
        self.sample.merge(&other.sample);
    }
}

/// An interval's figures for every kind: what the minute table prints.
#[derive(Debug, Clone, Default)]
pub struct IntervalStats {
    pub method: KindStats,
    pub message: KindStats,
}

impl IntervalStats {
    pub fn kind(&self, k: Kind) -> &KindStats {
        match k {
            Kind::Method => &self.method,
            Kind::Message => &self.message,
        }
    }

    pub fn kind_mut(&mut self, k: Kind) -> &mut KindStats {
        match k {
            Kind::Method => &mut self.method,
            Kind::Message => &mut self.message,
        }
    }

    /// Moves the figures out and leaves an empty interval (keeping the histogram allocations).
    pub fn take(&mut self) -> IntervalStats {
        let taken = self.clone();
        self.method.reset();
        self.message.reset();
        taken
    }

    /// Adds another interval's figures to these.
    pub fn absorb(&mut self, other: &IntervalStats) {
        self.method.absorb(&other.method);
        self.message.absorb(&other.message);
    }

    /// Method against message, when both kinds are measured.
    pub fn verdict(&self, kinds: &[Kind]) -> Option<Verdict> {
        (kinds.contains(&Kind::Method) && kinds.contains(&Kind::Message))
            .then(|| verdict::compare(self.method.sample(), self.message.sample(), verdict::SEED))
    }
}

#[cfg(test)]
mod tests;
