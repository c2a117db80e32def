//! Sweeps (`--sweep`, `SWEEP`): the same exchanges held for a step duration at each rate or
//! payload size in a list, each step after a warm-up whose figures count nowhere. Per step and
//! kind the figures and the verdict, then the capacity of each kind (rate sweeps) and the
//! crossover, where the verdict flips between method and message.
//!
//! **Capacity** of a kind: the highest rate of a step that the kind sustained, every lower step
//! sustained too. A step is sustained when at least one exchange succeeded, none was skipped
//! (the open loop found `MAX_IN_FLIGHT` running), none timed out or failed, and Total's p99 is
//! under the bound (`CAPACITY_P99`, default [`DEFAULT_P99_BOUND`]).

mod drive;
mod render;

pub(crate) use drive::{print_final, Driver};
pub use render::{render_sweep_json, render_sweep_table};

use crate::kind::Kind;
use crate::stats::IntervalStats;
use crate::verdict::{Faster, Verdict};
use edge::payload::{format_size, parse_size};
use std::time::Duration;

/// The p99 bound of a sustained step, unless `CAPACITY_P99` says otherwise: well above a
/// healthy local round trip (about 1 ms here), well below edgeHub's usual tens of milliseconds
/// under load being called "capped".
pub const DEFAULT_P99_BOUND: &str = "50ms";
/// More steps would make a sweep run for hours at the default step.
pub const MAX_STEPS: usize = 32;

const EXAMPLES: &str = "for example rate=50,100,200,400 or payload=0,1KiB,16KiB,120KiB";

/// What a sweep varies, with the values in the order they are run.
#[derive(Debug, Clone, PartialEq)]
pub enum Sweep {
    /// Exchanges per second per kind (open loop).
    Rate(Vec<f64>),
    /// Bytes of padding in each request.
    Payload(Vec<usize>),
}

