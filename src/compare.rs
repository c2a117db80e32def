//! `method-vs-message compare A.json B.json`: did run B get slower or faster than run A? Per kind
//! (and per sweep step both runs have), the change of Total's median and p99 with a 95 %
//! bootstrap interval, and "slower", "faster" or "no significant change" (docs/compare.md).

mod decide;
mod input;

use anyhow::Result;
use decide::{Change, Outcome, Stat};
use input::{InputError, Line, RunFile};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

/// The exit status of `--fail-on-regression` when B is significantly slower (docs/compare.md);
/// 1 is an error (a refused file), 2 a usage error.
pub const REGRESSION_EXIT: u8 = 3;

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The baseline: a finished run's JSON output (`--summary-format json`).
    a: PathBuf,
    /// The run compared with it, in the same form.
    b: PathBuf,
    /// Exit with status 3 when B is significantly slower than A: a kind's median slower (in the
    /// whole run, or in a sweep step both have), or a kind with at least 20 samples in A and
    /// fewer in B. A refused file exits 1, a usage error 2.
    #[arg(long)]
    fail_on_regression: bool,
    /// A change counts only when its 95 % interval excludes 0 and it is at least this many per
    /// cent of A's value.
    #[arg(long, value_name = "PERCENT", default_value_t = decide::DEFAULT_THRESHOLD_PERCENT, value_parser = threshold)]
    threshold: f64,
}

fn threshold(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if p.is_finite() && (0.0..=1000.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "{s:?} is not a percentage from 0 to 1000 (e.g. --threshold 10)"
        )),
    }
}

/// B was significantly slower and `--fail-on-regression` was given: the launcher exits with
/// [`REGRESSION_EXIT`] (the comparison is already printed).
#[derive(Debug)]
pub struct Regression;

impl std::fmt::Display for Regression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "B is significantly slower than A (--fail-on-regression)")
    }
}

impl std::error::Error for Regression {}

/// Reads both files, prints the comparison, and fails with [`Regression`] when asked to.
pub fn run(args: &CompareArgs) -> Result<()> {
    let a = RunFile::read(&args.a)?;
    let b = RunFile::read(&args.b)?;
    let comparison = compare(&a, &b, args.threshold)?;
    // Not print!: a closed pipe (`compare a b | head -3`) must not panic.
    let _ = std::io::stdout()
        .lock()
        .write_all(comparison.render(&a, &b, args.threshold).as_bytes());
    if args.fail_on_regression && comparison.regressed() {
        eprintln!("compare: {Regression}: exit status {REGRESSION_EXIT}");
        return Err(Regression.into());
    }
    Ok(())
}

/// One kind in one scope (the whole run, or a step).
#[derive(Debug, Clone)]
struct Row {
    scope: String,
    kind: String,
    n: (usize, usize),
    median: Option<Change>,
    p99: Option<Change>,
}

impl Row {
    /// Slower median, or a kind A measured that B could not (fewer than the verdict's minimum).
    fn regressed(&self) -> bool {
        let (na, nb) = self.n;
        let min = consumer::verdict::MIN_SAMPLES;
        self.median.as_ref().map(|c| c.outcome) == Some(Outcome::Slower) || (na >= min && nb < min)
    }
}

#[derive(Debug, Clone)]
struct Comparison {
    rows: Vec<Row>,
    /// Steps only one run has, and which scope was compared.
    notes: Vec<String>,
}

/// The pairs of lines to compare: the steps both runs have (matched by workload), else the runs.
fn pairs<'f>(a: &'f RunFile, b: &'f RunFile) -> (Vec<(String, &'f Line, &'f Line)>, Vec<String>) {
    let mut notes = Vec::new();
    let common: Vec<_> = a
        .steps
        .iter()
        .filter_map(|(key, la)| {
            let (_, lb) = b.steps.iter().find(|(k, _)| k == key)?;
            Some((format!("step {}", key.label), la, lb))
        })
        .collect();
    for (only, other, name) in [(a, b, "A"), (b, a, "B")] {
        for (key, _) in &only.steps {
            if !other.steps.iter().any(|(k, _)| k == key) {
                notes.push(format!(
                    "step {} is only in {name}: not compared",
                    key.label
                ));
            }
        }
    }
    if common.is_empty() {
        if !(a.steps.is_empty() && b.steps.is_empty()) {
            notes.push("no sweep step in both runs: the whole runs are compared".into());
        }
        return (vec![("run".into(), &a.run, &b.run)], notes);
    }
    (common, notes)
}

