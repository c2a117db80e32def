//! Runs a sweep's steps: sets each step's workload (and the open loop's rate), waits out its
//! warm-up, drops the warm-up's figures, holds the step, then takes and prints its figures.

use super::{Plan, StepPlan, StepResult};
use crate::cli::SummaryFormat;
use crate::output::Output;
use crate::recorder::Recorder;
use crate::render::{self, SummaryScope};
use crate::report::collect::RunLog;
use crate::schedule::OpenLoop;
use crate::schedule::Schedule;
use crate::workload::Workload;
use chrono::Utc;
use std::io::Write as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a sweep drives and where its steps go.
pub(crate) struct Driver<'a> {
    pub plan: &'a Plan,
    pub recorder: &'a Recorder,
    pub workload: &'a Workload,
    /// The open loop whose rate each step sets (none for a closed-loop payload sweep).
    pub open_loop: Option<&'a OpenLoop>,
    pub report_log: &'a RunLog,
    pub output: &'a Output,
}

/// Waits `d`; false if the run was stopped first.
async fn hold(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.cancelled() => false,
    }
}

impl Driver<'_> {
    /// Runs every step, or those before `stop` is cancelled (an interrupted step is not
    /// reported; its figures still count in the run's).
    pub(crate) async fn run(&self, stop: &CancellationToken) -> Vec<StepResult> {
        let mut results = Vec::new();
        for step in &self.plan.steps {
            self.workload.set_step(step.size_index, step.rate);
            if let Some(open) = self.open_loop {
                open.set_rate(step.rate);
            }
            if !hold(self.plan.warmup, stop).await {
                break;
            }
            // Exchanges of the previous step still in flight ended in the warm-up: not this step's.
            self.recorder.discard_interval();
            let held = hold(self.plan.step, stop).await;
            let stats = self.recorder.take_interval();
            if !held {
                break;
            }
            self.report_log.interval(&stats, self.plan.step);
            let result = StepResult {
                plan: *step,
                reply_bytes: self.workload.reply_bytes(),
                verdict: stats.verdict(&self.output.kinds),
                stats,
            };
            self.print(&result).await;
            results.push(result);
            self.report_log
                .sweep(crate::report::sweep::SweepFigures::of(
                    self.plan,
                    &self.output.kinds,
                    &results,
                ));
        }
        results
    }

    /// The step's table (as an interval's, under a line naming the step) and its JSON line.
    async fn print(&self, result: &StepResult) {
        let out = render_step(self.plan, self.output, result);
        let _ = tokio::task::spawn_blocking(move || {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        })
        .await;
    }
}

/// A step's output in the run's format.
fn render_step(plan: &Plan, output: &Output, result: &StepResult) -> String {
    let stamp = edge::time::round_trip_offset(Utc::now());
    let step = &result.plan;
    let mut out = String::new();
    if matches!(output.format, SummaryFormat::Table | SummaryFormat::Both) {
        out.push_str(&format!(
            "Step {}/{} of the {} sweep: rate {} | payload {} | reply {}\n",
            step.index + 1,
            plan.steps.len(),
            plan.sweep.axis(),
            rate_words(step.rate),
            edge::payload::format_size(step.payload_bytes),
            edge::payload::format_size(result.reply_bytes),
        ));
        out.push_str(&render::render_table(
            &stamp,
            plan.step,
            &result.stats,
            &output.kinds,
            true,
        ));
        if let Some(v) = &result.verdict {
            out.push_str(&render::render_verdict(v));
        }
    }
    if matches!(output.format, SummaryFormat::Json | SummaryFormat::Both) {
        out.push_str(&step_json(&stamp, plan, output, result));
        out.push('\n');
    }
    out
}

/// `closed loop` or `50/s`.
pub(super) fn rate_words(rate: f64) -> String {
    if rate == 0.0 {
        "closed loop".into()
    } else {
        format!("{rate}/s")
    }
}

/// The step's JSON line: the interval line's fields with `scope: "step"`, the step's schedule,
/// and a `step` object.
fn step_json(stamp: &str, plan: &Plan, output: &Output, result: &StepResult) -> String {
    let step = &result.plan;
    let schedule = step_schedule(output.schedule, step);
    let line = render::render_summary_json(
        SummaryScope::Step,
        stamp,
        plan.step,
        &result.stats,
        &output.kinds,
        schedule,
        result.verdict.as_ref(),
    );
    let mut value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
    let sustained: serde_json::Map<String, serde_json::Value> = output
        .kinds
        .iter()
        .map(|&k| {
            let s = result.sustained(k, plan.p99_bound);
            (k.label().to_owned(), serde_json::json!(s.is_ok()))
        })
        .collect();
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "step".into(),
            serde_json::json!({
                "index": step.index,
                "of": plan.steps.len(),
                "axis": plan.sweep.axis(),
                "rate": step.rate,
                "payload_bytes": step.payload_bytes,
                "reply_bytes": result.reply_bytes,
                "warmup_seconds": plan.warmup.as_secs_f64(),
                "duration_seconds": plan.step.as_secs_f64(),
                "sustained": sustained,
            }),
        );
    }
    value.to_string()
}

/// The schedule a step ran on: the sweep's rate for rate steps.
pub(super) fn step_schedule(run: Schedule, step: &StepPlan) -> Schedule {
    match run {
        Schedule::Open { max_in_flight, .. } => Schedule::Open {
            rate: step.rate,
            max_in_flight,
        },
        closed => closed,
    }
}

/// After the run's summary: the sweep's final table (every format: it is the sweep's answer),
/// and its JSON line (json and both).
pub(crate) async fn print_final(output: &Output, plan: &Plan, results: Vec<StepResult>) {
    let mut out = super::render_sweep_table(plan, &output.kinds, &results);
    if matches!(output.format, SummaryFormat::Json | SummaryFormat::Both) {
        let stamp = edge::time::round_trip_offset(Utc::now());
        out.push_str(&super::render_sweep_json(
            &stamp,
            plan,
            &output.kinds,
            &results,
        ));
        out.push('\n');
    }
    let _ = tokio::task::spawn_blocking(move || {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    })
    .await;
}
