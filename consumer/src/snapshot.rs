//! The versioned sample of Total that a run's (and a sweep step's) JSON line carries per kind, so
//! that two runs can be compared afterwards (`method-vs-message compare`, docs/compare.md) with the
//! same bootstrap as the verdict.
//!
//! ```json
//! "sample": {"version": 1, "seen": 123456, "total_ms": [0.6321, 0.5873, ...]}
//! ```
//!
//! `total_ms` is the verdict's reservoir: a uniform sample of at most [`verdict::RESERVOIR`]
//! successful exchanges' Total, in ms rounded to 0.1 µs, in no particular order; `seen` is how many
//! exchanges it stands for. Interval lines carry no sample (it would repeat ~30 KB a minute).
//! Any change of these fields' meaning bumps [`VERSION`]; readers refuse other versions.

use crate::render::SummaryScope;
use crate::stats::KindStats;
use crate::verdict;
use serde::{Deserialize, Serialize};

/// The sample format's version; bumped when a field's meaning changes.
pub const VERSION: u32 = 1;

/// Digits kept after the millisecond's decimal point: 0.1 µs, far below the clocks' noise, and
/// the JSON line stays short (about 7 characters a value).
const DECIMALS: i32 = 4;

/// One kind's sample of Total, as written in the JSON line's `sample` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSnapshot {
    /// [`VERSION`] when written.
    pub version: u32,
    /// Successful exchanges the sample stands for (the kind's `count`).
    pub seen: u64,
    /// A uniform sample of Total in ms, at most [`verdict::RESERVOIR`] values.
    pub total_ms: Vec<f64>,
}

impl SampleSnapshot {
    /// The snapshot of a kind's figures for a JSON line of `scope`: none on interval lines.
    pub fn for_scope(scope: SummaryScope, k: &KindStats) -> Option<Self> {
        (!matches!(scope, SummaryScope::Interval)).then(|| Self::of(k))
    }

    /// The kind's reservoir, rounded.
    pub fn of(k: &KindStats) -> Self {
        let scale = 10f64.powi(DECIMALS);
        Self {
            version: VERSION,
            seen: k.count(),
            total_ms: k
                .sample()
                .iter()
                .map(|v| (v * scale).round() / scale)
                .collect(),
        }
    }

    /// Reads a `sample` field, refusing what `compare` cannot trust: another version, a missing
    /// or mistyped field, more values than a reservoir holds, or values that are not latencies.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, SnapshotError> {
        let version = value
            .get("version")
            .ok_or(SnapshotError::Missing("version"))?;
        match version.as_u64() {
            Some(v) if v == u64::from(VERSION) => {}
            _ => return Err(SnapshotError::Version(version.to_string())),
        }
        let s: Self = serde_json::from_value(value.clone())
            .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if s.total_ms.len() > verdict::RESERVOIR {
            return Err(SnapshotError::Malformed(format!(
                "{} values in total_ms, at most {} expected",
                s.total_ms.len(),
                verdict::RESERVOIR
            )));
        }
        if let Some(bad) = s.total_ms.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(SnapshotError::Malformed(format!(
                "total_ms holds {bad}, not a latency"
            )));
        }
        if (s.total_ms.len() as u64) > s.seen {
            return Err(SnapshotError::Malformed(format!(
                "seen is {} but total_ms has {} values",
                s.seen,
                s.total_ms.len()
            )));
        }
        Ok(s)
    }
}

