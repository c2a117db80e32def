//! Reading one run's JSON output for `compare`: its run line and its sweep steps, each kind's
//! sample, and what is wrong with a file, where, and what to do about it.

use consumer::snapshot::SampleSnapshot;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What one summary line of a run holds for `compare`.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// 1-based, in its file.
    pub number: usize,
    /// `closed`/`open` and the rate, as the line says.
    pub schedule: String,
    /// Each kind's sample, by the kind's name (`method`, `message`).
    pub kinds: BTreeMap<String, SampleSnapshot>,
}

/// A sweep step's identity: its workload when the line names it, else its position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StepKey {
    /// `rate=200/s`, `payload=16384B`, or `#3` for a step line without its workload.
    pub label: String,
}

/// One file: its run line and its step lines (in the file's order).
#[derive(Debug, Clone)]
pub struct RunFile {
    pub path: PathBuf,
    pub run: Line,
    pub steps: Vec<(StepKey, Line)>,
}

/// Why a file cannot be compared: which file, which line (if one), what, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub what: String,
    pub todo: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(n) = self.line {
            write!(f, ":{n}")?;
        }
        write!(f, ": {}; {}", self.what, self.todo)
    }
}

impl std::error::Error for InputError {}

/// What to do about a file that is not a run's JSON output.
const PRODUCE: &str = "compare reads the output of a finished run with --summary-format json \
(e.g. `method-vs-message --summary-format json --duration 60s > a.json`)";

