//! The sweep's final table (one row per step and kind, then the capacity and the crossover in
//! words) and its final JSON line (`scope: "sweep"`).

use super::drive::rate_words;
use super::{Capacity, Crossover, Plan, StepResult, Sweep};
use crate::kind::Kind;
use crate::render::ms;
use crate::verdict::Faster;
use edge::payload::format_size;

/// The verdict in a cell: `message by 0.1234 ms [+0.0500, +0.2000]`.
fn verdict_cell(r: &StepResult) -> String {
    let Some(v) = &r.verdict else {
        return String::new();
    };
    let ci = v
        .ci95_ms
        .map(|(lo, hi)| format!(" 95% CI [{lo:+.4}, {hi:+.4}]"))
        .unwrap_or_default();
    match (v.faster, v.median_diff_ms, v.ci95_ms) {
        (_, _, None) => "too few samples".into(),
        (Faster::None, _, _) => format!("no significant difference{ci}"),
        (f, Some(d), _) => format!(
            "{} faster by {:.4} ms{ci}",
            if f == Faster::Method {
                "method"
            } else {
                "message"
            },
            d.abs()
        ),
        (_, None, _) => String::new(),
    }
}

/// The capacity line's definition, as the table states it.
fn definition(plan: &Plan) -> String {
    format!(
        "capacity = the highest rate sustained, every lower step too: no skipped exchange, no timeout, no error, Total p99 under {}",
        humantime::format_duration(plan.p99_bound)
    )
}

/// The final table: a header naming the sweep, one row per step and kind, the capacity per kind
/// (rate sweeps) and the crossover.
pub fn render_sweep_table(plan: &Plan, kinds: &[Kind], results: &[StepResult]) -> String {
    let mut out = format!(
        "Sweep over {}: {} of {} steps, each {} after a {} warm-up\n",
        plan.sweep.axis(),
        results.len(),
        plan.steps.len(),
        humantime::format_duration(plan.step),
        humantime::format_duration(plan.warmup),
    );
    out.push_str("Step | Rate        | Payload | Reply   | Kind     |   Count | Timeouts |  Errors | Skipped |     p50 ms |     p90 ms |     p99 ms |   p99.9 ms |     max ms | Verdict\n");
    out.push_str("-----+-------------+---------+---------+----------+---------+----------+---------+---------+------------+------------+------------+------------+------------+--------\n");
    for r in results {
        for (i, &kind) in kinds.iter().enumerate() {
            let k = r.stats.kind(kind);
            let q = |x| ms(k.total_quantile_ms(x));
            let (step, rate, payload, reply, verdict) = if i == 0 {
                (
                    (r.plan.index + 1).to_string(),
                    rate_words(r.plan.rate),
                    format_size(r.plan.payload_bytes),
                    format_size(r.reply_bytes),
                    verdict_cell(r),
                )
            } else {
                Default::default()
            };
            let row = format!(
                "{step:>4} | {rate:<11} | {payload:>7} | {reply:>7} | {:<8} | {:>7} | {:>8} | {:>7} | {:>7} | {:>10} | {:>10} | {:>10} | {:>10} | {:>10} | {verdict}",
                kind.label(),
                k.count(),
                k.timeouts,
                k.errors,
                k.skipped,
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                ms(k.total_max_ms()),
            );
            out.push_str(row.trim_end());
            out.push('\n');
        }
    }
    if matches!(plan.sweep, Sweep::Rate(_)) {
        let per_kind: Vec<String> = kinds
            .iter()
            .map(|&k| match Capacity::of(results, k, plan.p99_bound) {
                Some(c) => format!("{} {}", k.label(), c.words()),
                None => format!("{} -", k.label()),
            })
            .collect();
        out.push_str(&format!(
            "Capacity: {} ({})\n",
            per_kind.join("; "),
            definition(plan)
        ));
    }
    if kinds.len() == 2 {
        out.push_str(&format!(
            "Crossover: {}\n",
            Crossover::of(plan, results).words
        ));
    }
    out
}

/// The final JSON line: the sweep's definition, each kind's capacity (rate sweeps) and the
/// crossover (both kinds measured); the steps are in their own lines.
pub fn render_sweep_json(
    stamp: &str,
    plan: &Plan,
    kinds: &[Kind],
    results: &[StepResult],
) -> String {
    let capacity: serde_json::Map<String, serde_json::Value> = match plan.sweep {
        Sweep::Rate(_) => kinds
            .iter()
            .map(|&k| {
                let c = Capacity::of(results, k, plan.p99_bound);
                (
                    k.label().to_owned(),
                    serde_json::json!({
                        "rate": c.as_ref().and_then(Capacity::rate),
                        "above_range": matches!(c, Some(Capacity::Rate { failed: None, .. })),
                        "words": c.as_ref().map(Capacity::words),
                    }),
                )
            })
            .collect(),
        Sweep::Payload(_) => Default::default(),
    };
    let crossover = (kinds.len() == 2).then(|| {
        let c = Crossover::of(plan, results);
        let at = c.flips.first().and_then(|(i, k)| {
            let r = results.iter().find(|r| r.plan.index == *i)?;
            Some(serde_json::json!({
                "index": i,
                "rate": r.plan.rate,
                "payload_bytes": r.plan.payload_bytes,
                "faster": k.label(),
            }))
        });
        serde_json::json!({ "at": at, "flips": c.flips.len(), "words": c.words })
    });
    serde_json::json!({
        "time": stamp,
        "scope": "sweep",
        "axis": plan.sweep.axis(),
        "steps": plan.steps.len(),
        "completed": results.len(),
        "step_seconds": plan.step.as_secs_f64(),
        "warmup_seconds": plan.warmup.as_secs_f64(),
        "capacity_p99_ms": plan.p99_bound.as_secs_f64() * 1000.0,
        "capacity": (!capacity.is_empty()).then_some(capacity),
        "crossover": crossover,
    })
    .to_string()
}
