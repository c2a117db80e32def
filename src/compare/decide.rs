//! Whether run B is slower or faster than run A for one kind: the change of the median and of the
//! p99 of Total, each with a 95 % percentile-bootstrap interval over the two runs' samples, and
//! the rule that turns them into "slower", "faster" or "no significant change".
//!
//! The median's interval is the verdict's own (`consumer::verdict::compare`, B against A); the
//! p99's is the same bootstrap (same generator, seed and number of resamples) on the p99.

use consumer::verdict::{self, Faster};

/// A change counts when its 95 % interval excludes 0 **and** it is at least this fraction of A's
/// value: two runs of one build on a busy machine differ by a few per cent for reasons the
/// bootstrap cannot see (CPU frequency, other processes), and such a difference is not a change
/// anyone acts on.
pub const DEFAULT_THRESHOLD_PERCENT: f64 = 25.0;

/// The statistic a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Median,
    P99,
}

impl Stat {
    pub fn label(self) -> &'static str {
        match self {
            Stat::Median => "median",
            Stat::P99 => "p99",
        }
    }
}

/// What a change amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Slower,
    Faster,
    NoChange,
    /// Fewer than `verdict::MIN_SAMPLES` values in a run: no interval, no decision.
    TooFewSamples,
}

impl Outcome {
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Slower => "slower",
            Outcome::Faster => "faster",
            Outcome::NoChange => "no significant change",
            Outcome::TooFewSamples => "too few samples",
        }
    }
}

/// One statistic of one kind, A against B, in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub stat: Stat,
    pub a_ms: f64,
    pub b_ms: f64,
    /// B − A: positive when B is slower.
    pub diff_ms: f64,
    /// 95 % interval of B − A; `None` below `verdict::MIN_SAMPLES` values of either run.
    pub ci95_ms: Option<(f64, f64)>,
    pub outcome: Outcome,
}

impl Change {
    /// The change relative to A, in per cent (`None` when A's value is 0).
    pub fn percent(&self) -> Option<f64> {
        (self.a_ms > 0.0).then(|| self.diff_ms / self.a_ms * 100.0)
    }
}

/// The medians' change, B − A; `None` when a run has no sample at all.
pub fn median(a: &[f64], b: &[f64], threshold_percent: f64) -> Option<Change> {
    // The verdict compares its first argument against its second: B against A.
    let v = verdict::compare(b, a, verdict::SEED);
    let diff_ms = v.median_diff_ms?;
    let a_ms = quantile(&sorted(a), Stat::Median)?;
    let significant = match v.faster {
        Faster::Method => Some(Outcome::Faster),
        Faster::Message => Some(Outcome::Slower),
        Faster::None => None,
    };
    Some(decide(
        Stat::Median,
        a_ms,
        diff_ms,
        v.ci95_ms,
        significant,
        threshold_percent,
    ))
}

/// The p99s' change, B − A, with the verdict's bootstrap on the p99; `None` when a run has no
/// sample at all.
pub fn p99(a: &[f64], b: &[f64], threshold_percent: f64) -> Option<Change> {
    let (a, b) = (sorted(a), sorted(b));
    let (a_ms, b_ms) = (quantile(&a, Stat::P99)?, quantile(&b, Stat::P99)?);
    let diff_ms = b_ms - a_ms;
    let ci95_ms = (a.len() >= verdict::MIN_SAMPLES && b.len() >= verdict::MIN_SAMPLES)
        .then(|| verdict::bootstrap_diff_ci95(&b, &a, |n| ranks(n, Stat::P99), verdict::SEED));
    let significant = ci95_ms.and_then(|(lo, hi)| {
        if lo > 0.0 {
            Some(Outcome::Slower)
        } else if hi < 0.0 {
            Some(Outcome::Faster)
        } else {
            None
        }
    });
    Some(decide(
        Stat::P99,
        a_ms,
        diff_ms,
        ci95_ms,
        significant,
        threshold_percent,
    ))
}

