//! The table, the JSON line and the run summary.

use super::*;
use crate::kind::Kind;
use crate::schedule::Schedule;
use crate::stats::{IntervalStats, KindStats, Sample};

fn sample(c2p: f64, p2c: f64) -> Sample {
    Sample {
        c2p_ms: c2p,
        p2c_ms: p2c,
        total_ms: c2p + p2c,
    }
}

/// The example in the seed's README, rebuilt from samples with the same min/max/avg and bins.
#[test]
fn renders_the_seed_layout() {
    let mut s = IntervalStats::default();
    // Messages: 4 samples whose totals fall in <1000 (2), 3000 and >10000.
    for x in [
        sample(1.0952, 1.4906),
        sample(16.2191, 0.9817),
        sample(3000.0, 51.9430),
        sample(10019.3094, 2.9021),
    ] {
        s.message.record(&x);
    }
    s.method.record(&sample(14.1958, 1.3131));
    let table = render_table(
        "2019-06-19T19:32:16.4161739+00:00",
        Duration::from_secs(60),
        &s,
        &[Kind::Message, Kind::Method],
        false,
    );
    let expected = "\
2019-06-19T19:32:16.4161739+00:00 - 5 items in 1 minute
Messages         | Minimum    | Maximum    | Average    |
--------+--------+------------+------------+------------|
        |  C->P  |     1.0952 | 10019.3094 |  3259.1559 |
      4 |  P->C  |     0.9817 |    51.9430 |    14.3293 |
        |  Total |     2.5858 | 10022.2115 |  3273.4853 |
--------+--------+------------+------------+------------|
Count   | Millis | Percentage
--------+--------+-------------
      2 |  <1000 | ██████
      0 |   1000 |
      0 |   2000 |
      1 |   3000 | ███
      0 |   4000 |
      0 |   5000 |
      0 |   6000 |
      0 |   7000 |
      0 |   8000 |
      0 |   9000 |
      1 | >10000 | ███
--------+--------+-------------
Method           | Minimum    | Maximum    | Average    |
--------+--------+------------+------------+------------|
        |  C->P  |    14.1958 |    14.1958 |    14.1958 |
      1 |  P->C  |     1.3131 |     1.3131 |     1.3131 |
        |  Total |    15.5089 |    15.5089 |    15.5089 |
--------+--------+------------+------------+------------|
Count   | Millis | Percentage
--------+--------+-------------
      1 |  <1000 | ████████████
      0 |   1000 |
      0 |   2000 |
      0 |   3000 |
      0 |   4000 |
      0 |   5000 |
      0 |   6000 |
      0 |   7000 |
      0 |   8000 |
      0 |   9000 |
      0 | >10000 |
--------+--------+-------------
";
    assert_eq!(table, expected);
}

#[test]
fn empty_interval_prints_dashes_not_nan() {
    let s = IntervalStats::default();
    let table = render_table("t", Duration::from_secs(5), &s, &[Kind::Method], true);
    assert!(table.starts_with("t - 0 items in 5 seconds\n"));
    assert!(table.contains("        |  C->P  |          - |          - |          - |"));
    assert!(table.contains("      0 |  P->C  |"));
    assert!(!table.contains("NaN") && !table.contains("E+308") && !table.contains('█'));
    assert!(table.contains("Total p50 - ms | p99 - ms | timeouts 0 | errors 0"));
    let json: serde_json::Value = serde_json::from_str(&render_json(
        "t",
        Duration::from_secs(5),
        &s,
        &[Kind::Method],
    ))
    .unwrap();
    assert_eq!(json["kinds"]["method"]["count"], 0);
    assert!(json["kinds"]["method"]["total"]["avg_ms"].is_null());
}

#[test]
fn averages_are_per_kind() {
    // The seed divided each kind's sum by both kinds' count; 1 method + 3 messages showed
    // the method's average at a quarter of its value.
    let mut s = IntervalStats::default();
    s.method.record(&sample(10.0, 10.0));
    for _ in 0..3 {
        s.message.record(&sample(1.0, 1.0));
    }
    assert_eq!(s.method.total.avg_ms(), Some(20.0));
    assert_eq!(s.message.total.avg_ms(), Some(2.0));
    let json: serde_json::Value =
        serde_json::from_str(&render_json("t", Duration::from_secs(60), &s, &Kind::ALL)).unwrap();
    assert_eq!(json["kinds"]["method"]["total"]["avg_ms"], 20.0);
    assert_eq!(json["kinds"]["message"]["c2p"]["avg_ms"], 1.0);
    assert_eq!(json["kinds"]["message"]["count"], 3);
}

fn spread(s: &mut KindStats, n: usize, from_ms: f64, step_ms: f64) {
    for i in 0..n {
        let t = from_ms + i as f64 * step_ms;
        s.record(&sample(t / 2.0, t / 2.0));
    }
}

#[test]
fn the_footer_adds_p90_p999_max_and_skipped_under_the_seed_line() {
    let mut s = IntervalStats::default();
    spread(&mut s.method, 1000, 1.0, 0.01); // 1.00 … 10.99 ms
    s.method.skipped = 7;
    s.method.timeouts = 2;
    let table = render_table("t", Duration::from_secs(5), &s, &[Kind::Method], true);
    let lines: Vec<&str> = table.lines().collect();
    let n = lines.len();
    assert!(lines[n - 2].starts_with("Total p50 5.99"), "{table}");
    assert!(
        lines[n - 2].ends_with("ms | timeouts 2 | errors 0"),
        "{table}"
    );
    assert!(lines[n - 1].starts_with("Total p90 9.99"), "{table}");
    assert!(lines[n - 1].contains("| p99.9 10.9"), "{table}");
    assert!(
        lines[n - 1].ends_with("| max 10.9900 ms | skipped 7"),
        "{table}"
    );
    // Everything above the footer is the seed's section, unchanged.
    let plain = render_table("t", Duration::from_secs(5), &s, &[Kind::Method], false);
    assert!(table.starts_with(&plain));
    assert_eq!(table.lines().count(), plain.lines().count() + 2);
}

