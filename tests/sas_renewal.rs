//! SAS token renewal (issue 9): with a 30 s token renewed 10 s before it ends, both modules
//! reconnect with fresh tokens every ~20 s for the whole run, and no exchange is lost beyond the
//! reconnect itself.

use std::time::Duration;
use test_support::{local_run_command, summaries, tempdir, Proc};

#[test]
fn short_lived_tokens_are_renewed_again_and_again_without_losing_exchanges() {
    let state = tempdir("sas-renewal");
    let mut cmd = local_run_command(
        &state,
        &[
            "--summary-interval",
            "10s",
            "--duration",
            "125s",
            "--summary-format",
            "json",
            "--rate",
            "100",
        ],
    );
    cmd.env("SAS_TOKEN_LIFETIME", "30s")
        .env("SAS_TOKEN_RENEW_MARGIN", "10s");
    let mut run = Proc::spawn("local-run", cmd);
    assert!(
        run.wait(Duration::from_secs(240)).success(),
        "{}",
        run.output()
    );
    let out = run.output();
    let renewals = |module: &str| {
        out.lines()
            .filter(|l| l.contains(&format!("[{module}]")) && l.contains("renewing the SAS token"))
            .count()
    };
    let (producer, consumer) = (renewals("producer"), renewals("consumer"));
    assert!(
        producer >= 5 && consumer >= 5,
        "renewals: producer {producer}, consumer {consumer}\n{out}"
    );
    // Every renewal is a reconnect: at most the exchanges in flight at that moment are lost.
    let runs: Vec<_> = summaries(&run)
        .into_iter()
        .filter(|s| s["scope"] == "run")
        .collect();
    let run_summary = runs
        .last()
        .unwrap_or_else(|| panic!("no whole-run summary:\n{out}"));
    let mut lost = 0;
    for kind in ["method", "message"] {
        let ok = test_support::count(run_summary, kind, "count");
        assert!(ok > 10_000, "{kind}: {run_summary}");
        lost += test_support::count(run_summary, kind, "timeouts")
            + test_support::count(run_summary, kind, "errors");
    }
    assert!(
        lost as usize <= producer + consumer,
        "{lost} exchanges lost over {} reconnects: {run_summary}",
        producer + consumer
    );
    // The hub saw each reconnect as a new, authenticated connection: nothing refused but a method
    // call that found the producer in the middle of its reconnect. (The consumer's JSON summaries
    // name a `hub_refused` failure class; their counts are checked above.)
    let refused: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("refused") && !l.contains("reason=\"target_not_found\""))
        .filter(|l| !l.contains("\"failures\":"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
}