fn compare(a: &RunFile, b: &RunFile, threshold: f64) -> Result<Comparison, InputError> {
    let (pairs, notes) = pairs(a, b);
    let mut rows = Vec::new();
    for (scope, la, lb) in pairs {
        for (this, line, other, other_line) in [(a, la, b, lb), (b, lb, a, la)] {
            if let Some(kind) = other_line
                .kinds
                .keys()
                .find(|k| !line.kinds.contains_key(*k))
            {
                return Err(InputError {
                    file: this.path.clone(),
                    line: Some(line.number),
                    what: format!(
                        "no kind {kind:?} in the {scope} line ({} line {} has it)",
                        other.path.display(),
                        other_line.number
                    ),
                    todo: "compare runs that measured the same kinds (EnableMethod, \
                           EnableMessage)"
                        .into(),
                });
            }
        }
        for (kind, sa) in &la.kinds {
            let Some(sb) = lb.kinds.get(kind) else {
                continue; // unreachable: the kinds were checked above
            };
            let (va, vb) = (&sa.total_ms, &sb.total_ms);
            rows.push(Row {
                scope: scope.clone(),
                kind: kind.clone(),
                n: (va.len(), vb.len()),
                median: decide::median(va, vb, threshold),
                p99: decide::p99(va, vb, threshold),
            });
        }
    }
    Ok(Comparison { rows, notes })
}

fn signed(v: f64) -> String {
    format!("{v:+.4}")
}

impl Comparison {
    fn regressed(&self) -> bool {
        self.rows.iter().any(Row::regressed)
    }

    fn render(&self, a: &RunFile, b: &RunFile, threshold: f64) -> String {
        let mut out = String::new();
        for (name, f) in [("A", a), ("B", b)] {
            let _ = writeln!(
                out,
                "{name}: {} (run line {}, {})",
                f.path.display(),
                f.run.number,
                f.run.schedule
            );
        }
        let _ = writeln!(
            out,
            "A change counts when its 95% CI excludes 0 and it is at least {threshold}% of A."
        );
        for note in &self.notes {
            let _ = writeln!(out, "Note: {note}");
        }
        let _ = writeln!(
            out,
            "{:<26} {:<8} {:<6} {:>10} {:>10} {:>10} {:>9}  {:<22} result",
            "scope", "kind", "stat", "A ms", "B ms", "B-A ms", "change", "95% CI of B-A (ms)"
        );
        for row in &self.rows {
            for (stat, change) in [(Stat::Median, &row.median), (Stat::P99, &row.p99)] {
                out.push_str(&render_change(row, stat, change.as_ref()));
            }
        }
        out.push_str(&self.result_line());
        out
    }

    /// The answer in one line: slower (with what), else faster (with what), else no change.
    fn result_line(&self) -> String {
        let medians = |o: Outcome| -> Vec<String> {
            self.rows
                .iter()
                .filter_map(|r| {
                    let c = r.median.as_ref().filter(|c| c.outcome == o)?;
                    let pct = c.percent().map_or(String::new(), |p| format!(" {p:+.1}%"));
                    Some(format!("{} median{pct} ({})", r.kind, r.scope))
                })
                .collect()
        };
        let lost: Vec<String> = self
            .rows
            .iter()
            .filter(|r| {
                r.regressed() && r.median.as_ref().map(|c| c.outcome) != Some(Outcome::Slower)
            })
            .map(|r| {
                format!(
                    "{} has {} samples in B, {} in A ({})",
                    r.kind, r.n.1, r.n.0, r.scope
                )
            })
            .collect();
        let (slower, faster) = (medians(Outcome::Slower), medians(Outcome::Faster));
        if !slower.is_empty() || !lost.is_empty() {
            let all: Vec<String> = slower.into_iter().chain(lost).collect();
            format!("Result: slower: {}\n", all.join(", "))
        } else if !faster.is_empty() {
            format!("Result: faster: {}\n", faster.join(", "))
        } else {
            "Result: no significant change\n".into()
        }
    }
}

fn render_change(row: &Row, stat: Stat, change: Option<&Change>) -> String {
    let head = format!("{:<26} {:<8} {:<6}", row.scope, row.kind, stat.label());
    let Some(c) = change else {
        return format!(
            "{head} no samples (n A {}, B {}): nothing to compare\n",
            row.n.0, row.n.1
        );
    };
    let pct = c.percent().map_or("-".into(), |p| format!("{p:+.1}%"));
    let ci = c.ci95_ms.map_or("-".into(), |(lo, hi)| {
        format!("[{}, {}]", signed(lo), signed(hi))
    });
    let mut words = c.outcome.words().to_owned();
    if c.outcome == Outcome::TooFewSamples {
        words.push_str(&format!(" (n A {}, B {})", row.n.0, row.n.1));
    }
    format!(
        "{head} {:>10.4} {:>10.4} {:>10} {pct:>9}  {ci:<22} {words}\n",
        c.a_ms,
        c.b_ms,
        signed(c.diff_ms)
    )
}

#[cfg(test)]
mod tests;
