use super::*;
use consumer::verdict::SplitMix64;
use serde_json::json;
use std::path::Path;

/// Latency-like values: a floor plus an exponential tail, from a seeded stream.
fn latencies(seed: u64, n: usize, floor: f64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| floor - 0.2 * (1.0 - rng.unit()).ln())
        .collect()
}

fn kind(values: &[f64]) -> serde_json::Value {
    json!({"sample": {"version": 1, "seen": values.len(), "total_ms": values}})
}

/// A file with a run line of both kinds (and the given step lines before it).
fn file(name: &str, method: &[f64], message: &[f64], steps: &[(f64, &[f64])]) -> RunFile {
    let mut lines: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, (rate, v))| {
            json!({"scope": "step", "schedule": "open", "rate": rate,
                   "step": {"index": i, "axis": "rate", "rate": rate, "payload_bytes": 0},
                   "kinds": {"method": kind(v), "message": kind(v)}})
            .to_string()
        })
        .collect();
    lines.push(
        json!({"scope": "run", "schedule": "closed", "rate": 0.0,
               "kinds": {"method": kind(method), "message": kind(message)}})
        .to_string(),
    );
    RunFile::parse(Path::new(name), &lines.join("\n")).expect("a valid file")
}

#[test]
fn the_same_runs_are_no_significant_change_and_no_regression() {
    let (m, g) = (latencies(1, 2048, 0.5), latencies(2, 2048, 0.6));
    let a = file("a.json", &m, &g, &[]);
    let b = file(
        "b.json",
        &latencies(3, 2048, 0.5),
        &latencies(4, 2048, 0.6),
        &[],
    );
    let c = compare(&a, &b, 10.0).expect("comparable");
    assert_eq!(c.rows.len(), 2);
    assert!(!c.regressed());
    let text = c.render(&a, &b, 10.0);
    assert!(text.ends_with("Result: no significant change\n"), "{text}");
    assert!(
        text.contains("A: a.json (run line 1, closed loop)"),
        "{text}"
    );
    assert_eq!(text.matches("no significant change").count(), 5, "{text}");
}

#[test]
fn a_slower_kind_is_a_regression_and_says_which() {
    let m = latencies(1, 2048, 0.5);
    let a = file("a.json", &m, &latencies(2, 2048, 0.5), &[]);
    let b = file("b.json", &m, &latencies(3, 2048, 2.5), &[]);
    let c = compare(&a, &b, 10.0).expect("comparable");
    assert!(c.regressed());
    let text = c.render(&a, &b, 10.0);
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("Result: slower: message median +"),
        "{text}"
    );
    assert!(last.ends_with("(run)"), "{text}");
    // The other way round it is faster, not a regression.
    let back = compare(&b, &a, 10.0).expect("comparable");
    assert!(!back.regressed());
    assert!(back
        .render(&b, &a, 10.0)
        .contains("Result: faster: message median -"));
}

#[test]
fn steps_both_runs_have_are_compared_instead_of_the_whole_run() {
    let (slow, fast) = (latencies(5, 500, 3.0), latencies(6, 500, 0.5));
    let m = latencies(1, 2048, 0.5);
    let a = file("a.json", &m, &m, &[(50.0, &fast), (100.0, &fast)]);
    let b = file("b.json", &m, &m, &[(100.0, &slow), (200.0, &fast)]);
    let c = compare(&a, &b, 10.0).expect("comparable");
    let scopes: Vec<&str> = c.rows.iter().map(|r| r.scope.as_str()).collect();
    assert_eq!(scopes, ["step rate=100/s payload=0B"; 2]);
    assert!(c.regressed());
    assert_eq!(
        c.notes,
        [
            "step rate=50/s payload=0B is only in A: not compared",
            "step rate=200/s payload=0B is only in B: not compared"
        ]
    );
    // No step in common: the whole runs.
    let plain = file("c.json", &m, &m, &[]);
    let c = compare(&a, &plain, 10.0).expect("comparable");
    assert!(c.rows.iter().all(|r| r.scope == "run"));
    assert!(c
        .notes
        .iter()
        .any(|n| n.contains("the whole runs are compared")));
}

#[test]
fn a_kind_missing_in_one_run_is_refused_with_where() {
    let m = latencies(1, 100, 0.5);
    let a = file("a.json", &m, &m, &[]);
    let text = json!({"scope": "run", "kinds": {"message": kind(&m)}}).to_string();
    let b = RunFile::parse(Path::new("b.json"), &format!("log\n{text}")).expect("valid alone");
    let e = compare(&a, &b, 10.0).unwrap_err();
    assert_eq!((e.file.as_path(), e.line), (Path::new("b.json"), Some(2)));
    assert!(
        e.what
            .contains("no kind \"method\" in the run line (a.json line 1 has it)"),
        "{e}"
    );
    assert!(compare(&b, &a, 10.0).unwrap_err().file == Path::new("b.json"));
}

#[test]
fn a_kind_that_stopped_answering_is_a_regression() {
    let m = latencies(1, 2048, 0.5);
    let a = file("a.json", &m, &m, &[]);
    let b = file("b.json", &m, &[], &[]);
    let c = compare(&a, &b, 10.0).expect("comparable");
    assert!(c.regressed());
    let text = c.render(&a, &b, 10.0);
    assert!(text.contains("no samples (n A 2048, B 0)"), "{text}");
    assert!(
        text.ends_with("Result: slower: message has 0 samples in B, 2048 in A (run)\n"),
        "{text}"
    );
}

#[test]
fn the_threshold_takes_a_percentage() {
    assert_eq!(threshold("10"), Ok(10.0));
    assert_eq!(threshold("2.5%"), Ok(2.5));
    for bad in ["-1", "ten", "NaN", "5000"] {
        assert!(threshold(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_numbers_docs_compare_md_and_the_help_state_hold() {
    assert_eq!(REGRESSION_EXIT, 3);
    assert_eq!(decide::DEFAULT_THRESHOLD_PERCENT, 25.0);
    assert_eq!(consumer::verdict::MIN_SAMPLES, 20);
    assert_eq!(consumer::verdict::RESERVOIR, 2048);
    assert_eq!(consumer::snapshot::VERSION, 1);
}