impl RunFile {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| InputError {
            file: path.to_owned(),
            line: None,
            what: format!("cannot read it ({e})"),
            todo: "give the path of a run's JSON output".into(),
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text`, the contents of `path`. Lines that are not JSON objects (logs, tables of
    /// `--summary-format both`) and lines of other scopes than run and step are skipped.
    pub fn parse(path: &Path, text: &str) -> Result<Self, InputError> {
        let err = |line: Option<usize>, what: String, todo: &str| InputError {
            file: path.to_owned(),
            line,
            what,
            todo: todo.to_owned(),
        };
        let mut run: Option<Line> = None;
        let mut steps: Vec<(StepKey, Line)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let number = i + 1;
            let raw = raw.trim();
            if !raw.starts_with('{') {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(raw)
                .map_err(|e| err(Some(number), format!("not JSON ({e})"), PRODUCE))?;
            let scope = match value.get("scope") {
                None => continue,
                Some(s) => s.as_str().unwrap_or_default(),
            };
            match scope {
                "run" => {
                    if let Some(first) = &run {
                        return Err(err(
                            Some(number),
                            format!("a second run line (the first is line {})", first.number),
                            "give one run per file",
                        ));
                    }
                    run = Some(
                        Line::parse(&value, number)
                            .map_err(|(what, todo)| err(Some(number), what, todo))?,
                    );
                }
                "step" => {
                    let key = step_key(&value);
                    if let Some((_, first)) = steps.iter().find(|(k, _)| *k == key) {
                        return Err(err(
                            Some(number),
                            format!("step {} again (first at line {})", key.label, first.number),
                            "give one sweep per file",
                        ));
                    }
                    let line = Line::parse(&value, number)
                        .map_err(|(what, todo)| err(Some(number), what, todo))?;
                    steps.push((key, line));
                }
                // Interval lines, a sweep's summary, and scopes of later builds: not compared.
                _ => {}
            }
        }
        let run = run.ok_or_else(|| {
            err(
                None,
                "no run line (\"scope\": \"run\"): the run did not finish, or this is not its \
                 JSON output"
                    .into(),
                PRODUCE,
            )
        })?;
        Ok(Self {
            path: path.to_owned(),
            run,
            steps,
        })
    }
}

/// What to do about a line written without samples, or by another sample version.
const RERUN: &str = "re-run both runs with this build (docs/compare.md: the sample field)";

impl Line {
    /// The kinds' samples and the schedule of a run or step line; `Err((what, todo))`.
    fn parse(value: &serde_json::Value, number: usize) -> Result<Self, (String, &'static str)> {
        let kinds = value
            .get("kinds")
            .and_then(|k| k.as_object())
            .ok_or_else(|| ("no \"kinds\" object".to_owned(), PRODUCE))?;
        if kinds.is_empty() {
            return Err(("no kind in \"kinds\"".to_owned(), PRODUCE));
        }
        let mut samples = BTreeMap::new();
        for (name, figures) in kinds {
            let sample = figures.get("sample").ok_or_else(|| {
                (
                    format!("kind {name:?} has no \"sample\" (written by an older build?)"),
                    RERUN,
                )
            })?;
            let sample = SampleSnapshot::from_json(sample)
                .map_err(|e| (format!("kind {name:?}: {e}"), RERUN))?;
            samples.insert(name.clone(), sample);
        }
        let rate = value.get("rate").and_then(|r| r.as_f64()).unwrap_or(0.0);
        let schedule = match value.get("schedule").and_then(|s| s.as_str()) {
            Some("open") => format!("open loop {rate}/s"),
            Some("closed") => "closed loop".to_owned(),
            Some(other) => other.to_owned(),
            None => "schedule unknown".to_owned(),
        };
        Ok(Self {
            number,
            schedule,
            kinds: samples,
        })
    }
}

/// A step line's key: its workload on the sweep's axis (steps of two sweeps match when they ran
/// the same workload, whatever their position), else its index.
fn step_key(value: &serde_json::Value) -> StepKey {
    let step = value.get("step");
    let field = |name: &str| step.and_then(|s| s.get(name));
    let rate = field("rate").and_then(|r| r.as_f64());
    let payload = field("payload_bytes").and_then(|p| p.as_u64());
    let label = match (field("axis").and_then(|a| a.as_str()), rate, payload) {
        (Some("rate"), Some(rate), Some(payload)) => format!("rate={rate}/s payload={payload}B"),
        (Some(_), Some(rate), Some(payload)) => format!("payload={payload}B rate={rate}/s"),
        _ => match field("index").and_then(|i| i.as_u64()) {
            Some(i) => format!("#{i}"),
            None => "#?".to_owned(),
        },
    };
    StepKey { label }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(values: &[f64]) -> serde_json::Value {
        json!({"count": values.len(), "sample": {"version": 1, "seen": values.len(), "total_ms": values}})
    }

    fn run_line(scope: &str) -> String {
        json!({"scope": scope, "schedule": "open", "rate": 50.0,
               "kinds": {"method": kind(&[1.0, 2.0]), "message": kind(&[3.0])}})
        .to_string()
    }

    fn parse(text: &str) -> Result<RunFile, InputError> {
        RunFile::parse(Path::new("a.json"), text)
    }

    #[test]
    fn a_run_file_keeps_its_run_line_and_skips_logs_and_intervals() {
        let text = format!(
            "starting\n{}\n[hub] listening\n\n{}\n",
            run_line("interval"),
            run_line("run")
        );
        let f = parse(&text).expect("valid");
        assert_eq!(f.run.number, 5);
        assert_eq!(f.run.schedule, "open loop 50/s");
        assert_eq!(f.run.kinds["method"].total_ms, vec![1.0, 2.0]);
        assert_eq!(f.run.kinds["message"].seen, 1);
        assert!(f.steps.is_empty());
    }

    #[test]
    fn steps_are_keyed_by_their_workload_or_else_their_index() {
        let step = |axis: &str, rate: f64, payload: u64, index: u64| {
            let mut v: serde_json::Value = serde_json::from_str(&run_line("step")).unwrap();
            v["step"] =
                json!({"index": index, "axis": axis, "rate": rate, "payload_bytes": payload});
            v.to_string()
        };
        let text = [
            step("rate", 50.0, 0, 0),
            step("rate", 100.0, 0, 1),
            step("payload", 50.0, 1024, 2),
            json!({"scope": "step", "step": {"index": 7}, "kinds": {"method": kind(&[1.0])}})
                .to_string(),
            run_line("run"),
        ]
        .join("\n");
        let f = parse(&text).expect("valid");
        let labels: Vec<&str> = f.steps.iter().map(|(k, _)| k.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "rate=50/s payload=0B",
                "rate=100/s payload=0B",
                "payload=1024B rate=50/s",
                "#7"
            ]
        );
        let again = format!("{}\n{}", step("rate", 50.0, 0, 0), text);
        let e = parse(&again).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.what.contains("again (first at line 1)"), "{e}");
    }

    #[test]
    fn files_without_a_run_line_or_with_two_are_refused_with_where_and_what_to_do() {
        let sweep = r#"{"scope": "sweep", "capacity": {}}"#;
        let e = parse(&format!("{}\n{sweep}", run_line("interval"))).unwrap_err();
        assert_eq!(e.line, None);
        assert!(e.what.contains("no run line"), "{e}");
        assert!(e.todo.contains("--summary-format json"), "{e}");
        let e = parse(&format!("{}\n{}", run_line("run"), run_line("run"))).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.to_string().starts_with("a.json:2: a second run line"),
            "{e}"
        );
    }

    #[test]
    fn malformed_lines_and_samples_are_refused_with_their_line() {
        let cases = [
            ("{not json", "not JSON"),
            (r#"{"scope": "run"}"#, "no \"kinds\" object"),
            (r#"{"scope": "run", "kinds": {}}"#, "no kind"),
            (
                r#"{"scope": "run", "kinds": {"method": {"count": 3}}}"#,
                "no \"sample\"",
            ),
            (
                r#"{"scope": "run", "kinds": {"method": {"sample": {"version": 2, "seen": 1, "total_ms": [1]}}}}"#,
                "sample version 2, this build reads version 1 only",
            ),
            (
                r#"{"scope": "run", "kinds": {"method": {"sample": {"version": 1, "seen": 1, "total_ms": "x"}}}}"#,
                "malformed sample",
            ),
        ];
        for (line, expected) in cases {
            let e = parse(&format!("log line\n{line}\n")).unwrap_err();
            assert_eq!(e.line, Some(2), "{line}");
            assert!(e.what.contains(expected), "{line}: {e}");
            assert!(!e.todo.is_empty());
        }
    }

    #[test]
    fn an_unreadable_file_is_refused() {
        let e = RunFile::read(Path::new("/nonexistent/a.json")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/a.json: cannot read it"),
            "{e}"
        );
    }
}