impl Sweep {
    /// Parses `rate=50,100,200` or `payload=0,1KiB,16KiB`: one axis, values strictly increasing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: String| format!("SWEEP {text:?}: {why}; {EXAMPLES}");
        let (axis, list) = text
            .trim()
            .split_once('=')
            .ok_or_else(|| bad("no '=' between the axis and its values".into()))?;
        if list.contains('=') || list.contains(';') {
            return Err(bad("one axis per sweep (rate or payload)".into()));
        }
        let items: Vec<&str> = list.split(',').map(str::trim).collect();
        if items.iter().any(|i| i.is_empty()) {
            return Err(bad("an empty value in the list".into()));
        }
        if items.len() > MAX_STEPS {
            return Err(bad(format!(
                "{} values; at most {MAX_STEPS} steps",
                items.len()
            )));
        }
        let sweep = match axis.trim() {
            "rate" => Sweep::Rate(
                items
                    .iter()
                    .map(|i| match i.parse::<f64>() {
                        Ok(r) if r.is_finite() && r > 0.0 && r <= crate::MAX_RATE => Ok(r),
                        _ => Err(bad(format!(
                            "rate {i:?} is not a number of exchanges per second above 0 and up to {}",
                            crate::MAX_RATE
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            "payload" => Sweep::Payload(
                items
                    .iter()
                    .map(|i| parse_size(i).map_err(|e| bad(e.to_string())))
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(bad(format!(
                    "unknown axis {other:?}: sweep rate or payload"
                )))
            }
        };
        if !sweep.increasing() {
            return Err(bad("values must be strictly increasing".into()));
        }
        Ok(sweep)
    }

    fn increasing(&self) -> bool {
        match self {
            Sweep::Rate(v) => v.windows(2).all(|w| w[0] < w[1]),
            Sweep::Payload(v) => v.windows(2).all(|w| w[0] < w[1]),
        }
    }

    pub fn axis(&self) -> &'static str {
        match self {
            Sweep::Rate(_) => "rate",
            Sweep::Payload(_) => "payload",
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Sweep::Rate(v) => v.len(),
            Sweep::Payload(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One step as planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    /// 0-based.
    pub index: usize,
    /// Exchanges per second per kind; 0 is the closed loop.
    pub rate: f64,
    pub payload_bytes: usize,
    /// Which of the workload's prepared sizes this step sends.
    pub size_index: usize,
}

/// A whole sweep as planned.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub sweep: Sweep,
    pub steps: Vec<StepPlan>,
    pub step: Duration,
    pub warmup: Duration,
    pub p99_bound: Duration,
}

impl Plan {
    /// The steps of `sweep` around the fixed `rate` and `payload_bytes`.
    pub fn new(
        sweep: Sweep,
        rate: f64,
        payload_bytes: usize,
        step: Duration,
        warmup: Duration,
        p99_bound: Duration,
    ) -> Self {
        let steps = match &sweep {
            Sweep::Rate(rates) => rates
                .iter()
                .enumerate()
                .map(|(index, &rate)| StepPlan {
                    index,
                    rate,
                    payload_bytes,
                    size_index: 0,
                })
                .collect(),
            Sweep::Payload(sizes) => sizes
                .iter()
                .enumerate()
                .map(|(index, &payload_bytes)| StepPlan {
                    index,
                    rate,
                    payload_bytes,
                    size_index: index,
                })
                .collect(),
        };
        Self {
            sweep,
            steps,
            step,
            warmup,
            p99_bound,
        }
    }

    /// The request sizes to prepare, in `size_index` order.
    pub fn sizes(&self) -> Vec<usize> {
        match &self.sweep {
            Sweep::Payload(sizes) => sizes.clone(),
            Sweep::Rate(_) => vec![self.steps.first().map_or(0, |s| s.payload_bytes)],
        }
    }

    /// The step's value on the sweep's axis, as a reader writes it: `200/s`, `16KiB`.
    pub fn value_label(&self, step: &StepPlan) -> String {
        match self.sweep {
            Sweep::Rate(_) => format!("{}/s", step.rate),
            Sweep::Payload(_) => format_size(step.payload_bytes),
        }
    }
}

/// One step as measured.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub plan: StepPlan,
    /// The padding of the producer's replies in this step (the latest one seen), in bytes.
    pub reply_bytes: usize,
    pub stats: IntervalStats,
    pub verdict: Option<Verdict>,
}

impl StepResult {
    /// Whether `kind` sustained this step (see the module's doc), or why not.
    pub fn sustained(&self, kind: Kind, p99_bound: Duration) -> Result<(), String> {
        let k = self.stats.kind(kind);
        let mut why = Vec::new();
        if k.count() == 0 {
            why.push("no exchange succeeded".to_owned());
        }
        for (n, one, many) in [
            (k.skipped, "skipped", "skipped"),
            (k.timeouts, "timeout", "timeouts"),
            (k.errors, "error", "errors"),
        ] {
            if n > 0 {
                why.push(format!("{n} {}", if n == 1 { one } else { many }));
            }
        }
        let bound = p99_bound.as_secs_f64() * 1000.0;
        if let Some(p99) = k.total_quantile_ms(0.99).filter(|p| *p >= bound) {
            why.push(format!("p99 {p99:.4} ms not under {bound} ms"));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join(", "))
        }
    }
}

/// A kind's capacity in a rate sweep.
#[derive(Debug, Clone, PartialEq)]
pub enum Capacity {
    /// Sustained up to this rate; the next step (named, with why) was not.
    Rate {
        rate: f64,
        failed: Option<(f64, String)>,
    },
    /// Not even the first step was sustained.
    BelowRange { rate: f64, why: String },
}

impl Capacity {
    pub fn of(results: &[StepResult], kind: Kind, p99_bound: Duration) -> Option<Self> {
        let mut sustained = None;
        for r in results {
            if let Err(why) = r.sustained(kind, p99_bound) {
                return Some(match sustained {
                    Some(rate) => Capacity::Rate {
                        rate,
                        failed: Some((r.plan.rate, why)),
                    },
                    None => Capacity::BelowRange {
                        rate: r.plan.rate,
                        why,
                    },
                });
            }
            sustained = Some(r.plan.rate);
        }
        sustained.map(|rate| Capacity::Rate { rate, failed: None })
    }

    /// In words: `200/s (400/s: 12 skipped)`, `400/s or more (every step sustained)`.
    pub fn words(&self) -> String {
        match self {
            Capacity::Rate {
                rate,
                failed: Some((next, why)),
            } => format!("{rate}/s (not {next}/s: {why})"),
            Capacity::Rate { rate, failed: None } => {
                format!("{rate}/s or more (every step sustained)")
            }
            Capacity::BelowRange { rate, why } => {
                format!("below the range (not even {rate}/s: {why})")
            }
        }
    }

    /// The sustained rate, if any.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Capacity::Rate { rate, .. } => Some(*rate),
            Capacity::BelowRange { .. } => None,
        }
    }
}

/// Where the verdict flips: the steps (indices) at which a different kind than at the previous
/// significant step is faster.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossover {
    /// (step index, the kind faster from there on).
    pub flips: Vec<(usize, Kind)>,
    /// The kind faster at the first significant step, if any step was significant.
    pub first: Option<Kind>,
    pub words: String,
}

fn faster_kind(v: Option<&Verdict>) -> Option<Kind> {
    match v.map(|v| v.faster) {
        Some(Faster::Method) => Some(Kind::Method),
        Some(Faster::Message) => Some(Kind::Message),
        _ => None,
    }
}

fn article(kind: Kind) -> &'static str {
    match kind {
        Kind::Method => "a method",
        Kind::Message => "a message",
    }
}

impl Crossover {
    pub fn of(plan: &Plan, results: &[StepResult]) -> Self {
        let mut first = None;
        let mut current = None;
        let mut flips = Vec::new();
        for r in results {
            let Some(kind) = faster_kind(r.verdict.as_ref()) else {
                continue;
            };
            match current {
                None => first = Some(kind),
                Some(c) if c != kind => flips.push((r.plan.index, kind)),
                _ => {}
            }
            current = Some(kind);
        }
        let label = |i: usize| plan.value_label(&results[i].plan);
        let at = |i: usize| results.iter().position(|r| r.plan.index == i).unwrap_or(0);
        let words = match (first, flips.as_slice()) {
            (None, _) => "no crossover in the range: no significant difference at any step".into(),
            (Some(k), []) => format!(
                "no crossover in the range: {} is faster wherever the difference is significant",
                article(k)
            ),
            (Some(before), [(i, k)]) => format!(
                "{} is faster from {} up ({} below)",
                article(*k),
                label(at(*i)),
                article(before)
            ),
            (Some(before), many) => format!(
                "the verdict flips {} times: {} is faster first, then {}",
                many.len(),
                article(before),
                many.iter()
                    .map(|(i, k)| format!("{} from {}", article(*k), label(at(*i))))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Self {
            flips,
            first,
            words,
        }
    }
}

#[cfg(test)]
mod tests;
