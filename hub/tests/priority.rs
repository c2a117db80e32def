//! Route priorities as edgeHub obeys them: one lane per priority per module, the highest served
//! first, so a backlog of low-priority messages cannot hold back a high-priority one; a route
//! without a priority has edgeHub's default, 2000000000, the lowest. Ordering only, no clocks:
//! messages are queued while the target is offline (or holds its Ack), and what arrives first
//! is checked.

use edge::session::Subscriptions;
use edge::Incoming;
use std::time::Duration;
use tokio::sync::mpsc;

mod support;
use support::{send, TestHub};

/// `a` sends to `b` on four routes: `high` (priority 0), `nine` (priority 9, the lowest
/// explicit one), `low` (a string route: the default priority) and `brief` (priority 9, a
/// time-to-live of 1 s).
const MANIFEST: &str = r#"{"modulesContent":{
  "$edgeAgent":{"properties.desired":{"modules":{"a":{},"b":{}}}},
  "$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{
     "low":"FROM /messages/modules/a/outputs/low INTO BrokeredEndpoint(\"/modules/b/inputs/low\")",
     "nine":{"route":"FROM /messages/modules/a/outputs/nine INTO BrokeredEndpoint(\"/modules/b/inputs/nine\")","priority":9},
     "high":{"route":"FROM /messages/modules/a/outputs/high INTO BrokeredEndpoint(\"/modules/b/inputs/high\")","priority":0},
     "brief":{"route":"FROM /messages/modules/a/outputs/brief INTO BrokeredEndpoint(\"/modules/b/inputs/brief\")","priority":9,"timeToLiveSecs":1}}}}}}"#;

const BACKLOG: usize = 50;

/// The value of `edgehub_queue_length` for b's `input` lane.
fn queued(text: &str, input: &str) -> Option<f64> {
    let endpoint = format!("endpoint=\"local-edge-device/b/{input}\"");
    test_support::metric_sum(text, "edgehub_queue_length", &[&endpoint])
}

/// Waits until the hub shows `n` messages waiting on b's `input` (they were routed).
async fn wait_queued(hub: &TestHub, input: &str, n: f64) {
    let mut text = String::new();
    for _ in 0..400 {
        text = hub.scrape().await;
        if queued(&text, input) == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never {n} queued for b/{input}:\n{text}");
}

/// The next input b receives: its input name, its body, and the Ack that releases the next.
async fn next(rx: &mut mpsc::Receiver<Incoming>) -> (String, String, edge::session::Ack) {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Incoming::Input {
            input,
            message,
            ack,
        })) => (
            input,
            String::from_utf8_lossy(&message.body).into_owned(),
            ack,
        ),
        other => panic!("expected an input message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_low_priority_messages_cannot_delay_a_high_priority_one() {
    let hub = support::start("priority-flood", MANIFEST, &[])
        .await
        .unwrap();
    let (a, _a_rx) = hub.client("a", Subscriptions::NONE).await;
    // b is offline: a backlog of low-priority messages, then one high-priority message.
    for i in 0..BACKLOG {
        send(&a, "low", &format!("low{i}")).await;
    }
    send(&a, "high", "high0").await;
    wait_queued(&hub, "low", BACKLOG as f64).await;
    wait_queued(&hub, "high", 1.0).await;

    let (_b, mut b_rx) = hub.client("b", Subscriptions::INPUTS).await;
    let (input, body, ack) = next(&mut b_rx).await;
    assert_eq!(
        (input.as_str(), body.as_str()),
        ("high", "high0"),
        "the high-priority message waited behind the backlog"
    );
    drop(ack);
    let (input, body, held) = next(&mut b_rx).await;
    assert_eq!((input.as_str(), body.as_str()), ("low", "low0"));

    // While b holds low0's Ack, another high-priority message joins the 49 low ones still
    // waiting: it is the very next delivery.
    send(&a, "high", "high1").await;
    wait_queued(&hub, "high", 1.0).await;
    drop(held);
    let (input, body, ack) = next(&mut b_rx).await;
    assert_eq!(
        (input.as_str(), body.as_str()),
        ("high", "high1"),
        "the high-priority message waited behind the backlog"
    );
    drop(ack);
    // Then the backlog, in the order it was sent.
    for i in 1..BACKLOG {
        let (input, body, _ack) = next(&mut b_rx).await;
        assert_eq!((input.as_str(), body), ("low", format!("low{i}")));
    }
    wait_queued(&hub, "low", 0.0).await;
    let text = hub.scrape().await;
    assert!(
        text.contains(r#"endpoint="local-edge-device/b/high",priority="0",ms_telemetry="True"} 0"#),
        "{text}"
    );
    hub.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_a_priority_has_the_lowest() {
    let hub = support::start("priority-default", MANIFEST, &[])
        .await
        .unwrap();
    let (a, _a_rx) = hub.client("a", Subscriptions::NONE).await;
    // Queued first on the route without a priority, then on priority 9, the lowest one a
    // route can name: 9 still goes first.
    send(&a, "low", "default").await;
    send(&a, "nine", "nine").await;
    wait_queued(&hub, "low", 1.0).await;
    wait_queued(&hub, "nine", 1.0).await;
    let (_b, mut b_rx) = hub.client("b", Subscriptions::INPUTS).await;
    let (input, body, ack) = next(&mut b_rx).await;
    assert_eq!((input.as_str(), body.as_str()), ("nine", "nine"));
    drop(ack);
    let (input, body, _ack) = next(&mut b_rx).await;
    assert_eq!((input.as_str(), body.as_str()), ("low", "default"));
    // Counted under edgeHub's default priority.
    let text = hub.scrape().await;
    for labels in [
        r#"endpoint="local-edge-device/b/low",priority="2000000000",ms_telemetry="True"}"#,
        r#"endpoint="local-edge-device/b/nine",priority="9",ms_telemetry="True"}"#,
    ] {
        assert!(text.contains(labels), "{labels}\n{text}");
    }
    hub.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_expires_behind_a_higher_priority_one_while_its_module_is_offline() {
    let hub = support::start("priority-expiry", MANIFEST, &[])
        .await
        .unwrap();
    let (a, _a_rx) = hub.client("a", Subscriptions::NONE).await;
    send(&a, "high", "stays").await;
    send(&a, "brief", "expires").await;
    // b never connects: the brief message expires though the high lane's head does not.
    let mut text = String::new();
    for _ in 0..400 {
        text = hub.scrape().await;
        let dropped = text.lines().any(|l| {
            l.starts_with("edgehub_messages_dropped_total{")
                && l.contains(r#"reason="ttl_expiry""#)
                && l.contains(r#"from_route_output="brief""#)
                && l.ends_with(" 1")
        });
        if dropped && queued(&text, "brief") == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(queued(&text, "brief"), Some(0.0), "{text}");
    assert_eq!(queued(&text, "high"), Some(1.0), "{text}");
    let (_b, mut b_rx) = hub.client("b", Subscriptions::INPUTS).await;
    let (input, body, _ack) = next(&mut b_rx).await;
    assert_eq!((input.as_str(), body.as_str()), ("high", "stays"));
    hub.running.stop().await;
}
