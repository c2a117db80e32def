use super::*;
use crate::stats::{IntervalStats, Sample};
use crate::verdict::{self, Verdict};
use std::time::Duration;

#[test]
fn sweeps_parse_one_axis_of_increasing_values() {
    assert_eq!(
        Sweep::parse("rate=50,100, 200,400"),
        Ok(Sweep::Rate(vec![50.0, 100.0, 200.0, 400.0]))
    );
    assert_eq!(
        Sweep::parse("payload=0,1KiB,16KiB,120KiB"),
        Ok(Sweep::Payload(vec![0, 1024, 16 * 1024, 120 * 1024]))
    );
    for (bad, why) in [
        ("rate 50,100", "no '='"),
        ("speed=1,2", "unknown axis \"speed\""),
        ("rate=50,,100", "empty value"),
        ("rate=100,50", "strictly increasing"),
        ("rate=0,50", "above 0"),
        ("rate=fast", "\"fast\""),
        ("payload=1KB", "unknown unit"),
        ("rate=50;payload=1KiB", "one axis"),
    ] {
        let e = Sweep::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(
            e.contains("rate=50,100,200,400"),
            "{bad}: no example in {e}"
        );
    }
    let many = format!(
        "rate={}",
        (1..=40)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(Sweep::parse(&many).unwrap_err().contains("at most 32"));
}

/// A step whose kinds took `method_ms` and `message_ms` for every one of `n` exchanges (a little
/// spread so the bootstrap has something to resample).
fn step(index: usize, rate: f64, method_ms: f64, message_ms: f64, n: usize) -> StepResult {
    let mut stats = IntervalStats::default();
    for i in 0..n {
        let jitter = (i % 10) as f64 * 0.001;
        for (kind, ms) in [(Kind::Method, method_ms), (Kind::Message, message_ms)] {
            stats.kind_mut(kind).record(&Sample {
                c2p_ms: 0.0,
                p2c_ms: 0.0,
                total_ms: ms + jitter,
            });
        }
    }
    let verdict: Verdict =
        verdict::compare(stats.method.sample(), stats.message.sample(), verdict::SEED);
    StepResult {
        plan: StepPlan {
            index,
            rate,
            payload_bytes: 0,
            size_index: 0,
        },
        reply_bytes: 0,
        stats,
        verdict: Some(verdict),
    }
}

fn rate_plan(rates: &[f64]) -> Plan {
    Plan::new(
        Sweep::Rate(rates.to_vec()),
        0.0,
        0,
        Duration::from_secs(2),
        Duration::from_secs(1),
        Duration::from_millis(50),
    )
}

#[test]
fn capacity_is_the_highest_rate_sustained_with_every_lower_one() {
    let plan = rate_plan(&[50.0, 100.0, 200.0, 400.0]);
    let mut results = vec![
        step(0, 50.0, 1.0, 1.2, 200),
        step(1, 100.0, 1.0, 1.2, 200),
        step(2, 200.0, 1.0, 80.0, 200),
        step(3, 400.0, 1.0, 1.2, 200),
    ];
    results[3].stats.method.skipped = 7;
    let message = Capacity::of(&results, Kind::Message, plan.p99_bound).unwrap();
    assert_eq!(message.rate(), Some(100.0));
    assert!(
        message.words().contains("not 200/s: p99"),
        "{}",
        message.words()
    );
    let method = Capacity::of(&results, Kind::Method, plan.p99_bound).unwrap();
    assert_eq!(method.rate(), Some(200.0));
    assert!(method.words().contains("7 skipped"), "{}", method.words());
    results[0].stats.method.timeouts = 1;
    assert!(matches!(
        Capacity::of(&results, Kind::Method, plan.p99_bound),
        Some(Capacity::BelowRange { .. })
    ));
    let all = Capacity::of(&results[1..2], Kind::Message, plan.p99_bound).unwrap();
    assert!(all.words().contains("or more"), "{}", all.words());

    let table = render_sweep_table(&plan, &[Kind::Message, Kind::Method], &results);
    assert!(table.contains("Capacity: message 100/s"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains("| message  |")).count(),
        4,
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&render_sweep_json(
        "t",
        &plan,
        &[Kind::Message, Kind::Method],
        &results,
    ))
    .unwrap();
    assert_eq!(json["scope"], "sweep");
    assert_eq!(json["capacity"]["message"]["rate"], 100.0);
    assert_eq!(json["capacity"]["method"]["rate"], serde_json::Value::Null);
}

#[test]
fn the_crossover_is_where_the_significant_verdict_flips() {
    let plan = Plan::new(
        Sweep::Payload(vec![0, 1024, 16 * 1024, 64 * 1024]),
        50.0,
        0,
        Duration::from_secs(2),
        Duration::from_secs(1),
        Duration::from_millis(50),
    );
    let mut results = vec![
        step(0, 50.0, 1.0, 2.0, 200),
        step(1, 50.0, 1.0, 1.0, 200),
        step(2, 50.0, 3.0, 2.0, 200),
        step(3, 50.0, 5.0, 2.0, 200),
    ];
    for (i, r) in results.iter_mut().enumerate() {
        r.plan.payload_bytes = plan.steps[i].payload_bytes;
    }
    let c = Crossover::of(&plan, &results);
    assert_eq!(c.first, Some(Kind::Method));
    assert_eq!(c.flips, vec![(2, Kind::Message)]);
    assert_eq!(
        c.words,
        "a message is faster from 16KiB up (a method below)"
    );
    let none = Crossover::of(&plan, &results[..2]);
    assert!(
        none.words.starts_with("no crossover in the range"),
        "{}",
        none.words
    );
    let flat = Crossover::of(&plan, &results[1..2]);
    assert!(
        flat.words.contains("no significant difference"),
        "{}",
        flat.words
    );
}
