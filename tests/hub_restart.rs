//! Issue 9's "done when": the hub killed with SIGKILL while both loops run, restarted on the same
//! state directory and ports. Messages queued for the producer, which is stopped across the
//! restart, are in the hub's store and delivered by the new hub; both loops measure again within
//! 10 s of the restart; the outage is counted by the consumer.

use std::time::{Duration, Instant};
use test_support::*;

/// Failures of `kind` the consumer counted as `transport` (no connection to the hub) in `s`.
fn transport_failures(s: &serde_json::Value, kind: &str) -> u64 {
    s["kinds"][kind]["failures"]["transport"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_killed_hub_restarts_and_delivers_what_was_queued_for_an_offline_producer() {
    let mut hub = Hub::start("hub-restart", &seed_manifest(), 0, 0, &[]);
    let (mqtt, https, state) = (hub.mqtt, hub.https, hub.state.clone());
    let mut producer = module("producer", &hub.module_env("producer"));
    let mut env = hub.module_env("consumer");
    env.extend([
        ("SUMMARY_INTERVAL".to_owned(), "1s".to_owned()),
        ("SUMMARY_FORMAT".into(), "json".into()),
        ("EXCHANGE_TIMEOUT".into(), "1s".into()),
    ]);
    let mut consumer = module("consumer", &env);
    wait_for_summary(&mut consumer, Duration::from_secs(30), |s| {
        count(s, "method", "count") > 0 && count(s, "message", "count") > 0
    });

    // The producer goes offline: the consumer's requests wait in the hub's queue for it.
    assert!(producer.terminate().success(), "{}", producer.output());
    let queue = [r#"/producer/GetTimeMessage""#];
    let deadline = Instant::now() + Duration::from_secs(30);
    let queued = loop {
        let q = metric(&hub.metrics_text(), "edgehub_queue_length", &queue);
        if q >= 3.0 {
            break q as u64;
        }
        assert!(
            Instant::now() < deadline,
            "nothing queued for the stopped producer:\n{}",
            hub.proc.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Killed: no shutdown, no flush. Down long enough for the consumer's closed loop (one try a
    // second while it fails) to find no hub; restarted on the same state and ports.
    let killed_at = summaries(&consumer).len();
    hub.proc.signal("KILL");
    let status = hub.proc.wait(Duration::from_secs(10));
    assert!(!status.success(), "the hub was killed: {status}");
    std::thread::sleep(Duration::from_millis(2500));
    let mut hub = Hub::start_in(state, &seed_manifest(), mqtt, https, &[]);
    let restarted = Instant::now();

    // The new hub queued again what the store held for the producer (at least what was seen
    // queued before the kill: each message is in the store before it is queued).
    let line = hub.proc.wait_for_line(Duration::from_secs(5), |l| {
        l.contains("queued again for producer/inputs/GetTimeMessage")
    });
    let restored: u64 = line
        .split("store: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(
        restored >= queued,
        "{queued} were queued before the kill, {restored} restored: {line}"
    );

    let _producer = module("producer", &hub.module_env("producer"));
    // Both loops measure again within 10 s of the restart.
    loop {
        let resumed = summaries(&consumer)
            .iter()
            .skip(killed_at)
            .any(|s| count(s, "method", "count") > 0 && count(s, "message", "count") > 0);
        if resumed {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "the loops did not resume within 10 s of the restart:\n{}\n--- hub:\n{}",
            consumer.output(),
            hub.proc.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "loops resumed {:?} after the restart; {restored} queued message(s) restored",
        restarted.elapsed()
    );

    // The outage is counted: exchanges that found no hub are transport failures.
    let after_kill = summaries(&consumer);
    let outage: u64 = after_kill
        .iter()
        .skip(killed_at)
        .map(|s| transport_failures(s, "method") + transport_failures(s, "message"))
        .sum();
    assert!(
        outage > 0,
        "the outage was not counted:\n{}",
        consumer.output()
    );

    // The restored messages went first (one queue, in order): once the new hub has sent
    // `restored` messages to the producer, every one of them was delivered and acknowledged.
    let device = hub.device();
    let from = format!(r#"from="{device}/consumer""#);
    let to = format!(r#"to="{device}/producer""#);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = hub.metrics_text();
        let sent = metric(
            &text,
            "edgehub_messages_sent_total",
            &[&from, &to, r#"to_route_input="GetTimeMessage""#],
        );
        if sent >= restored as f64 {
            assert_eq!(
                metric(
                    &text,
                    "edgehub_messages_dropped_total",
                    &[r#"reason="ttl_expiry""#]
                ),
                0.0,
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sent} of the {restored} restored messages delivered:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(consumer.terminate().success(), "{}", consumer.output());
    assert!(hub.proc.terminate().success(), "{}", hub.proc.output());
}