#[test]
fn json_has_the_schedule_the_five_percentiles_and_the_verdict() {
    let mut s = IntervalStats::default();
    spread(&mut s.method, 200, 1.0, 0.01);
    spread(&mut s.message, 200, 2.0, 0.01);
    s.message.skipped = 3;
    let schedule = Schedule::Open {
        rate: 50.0,
        max_in_flight: 100,
    };
    let v = s.verdict(&Kind::ALL).unwrap();
    let json: serde_json::Value = serde_json::from_str(&render_summary_json(
        SummaryScope::Interval,
        "t",
        Duration::from_secs(5),
        &s,
        &Kind::ALL,
        schedule,
        Some(&v),
    ))
    .unwrap();
    assert_eq!(json["schedule"], "open");
    assert_eq!(json["rate"], 50.0);
    assert_eq!(json["max_in_flight"], 100);
    assert_eq!(json["scope"], "interval");
    for kind in ["method", "message"] {
        let k = &json["kinds"][kind];
        for f in [
            "total_p50_ms",
            "total_p90_ms",
            "total_p99_ms",
            "total_p999_ms",
            "total_max_ms",
        ] {
            assert!(k[f].as_f64().is_some(), "{kind} {f}: {json}");
        }
        assert!(k["total_p50_ms"].as_f64() <= k["total_p90_ms"].as_f64());
        assert!(k["total_p999_ms"].as_f64() <= k["total_max_ms"].as_f64());
    }
    assert_eq!(json["kinds"]["message"]["skipped"], 3);
    assert_eq!(json["verdict"]["faster"], "method");
    assert_eq!(json["verdict"]["n"]["method"], 200);
    assert_eq!(json["verdict"]["n"]["message"], 200);
    let d = json["verdict"]["median_diff_ms"].as_f64().unwrap();
    assert!((d + 1.0).abs() < 1e-9, "{json}");
    let ci = json["verdict"]["ci95_ms"].as_array().unwrap();
    assert!(
        ci[0].as_f64() <= Some(d) && ci[1].as_f64() < Some(0.0),
        "{json}"
    );
    // The closed loop, one kind: rate 0, and no verdict (null).
    let json: serde_json::Value = serde_json::from_str(&render_json(
        "t",
        Duration::from_secs(5),
        &s,
        &[Kind::Method],
    ))
    .unwrap();
    assert_eq!(
        (&json["schedule"], &json["rate"]),
        (&serde_json::json!("closed"), &serde_json::json!(0.0))
    );
    assert!(json["verdict"].is_null() && json["max_in_flight"].is_null());
}

#[test]
fn the_verdict_line_says_who_is_faster_or_that_it_cannot_tell() {
    let mut s = IntervalStats::default();
    spread(&mut s.method, 100, 2.0, 0.01);
    spread(&mut s.message, 100, 1.0, 0.01);
    let line = render_verdict(&s.verdict(&Kind::ALL).unwrap());
    assert!(
        line.starts_with(
            "Verdict: message faster by 1.0000 ms | median method - message +1.0000 ms | 95% CI [+"
        ),
        "{line}"
    );
    assert!(
        line.ends_with("] ms | n method 100, message 100\n"),
        "{line}"
    );
    let mut same = IntervalStats::default();
    spread(&mut same.method, 100, 1.0, 0.01);
    spread(&mut same.message, 100, 1.0, 0.01);
    let line = render_verdict(&same.verdict(&Kind::ALL).unwrap());
    assert!(
        line.starts_with(
            "Verdict: no significant difference | median method - message +0.0000 ms | 95% CI [-"
        ),
        "{line}"
    );
    let mut few = IntervalStats::default();
    spread(&mut few.method, 3, 1.0, 0.01);
    let line = render_verdict(&few.verdict(&Kind::ALL).unwrap());
    assert_eq!(
        line,
        "Verdict: too few samples (at least 20 of each kind) | n method 3, message 0\n"
    );
    assert!(few.verdict(&[Kind::Method]).is_none());
}

#[test]
fn the_whole_run_merges_intervals() {
    let mut run = IntervalStats::default();
    let mut a = IntervalStats::default();
    spread(&mut a.method, 100, 1.0, 0.01);
    a.method.timeouts = 1;
    let mut b = IntervalStats::default();
    spread(&mut b.method, 100, 3.0, 0.01);
    b.method.skipped = 4;
    run.absorb(&a.take());
    run.absorb(&b.take());
    let m = &run.method;
    assert_eq!((m.count(), m.timeouts, m.skipped), (200, 1, 4));
    assert_eq!((m.total.min_ms, m.total.max_ms), (1.0, 3.99));
    assert_eq!(m.sample().len(), 200);
    let p50 = m.total_quantile_ms(0.5).unwrap();
    assert!((1.98..=2.0).contains(&p50), "{p50}");
    let table = render_run_table(
        "t",
        Duration::from_secs(20),
        &run,
        &[Kind::Method],
        Schedule::Open {
            rate: 50.0,
            max_in_flight: 100,
        },
        None,
    );
    assert_eq!(
            table.lines().next(),
            Some("t - whole run: 200 items in 20 seconds, open loop at 50/s per kind, at most 100 in flight")
        );
    assert!(table.contains("Method   Total p50 1.99"), "{table}");
    assert!(
        table.contains("| count 200 | timeouts 1 | errors 0 | skipped 4\n"),
        "{table}"
    );
}
