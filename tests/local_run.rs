//! The main job: `cargo run --release -- --summary-interval 5s --duration 20s` prints both tables
//! with non-zero counts and exits 0 (issue 3, "Done when" 1).

use std::process::Command;
use std::time::Duration;
use test_support::*;

fn count_after(output: &str, title: &str) -> Vec<u64> {
    // The count sits on the P->C row: "   1234 |  P->C  | …" right after a "<title> … | Minimum" header.
    let lines: Vec<&str> = output.lines().collect();
    let mut counts = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with(title) && l.contains("| Minimum") {
            if let Some(row) = lines.get(i + 3) {
                if let Some(n) = row.split('|').next().and_then(|c| c.trim().parse().ok()) {
                    counts.push(n);
                }
            }
        }
    }
    counts
}

#[test]
fn the_main_job_prints_both_tables_and_exits_cleanly() {
    let _ports = FixedPorts::lock(); // the run's default ports
    let state = tempdir("local-run");
    let mut cmd = Command::new(bin());
    cmd.current_dir(repo())
        .args([
            "--summary-interval",
            "5s",
            "--duration",
            "20s",
            "--state-dir",
        ])
        .arg(&state);
    let mut run = Proc::spawn("local-run", cmd);
    let status = run.wait(Duration::from_secs(90));
    let out = run.output();
    assert!(status.success(), "exit {status}:\n{out}");
    let messages = count_after(&out, "Messages");
    let methods = count_after(&out, "Method ");
    assert!(
        messages.len() >= 3 && methods.len() >= 3,
        "expected ≥3 intervals of both tables:\n{out}"
    );
    assert!(
        messages.iter().take(3).all(|&n| n > 0),
        "message counts {messages:?}:\n{out}"
    );
    assert!(
        methods.iter().take(3).all(|&n| n > 0),
        "method counts {methods:?}:\n{out}"
    );
    assert!(out.contains("items in 5 seconds"), "{out}");
    for endpoint in [
        "hub http://127.0.0.1:9600/metrics",
        "producer http://127.0.0.1:9601/metrics",
        "consumer http://127.0.0.1:9602/metrics",
    ] {
        assert!(out.contains(endpoint), "missing {endpoint}:\n{out}");
    }
    assert!(!out.contains("panicked"), "{out}");
}