/// The rule: significant (the interval excludes 0) and at least the threshold (relative to A).
fn decide(
    stat: Stat,
    a_ms: f64,
    diff_ms: f64,
    ci95_ms: Option<(f64, f64)>,
    significant: Option<Outcome>,
    threshold_percent: f64,
) -> Change {
    let large_enough = diff_ms.abs() >= a_ms * threshold_percent / 100.0;
    let outcome = match (ci95_ms, significant) {
        (None, _) => Outcome::TooFewSamples,
        (Some(_), Some(o)) if large_enough => o,
        (Some(_), _) => Outcome::NoChange,
    };
    Change {
        stat,
        a_ms,
        b_ms: a_ms + diff_ms,
        diff_ms,
        ci95_ms,
        outcome,
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// The 0-based ranks a statistic averages in `n` sorted values: the median's two middle ones
/// (as the verdict), the p99's nearest rank (as the HDR histogram's percentiles).
fn ranks(n: usize, stat: Stat) -> (usize, usize) {
    match stat {
        Stat::Median => verdict::median_ranks(n),
        Stat::P99 => {
            let r = ((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1;
            (r, r)
        }
    }
}

fn quantile(sorted: &[f64], stat: Stat) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let (lo, hi) = ranks(sorted.len(), stat);
    Some((sorted[lo] + sorted[hi]) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consumer::verdict::SplitMix64;

    /// Latency-like values: a floor plus an exponential tail, from a seeded stream.
    fn latencies(seed: u64, n: usize, floor: f64, scale: f64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| floor - scale * (1.0 - rng.unit()).ln())
            .collect()
    }

    #[test]
    fn the_same_distribution_is_no_significant_change() {
        let a = latencies(1, 2048, 0.5, 0.2);
        let b = latencies(2, 2048, 0.5, 0.2);
        for change in [median(&a, &b, 10.0), p99(&a, &b, 10.0)] {
            let c = change.expect("both have samples");
            assert_eq!(c.outcome, Outcome::NoChange, "{c:?}");
        }
        // Identical samples: exactly no change.
        let same = median(&a, &a, 0.0).expect("samples");
        assert_eq!((same.diff_ms, same.outcome), (0.0, Outcome::NoChange));
    }

    #[test]
    fn a_large_shift_is_slower_one_way_and_faster_the_other() {
        let a = latencies(3, 2048, 0.5, 0.2);
        let b = latencies(4, 2048, 2.5, 0.2);
        let slower = median(&a, &b, 10.0).expect("samples");
        assert_eq!(slower.outcome, Outcome::Slower, "{slower:?}");
        assert!((slower.diff_ms - 2.0).abs() < 0.05, "{slower:?}");
        let (lo, hi) = slower.ci95_ms.expect("an interval");
        assert!(0.0 < lo && lo <= slower.diff_ms && slower.diff_ms <= hi);
        assert!((slower.b_ms - slower.a_ms - slower.diff_ms).abs() < 1e-12);
        assert_eq!(p99(&a, &b, 10.0).map(|c| c.outcome), Some(Outcome::Slower));
        assert_eq!(
            median(&b, &a, 10.0).map(|c| c.outcome),
            Some(Outcome::Faster)
        );
        assert_eq!(p99(&b, &a, 10.0).map(|c| c.outcome), Some(Outcome::Faster));
    }

    #[test]
    fn a_significant_but_small_shift_is_below_the_threshold() {
        // +4 % of the median: the bootstrap finds it, the 10 % rule does not act on it.
        let a = latencies(5, 2048, 1.0, 0.05);
        let b: Vec<f64> = a.iter().map(|v| v * 1.04).collect();
        let c = median(&a, &b, 10.0).expect("samples");
        let (lo, _) = c.ci95_ms.expect("an interval");
        assert!(lo > 0.0, "significant: {c:?}");
        assert_eq!(c.outcome, Outcome::NoChange);
        assert!((c.percent().expect("a > 0") - 4.0).abs() < 0.5, "{c:?}");
        // With no practical threshold it counts.
        assert_eq!(
            median(&a, &b, 0.0).map(|c| c.outcome),
            Some(Outcome::Slower)
        );
    }

    #[test]
    fn too_few_or_no_samples_decide_nothing() {
        let few = median(&[1.0, 2.0], &[5.0; 100], 10.0).expect("samples");
        assert_eq!((few.outcome, few.ci95_ms), (Outcome::TooFewSamples, None));
        assert_eq!(
            p99(&[1.0; 100], &[2.0; 5], 10.0).map(|c| c.outcome),
            Some(Outcome::TooFewSamples)
        );
        assert_eq!(median(&[], &[1.0; 100], 10.0), None);
        assert_eq!(p99(&[1.0; 100], &[], 10.0), None);
    }

    #[test]
    fn quantiles_follow_the_verdict_and_the_histogram() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(quantile(&v, Stat::Median), Some(100.5));
        assert_eq!(quantile(&v, Stat::P99), Some(198.0));
        assert_eq!(quantile(&[7.0], Stat::P99), Some(7.0));
        assert_eq!(quantile(&[], Stat::Median), None);
    }
}