/// Why a `sample` field was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotError {
    /// A required field is absent.
    Missing(&'static str),
    /// Another format version (as written in the file).
    Version(String),
    /// Present but not of the documented form.
    Malformed(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(field) => write!(f, "the sample has no \"{field}\" field"),
            Self::Version(v) => write!(
                f,
                "sample version {v}, this build reads version {VERSION} only"
            ),
            Self::Malformed(why) => write!(f, "malformed sample: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Sample;
    use serde_json::json;

    fn kind_with(values: &[f64]) -> KindStats {
        let mut k = KindStats::default();
        for &total_ms in values {
            k.record(&Sample {
                c2p_ms: 0.0,
                p2c_ms: 0.0,
                total_ms,
            });
        }
        k
    }

    #[test]
    fn run_lines_carry_the_rounded_reservoir_and_interval_lines_none() {
        let k = kind_with(&[0.123_456_78, 1.0, 2.5]);
        assert_eq!(SampleSnapshot::for_scope(SummaryScope::Interval, &k), None);
        let s = SampleSnapshot::for_scope(SummaryScope::Run, &k).expect("a run line has a sample");
        assert_eq!(s.version, VERSION);
        assert_eq!(s.seen, 3);
        assert_eq!(s.total_ms, vec![0.1235, 1.0, 2.5]);
        let text = serde_json::to_value(&s).expect("serializes");
        assert_eq!(
            text,
            json!({"version": 1, "seen": 3, "total_ms": [0.1235, 1.0, 2.5]})
        );
    }

    #[test]
    fn the_json_lines_carry_it_on_run_and_step_lines_only() {
        use crate::kind::Kind;
        use crate::render::render_summary_json;
        use crate::schedule::Schedule;
        use crate::stats::IntervalStats;
        let stats = IntervalStats {
            message: kind_with(&[0.5, 0.25]),
            ..IntervalStats::default()
        };
        let line = |scope| {
            let text = render_summary_json(
                scope,
                "t",
                std::time::Duration::from_secs(1),
                &stats,
                &[Kind::Message],
                Schedule::Closed,
                None,
            );
            serde_json::from_str::<serde_json::Value>(&text).expect("a JSON line")
        };
        let run = line(SummaryScope::Run);
        assert_eq!(
            run["kinds"]["message"]["sample"],
            json!({"version": 1, "seen": 2, "total_ms": [0.5, 0.25]})
        );
        assert_eq!(
            line(SummaryScope::Step)["kinds"]["message"]["sample"],
            run["kinds"]["message"]["sample"]
        );
        let interval = line(SummaryScope::Interval);
        assert!(
            interval["kinds"]["message"].get("sample").is_none(),
            "{interval}"
        );
    }

    #[test]
    fn the_sample_stays_bounded_by_the_reservoir() {
        let values: Vec<f64> = (0..10_000).map(|i| i as f64 / 1000.0).collect();
        let s = SampleSnapshot::of(&kind_with(&values));
        assert_eq!(s.seen, 10_000);
        assert_eq!(s.total_ms.len(), verdict::RESERVOIR);
    }

    #[test]
    fn a_written_sample_reads_back() {
        let s = SampleSnapshot::of(&kind_with(&[0.5, 0.25, 0.75]));
        let value = serde_json::to_value(&s).expect("serializes");
        assert_eq!(SampleSnapshot::from_json(&value), Ok(s));
    }

    #[test]
    fn other_versions_and_malformed_samples_are_refused() {
        let read = |v: serde_json::Value| SampleSnapshot::from_json(&v).map(|_| ());
        assert_eq!(
            read(json!({"version": 2, "seen": 1, "total_ms": [1.0]})),
            Err(SnapshotError::Version("2".into()))
        );
        assert_eq!(
            read(json!({"version": "1", "seen": 1, "total_ms": [1.0]})),
            Err(SnapshotError::Version("\"1\"".into()))
        );
        assert_eq!(
            read(json!({"seen": 1, "total_ms": [1.0]})),
            Err(SnapshotError::Missing("version"))
        );
        for bad in [
            json!({"version": 1, "total_ms": [1.0]}),
            json!({"version": 1, "seen": 1, "total_ms": ["fast"]}),
            json!({"version": 1, "seen": 1, "total_ms": [-1.0]}),
            json!({"version": 1, "seen": 1, "total_ms": [1.0, 2.0]}),
            json!({"version": 1, "seen": 9999, "total_ms": vec![1.0; verdict::RESERVOIR + 1]}),
        ] {
            assert!(
                matches!(read(bad.clone()), Err(SnapshotError::Malformed(_))),
                "{bad}"
            );
        }
        let msg = SnapshotError::Version("2".into()).to_string();
        assert!(
            msg.contains("version 2") && msg.contains("version 1"),
            "{msg}"
        );
    }
}
