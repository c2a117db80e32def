//! Which kind is faster, with confidence: the difference of the two kinds' median total latencies
//! (method − message) and a 95 % percentile-bootstrap interval for it, computed over a bounded
//! uniform sample (a reservoir) of each kind's samples so memory and CPU stay fixed however many
//! exchanges an interval has.
//!
//! Everything here is deterministic for a seed: the same samples give the same verdict.

use serde::Serialize;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough for sampling; not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` by multiply-shift (Lemire); the bias, below n / 2^64, is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Samples kept per kind for the verdict (each interval, and again for the whole run).
pub const RESERVOIR: usize = 2048;
/// Bootstrap resamples per verdict.
pub const RESAMPLES: usize = 2000;
/// Below this many samples of either kind there is no verdict: the bootstrap of a median needs a
/// few dozen values before its interval means anything.
pub const MIN_SAMPLES: usize = 20;
/// The verdicts' fixed seed (determinism: same samples, same verdict).
pub const SEED: u64 = 0x5EED_1E55_CAFE_F00D;

/// A uniform random sample of at most `capacity` values from a stream (Vitter's Algorithm R):
/// every value seen so far is in it with the same probability, in constant memory.
#[derive(Debug, Clone)]
pub struct Reservoir {
    values: Vec<f64>,
    seen: u64,
    capacity: usize,
    rng: SplitMix64,
}

impl Reservoir {
    /// Allocates the whole capacity up front: pushing never allocates.
    pub fn new(capacity: usize, seed: u64) -> Self {
        Self {
            values: Vec::with_capacity(capacity),
            seen: 0,
            capacity: capacity.max(1),
            rng: SplitMix64::new(seed),
        }
    }

    pub fn push(&mut self, v: f64) {
        self.seen += 1;
        if self.values.len() < self.capacity {
            self.values.push(v);
        } else {
            let j = self.rng.below(self.seen) as usize;
            if j < self.capacity {
                self.values[j] = v;
            }
        }
    }

    /// How many values the sample stands for.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Empties the sample, keeping its allocation (and its random stream).
    pub fn clear(&mut self) {
        self.values.clear();
        self.seen = 0;
    }

    /// Adds `other`'s population to this one: the result is a uniform sample of the union.
    /// How many values come from each side is drawn as from the union itself (hypergeometric,
    /// one draw at a time); each side then gives a uniform subset of its own uniform sample.
    pub fn merge(&mut self, other: &Reservoir) {
        if other.seen == 0 {
            return;
        }
        let total = self.seen + other.seen;
        let keep = (total.min(self.capacity as u64)) as usize;
        let (mut a, mut b) = (self.seen, other.seen);
        let mut from_self = 0usize;
        for _ in 0..keep {
            if self.rng.below(a + b) < a {
                a -= 1;
                from_self += 1;
            } else {
                b -= 1;
            }
        }
        // Both samples hold min(seen, capacity) values, so neither side is asked for more than
        // it has; the min() only guards against reservoirs of different capacities.
        let from_self = from_self.min(self.values.len());
        let from_other = (keep - from_self).min(other.values.len());
        // A partial Fisher–Yates shuffle leaves a uniform subset of ours at the front.
        let len = self.values.len();
        for i in 0..from_self {
            let j = i + self.rng.below((len - i) as u64) as usize;
            self.values.swap(i, j);
        }
        self.values.truncate(from_self);
        // Selection sampling (Knuth's Algorithm S) over theirs, without a copy.
        let mut needed = from_other;
        let mut left = other.values.len();
        for &v in &other.values {
            if needed == 0 {
                break;
            }
            if (self.rng.below(left as u64) as usize) < needed {
                self.values.push(v);
                needed -= 1;
            }
            left -= 1;
        }
        self.seen = total;
    }
}

/// Which kind the verdict found faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Faster {
    Method,
    Message,
    /// The interval includes 0, or there were too few samples.
    None,
}

/// Method against message by median total latency.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub faster: Faster,
    /// median(method) − median(message) in ms: positive when messages are faster. `None` when a
    /// kind has no sample.
    pub median_diff_ms: Option<f64>,
    /// 95 % percentile-bootstrap interval of that difference; `None` below [`MIN_SAMPLES`].
    pub ci95_ms: Option<(f64, f64)>,
    /// Samples behind the figures (the interval's successful exchanges, at most [`RESERVOIR`]).
    pub n_method: usize,
    pub n_message: usize,
}

impl Verdict {
    pub fn enough_samples(&self) -> bool {
        self.ci95_ms.is_some()
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

fn median_of_sorted(v: &[f64]) -> f64 {
    let (lo, hi) = median_ranks(v.len());
    (v[lo] + v[hi]) / 2.0
}

/// The 0-based ranks the median averages in `n` sorted values: the two middle ones.
pub fn median_ranks(n: usize) -> (usize, usize) {
    ((n - 1) / 2, n / 2)
}

/// A statistic of one bootstrap resample of `sorted` — the mean of its values at `ranks` —
/// without building the resample: draw n indices, count them, and walk the counts to the ranks
/// (the values are sorted, so the resample's order statistics are the counted indices' values).
/// `counts` is scratch space.
fn resampled_at_ranks(
    sorted: &[f64],
    (rank_lo, rank_hi): (usize, usize),
    rng: &mut SplitMix64,
    counts: &mut [u32],
) -> f64 {
    let n = sorted.len();
    let counts = &mut counts[..n];
    counts.fill(0);
    for _ in 0..n {
        counts[rng.below(n as u64) as usize] += 1;
    }
    let mut cumulative = 0usize;
    let mut lo = None;
    for (i, &c) in counts.iter().enumerate() {
        cumulative += c as usize;
        if lo.is_none() && cumulative > rank_lo {
            lo = Some(sorted[i]);
        }
        if cumulative > rank_hi {
            return (lo.unwrap_or(sorted[i]) + sorted[i]) / 2.0;
        }
    }
    sorted[n - 1]
}

/// 95 % percentile-bootstrap interval of stat(`first`) − stat(`second`), both sorted and
/// non-empty, where stat is the mean of the values at `ranks(n)`: [`RESAMPLES`] resamples of
/// each from one [`SplitMix64`] seeded with `seed`, `first` drawn before `second`. The verdict's
/// median and the compare command's p99 both use it.
pub fn bootstrap_diff_ci95(
    first: &[f64],
    second: &[f64],
    ranks: impl Fn(usize) -> (usize, usize),
    seed: u64,
) -> (f64, f64) {
    let mut rng = SplitMix64::new(seed);
    let mut counts = vec![0u32; first.len().max(second.len())];
    let (r_first, r_second) = (ranks(first.len()), ranks(second.len()));
    let mut diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            resampled_at_ranks(first, r_first, &mut rng, &mut counts)
                - resampled_at_ranks(second, r_second, &mut rng, &mut counts)
        })
        .collect();
    diffs.sort_unstable_by(f64::total_cmp);
    let lo = diffs[(RESAMPLES as f64 * 0.025).floor() as usize];
    let hi = diffs[((RESAMPLES as f64 * 0.975).ceil() as usize - 1).min(RESAMPLES - 1)];
    (lo, hi)
}

/// Compares two samples of total latency (ms). Percentile bootstrap: resample each kind with
/// replacement [`RESAMPLES`] times, take the difference of the resamples' medians, and report
/// its 2.5th and 97.5th percentiles; a kind is faster only when the interval excludes 0.
pub fn compare(method: &[f64], message: &[f64], seed: u64) -> Verdict {
    let (a, b) = (sorted(method), sorted(message));
    let (n_method, n_message) = (a.len(), b.len());
    if a.is_empty() || b.is_empty() {
        return Verdict {
            faster: Faster::None,
            median_diff_ms: None,
            ci95_ms: None,
            n_method,
            n_message,
        };
    }
    let diff = median_of_sorted(&a) - median_of_sorted(&b);
    if n_method < MIN_SAMPLES || n_message < MIN_SAMPLES {
        return Verdict {
            faster: Faster::None,
            median_diff_ms: Some(diff),
            ci95_ms: None,
            n_method,
            n_message,
        };
    }
    let (lo, hi) = bootstrap_diff_ci95(&a, &b, median_ranks, seed);
    let faster = if lo > 0.0 {
        Faster::Message
    } else if hi < 0.0 {
        Faster::Method
    } else {
        Faster::None
    };
    Verdict {
        faster,
        median_diff_ms: Some(diff),
        ci95_ms: Some((lo, hi)),
        n_method,
        n_message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Normal variates (Box–Muller) around `mean` with spread `sd`, from a seeded stream.
    fn normal(rng: &mut SplitMix64, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (1.0 - rng.unit(), rng.unit());
                mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect()
    }

    /// Latency-like: a floor plus an exponential tail.
    fn shifted_exponential(rng: &mut SplitMix64, n: usize, floor: f64, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|_| floor - scale * (1.0 - rng.unit()).ln())
            .collect()
    }

    #[test]
    fn clearly_separated_kinds_give_the_faster_one_with_an_interval_excluding_zero() {
        let mut rng = SplitMix64::new(1);
        let method = normal(&mut rng, 500, 1.0, 0.1);
        let message = normal(&mut rng, 400, 2.0, 0.1);
        let v = compare(&method, &message, SEED);
        assert_eq!(v.faster, Faster::Method);
        let (lo, hi) = v.ci95_ms.unwrap();
        assert!(lo <= hi && hi < 0.0, "{v:?}");
        let d = v.median_diff_ms.unwrap();
        assert!((d + 1.0).abs() < 0.05 && lo <= d && d <= hi, "{v:?}");
        assert_eq!((v.n_method, v.n_message), (500, 400));
        // And the other way round.
        assert_eq!(compare(&message, &method, SEED).faster, Faster::Message);
    }

    #[test]
    fn a_small_real_shift_in_skewed_latencies_is_found() {
        let mut rng = SplitMix64::new(2);
        let method = shifted_exponential(&mut rng, 2000, 0.40, 0.05);
        let message = shifted_exponential(&mut rng, 2000, 0.45, 0.05);
        let v = compare(&method, &message, SEED);
        assert_eq!(v.faster, Faster::Method, "{v:?}");
        assert!((v.median_diff_ms.unwrap() + 0.05).abs() < 0.01, "{v:?}");
    }

    #[test]
    fn identical_distributions_give_no_significant_difference() {
        let mut rng = SplitMix64::new(3);
        let method = shifted_exponential(&mut rng, 1000, 0.4, 0.1);
        let message = shifted_exponential(&mut rng, 1000, 0.4, 0.1);
        let v = compare(&method, &message, SEED);
        assert_eq!(v.faster, Faster::None, "{v:?}");
        let (lo, hi) = v.ci95_ms.unwrap();
        assert!(lo <= 0.0 && 0.0 <= hi, "{v:?}");
        // The very same values: the difference is exactly 0 and so is every resample's.
        let same = compare(&method, &method, SEED);
        assert_eq!(same.faster, Faster::None);
        assert_eq!(same.median_diff_ms, Some(0.0));
    }

    #[test]
    fn the_interval_covers_a_zero_difference_about_95_percent_of_the_time() {
        // 60 independent pairs of samples from one distribution: at 95 % coverage about 3 find
        // a (false) difference; more than 9 would mean the interval is far too narrow.
        let mut rng = SplitMix64::new(4);
        let false_alarms = (0..60)
            .filter(|i| {
                let a = shifted_exponential(&mut rng, 300, 0.4, 0.1);
                let b = shifted_exponential(&mut rng, 300, 0.4, 0.1);
                compare(&a, &b, SEED ^ *i as u64).faster != Faster::None
            })
            .count();
        assert!(false_alarms <= 9, "{false_alarms} of 60");
    }

    #[test]
    fn the_verdict_is_deterministic_for_a_seed() {
        let mut rng = SplitMix64::new(5);
        let method = shifted_exponential(&mut rng, 700, 0.4, 0.1);
        let message = shifted_exponential(&mut rng, 900, 0.41, 0.1);
        let first = compare(&method, &message, SEED);
        assert_eq!(first, compare(&method, &message, SEED));
        // Input order does not matter either: the samples are sorted first.
        let mut reversed = method.clone();
        reversed.reverse();
        assert_eq!(first, compare(&reversed, &message, SEED));
    }

    #[test]
    fn too_few_samples_or_a_missing_kind_give_no_verdict() {
        let few = compare(&[1.0, 2.0, 3.0], &[5.0; 100], SEED);
        assert_eq!(few.faster, Faster::None);
        assert_eq!(few.median_diff_ms, Some(-3.0));
        assert_eq!(few.ci95_ms, None);
        let none = compare(&[], &[5.0; 100], SEED);
        assert_eq!((none.faster, none.median_diff_ms), (Faster::None, None));
        assert_eq!((none.n_method, none.n_message), (0, 100));
    }

    #[test]
    fn the_resampled_walk_matches_a_plain_resample_for_the_median_and_a_p99() {
        // The p99 as the compare command takes it: the nearest rank.
        let p99_ranks = |n: usize| {
            let r = ((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1;
            (r, r)
        };
        let values: Vec<f64> = (0..300).map(|i| i as f64 * 0.5).collect();
        for n in [1usize, 2, 5, 99, 100, 101, 300] {
            let v = &values[..n];
            let mut counts = vec![0u32; n];
            for ranks in [median_ranks(n), p99_ranks(n)] {
                let (mut r1, mut r2) = (SplitMix64::new(9), SplitMix64::new(9));
                for _ in 0..50 {
                    let walked = resampled_at_ranks(v, ranks, &mut r1, &mut counts);
                    let mut resample: Vec<f64> =
                        (0..n).map(|_| v[r2.below(n as u64) as usize]).collect();
                    resample.sort_unstable_by(f64::total_cmp);
                    let plain = (resample[ranks.0] + resample[ranks.1]) / 2.0;
                    assert_eq!(walked, plain, "n={n} ranks={ranks:?}");
                }
            }
        }
    }

    #[test]
    fn a_reservoir_is_a_bounded_uniform_sample() {
        let mut r = Reservoir::new(1000, 7);
        for i in 0..100_000 {
            r.push(i as f64);
        }
        assert_eq!((r.values().len(), r.seen()), (1000, 100_000));
        let mean = r.values().iter().sum::<f64>() / 1000.0;
        // The mean of 1000 uniform draws from 0..100000: sd ≈ 913.
        assert!((mean - 50_000.0).abs() < 3_000.0, "{mean}");
        let late = r.values().iter().filter(|v| **v >= 90_000.0).count();
        assert!((60..=140).contains(&late), "{late} of the last 10% kept");
        r.clear();
        assert_eq!((r.values().len(), r.seen()), (0, 0));
        r.push(1.0);
        assert_eq!(r.values(), &[1.0]);
    }

    #[test]
    fn merged_reservoirs_sample_the_union_in_proportion() {
        // 2,000 zeros then 18,000 ones: a uniform sample of the union has ~10 % zeros.
        let mut run = Reservoir::new(1000, 11);
        let mut zeros = Reservoir::new(1000, 12);
        for _ in 0..2000 {
            zeros.push(0.0);
        }
        run.merge(&zeros);
        assert_eq!((run.values().len(), run.seen()), (1000, 2000));
        for _ in 0..6 {
            let mut ones = Reservoir::new(1000, 13);
            for _ in 0..3000 {
                ones.push(1.0);
            }
            run.merge(&ones);
        }
        assert_eq!((run.values().len(), run.seen()), (1000, 20_000));
        let z = run.values().iter().filter(|v| **v == 0.0).count();
        assert!((70..=130).contains(&z), "{z} zeros of 1000");
        // Small populations are kept whole.
        let mut small = Reservoir::new(1000, 1);
        let mut other = Reservoir::new(1000, 2);
        for i in 0..10 {
            small.push(i as f64);
            other.push(100.0 + i as f64);
        }
        small.merge(&other);
        let mut all = small.values().to_vec();
        all.sort_unstable_by(f64::total_cmp);
        assert_eq!(all.len(), 20);
        assert_eq!((all[0], all[19]), (0.0, 109.0));
        // Merging an empty one changes nothing.
        small.merge(&Reservoir::new(1000, 3));
        assert_eq!(small.seen(), 20);
    }
}
