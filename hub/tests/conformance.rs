//! The hub's /metrics against edgeHub's, in the spirit of edgeHub's MetricsValidator test
//! module: after traffic of every kind (routed messages, a message no route takes, one that
//! expires, one sent again after no PUBACK, a direct method, a refused CONNECT, a twin read and
//! a reported-properties update), every metric of docs/protocol.md's table is there with
//! edgeHub's label names in edgeHub's order and edgeHub's label values, every series carries the
//! constant labels, and the counters agree: received = sent + dropped + queued.

use bytes::Bytes;
use edge::session::Subscriptions;
use edge::Incoming;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::time::Duration;

mod exposition;
mod support;
use exposition::{series, Series};
use support::{send, TestHub};

/// a → b (taken at once), a → c (c never connects: expires), a → d (d holds its first
/// delivery past the ack timeout: sent again); a's output `nowhere` has no route.
const MANIFEST: &str = r#"{"modulesContent":{
  "$edgeAgent":{"properties.desired":{"modules":{"a":{},"b":{},"c":{},"d":{},"t":{}}}},
  "$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{
     "toB":{"route":"FROM /messages/modules/a/outputs/toB INTO BrokeredEndpoint(\"/modules/b/inputs/in\")","priority":1},
     "toC":{"route":"FROM /messages/modules/a/outputs/toC INTO BrokeredEndpoint(\"/modules/c/inputs/in\")","timeToLiveSecs":1},
     "toD":"FROM /messages/modules/a/outputs/toD INTO BrokeredEndpoint(\"/modules/d/inputs/in\")"}}}}}"#;

const CONSTANT: [&str; 3] = ["iothub", "edge_device", "instance_number"];

/// Every edgeHub metric the hub has: its label names after the constant ones, in edgeHub's
/// order (histograms: their `_count` series).
const TABLE: &[(&str, &[&str])] = &[
    (
        "edgehub_messages_received_total",
        &["id", "route_output", "ms_telemetry"],
    ),
    (
        "edgehub_messages_sent_total",
        &[
            "from",
            "to",
            "from_route_output",
            "to_route_input",
            "priority",
            "ms_telemetry",
        ],
    ),
    (
        "edgehub_message_send_duration_seconds_count",
        &["from", "to", "from_route_output", "to_route_input"],
    ),
    (
        "edgehub_message_process_duration_seconds_count",
        &["from", "to", "priority", "ms_telemetry"],
    ),
    ("edgehub_message_size_bytes_count", &["id"]),
    (
        "edgehub_messages_dropped_total",
        &["reason", "from", "from_route_output", "ms_telemetry"],
    ),
    (
        "edgehub_queue_length",
        &["endpoint", "priority", "ms_telemetry"],
    ),
    (
        "edgehub_operation_retry_total",
        &["id", "operation", "ms_telemetry"],
    ),
    (
        "edgehub_direct_methods_total",
        &["from", "to", "ms_telemetry"],
    ),
    (
        "edgehub_direct_method_duration_seconds_count",
        &["from", "to"],
    ),
    ("edgehub_gettwin_total", &["source", "id", "ms_telemetry"]),
    ("edgehub_gettwin_duration_seconds_count", &["source", "id"]),
    (
        "edgehub_reported_properties_total",
        &["target", "id", "ms_telemetry"],
    ),
    (
        "edgehub_reported_properties_update_duration_seconds_count",
        &["target", "id"],
    ),
    ("edgehub_client_connect_success_total", &["id"]),
    (
        "edgehub_client_connect_failed_total",
        &["id", "reason", "ms_telemetry"],
    ),
    ("edgehub_client_disconnect_total", &["id"]),
    ("edgehub_connected_clients", &[]),
];

const A: &str = "local-edge-device/a";

/// Scrapes until `ready` holds for the series; panics with the last scrape after 10 s.
async fn scrape_until(hub: &TestHub, what: &str, ready: impl Fn(&[Series]) -> bool) -> Vec<Series> {
    let mut text = String::new();
    for _ in 0..400 {
        text = hub.scrape().await;
        let all = series(&text);
        if ready(&all) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never {what}:\n{text}");
}

fn sum(all: &[Series], name: &str, labels: &[(&str, &str)]) -> f64 {
    all.iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

/// A client on the plain MQTT port speaking the twin topics, as the SDKs do.
async fn twin_traffic(hub: &TestHub) {
    let addr = hub.running.plain_mqtt.unwrap();
    let mut options = MqttOptions::new("local-edge-device/t", addr.ip().to_string(), addr.port());
    let username = edge::topic::username(
        "local-hub.azure-devices.net",
        "local-edge-device",
        "t",
        "conformance",
    );
    let password = support::token(&hub.key("t"), "t", edge::sas::now_unix() + 3600);
    options.set_credentials(username, password);
    let (twin, mut events) = AsyncClient::new(options, 10);
    twin.subscribe("$iothub/twin/res/#", QoS::AtMostOnce)
        .await
        .unwrap();
    twin.publish(
        "$iothub/twin/GET/?$rid=1",
        QoS::AtMostOnce,
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    twin.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=2",
        QoS::AtMostOnce,
        false,
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    let mut answered = Vec::new();
    while answered.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => answered.push(p.topic),
            Ok(Ok(_)) => {}
            other => panic!("twin client: {other:?} after {answered:?}"),
        }
    }
    assert!(
        answered[0].starts_with("$iothub/twin/res/200/?$rid=1"),
        "{answered:?}"
    );
    assert!(
        answered[1].starts_with("$iothub/twin/res/204/?$rid=2"),
        "{answered:?}"
    );
    twin.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while events.poll().await.is_ok() {}
    })
    .await;
}

/// A CONNECT with a token signed by another key: refused.
async fn refused_connect(hub: &TestHub) {
    let addr = hub.running.plain_mqtt.unwrap();
    let mut options = MqttOptions::new("local-edge-device/b", addr.ip().to_string(), addr.port());
    let username = edge::topic::username(
        "local-hub.azure-devices.net",
        "local-edge-device",
        "b",
        "conformance",
    );
    let password = support::token(b"not b's key", "b", edge::sas::now_unix() + 3600);
    options.set_credentials(username, password);
    let (_c, mut events) = AsyncClient::new(options, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Err(_)) => return,
            Ok(Ok(Event::Incoming(Packet::ConnAck(c)))) => panic!("accepted: {c:?}"),
            Ok(Ok(_)) => {}
            Err(_) => panic!("no answer to the CONNECT"),
        }
    }
}

/// Traffic of every kind; returns once every message has left the queues.
async fn traffic(hub: &TestHub) {
    let (a, _a_rx) = hub.client("a", Subscriptions::NONE).await;
    let (b, mut b_rx) = hub
        .client(
            "b",
            Subscriptions {
                inputs: true,
                methods: true,
            },
        )
        .await;
    let (_d, mut d_rx) = hub.client("d", Subscriptions::INPUTS).await;
    hub.wait_for_session("b", "subscribed", |s| s.takes_inputs() && s.takes_methods())
        .await;
    hub.wait_for_session("d", "subscribed", |s| s.takes_inputs())
        .await;
    for i in 0..3 {
        send(&a, "toB", &format!("b{i}")).await;
    }
    send(&a, "nowhere", "lost").await;
    send(&a, "toC", "expires").await;
    send(&a, "toD", "resent").await;
    // d holds its first delivery until the hub sends it again.
    let first = match tokio::time::timeout(Duration::from_secs(10), d_rx.recv()).await {
        Ok(Some(Incoming::Input { ack, .. })) => ack,
        other => panic!("d: {other:?}"),
    };
    match tokio::time::timeout(Duration::from_secs(10), d_rx.recv()).await {
        Ok(Some(Incoming::Input { message, .. })) => assert_eq!(&message.body[..], b"resent"),
        other => panic!("d: no resend: {other:?}"),
    }
    drop(first);
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(10), b_rx.recv()).await {
            Ok(Some(Incoming::Input { .. })) => {}
            other => panic!("b: {other:?}"),
        }
    }
    let responder = tokio::spawn(async move {
        while let Some(incoming) = b_rx.recv().await {
            if let Incoming::Method { request, .. } = incoming {
                let _ = b.respond(&request, 200, Bytes::from_static(b"{}")).await;
            }
        }
    });
    let (status, body) = support::call_method(hub, "a", "b", "Echo", 30).await;
    assert_eq!(status, 200, "{body}");
    responder.abort();
    refused_connect(hub).await;
    twin_traffic(hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_edgehubs_with_its_labels_and_the_counters_agree() {
    let hub = support::start(
        "conformance",
        MANIFEST,
        &["--plain-mqtt-port", "0", "--ack-timeout", "1s"],
    )
    .await
    .unwrap();
    traffic(&hub).await;
    let all = scrape_until(
        &hub,
        "quiet (c's message expired, every other one sent)",
        |all| {
            sum(
                all,
                "edgehub_messages_dropped_total",
                &[("reason", "ttl_expiry")],
            ) == 1.0
                && sum(all, "edgehub_messages_sent_total", &[]) == 4.0
                && sum(all, "edgehub_queue_length", &[]) == 0.0
        },
    )
    .await;

    // Every edgehub_ series: the constant labels first, with one instance_number.
    let mut instances = BTreeMap::new();
    for s in all.iter().filter(|s| s.name.starts_with("edgehub_")) {
        let names: Vec<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names.get(..3), Some(&CONSTANT[..]), "{s:?}");
        assert_eq!(
            s.label("iothub"),
            Some("local-hub.azure-devices.net"),
            "{s:?}"
        );
        assert_eq!(s.label("edge_device"), Some("local-edge-device"), "{s:?}");
        *instances
            .entry(s.label("instance_number").unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(instances.len(), 1, "{instances:?}");
    // Every metric of the table, with exactly edgeHub's label names.
    for (name, labels) in TABLE {
        let found: Vec<&Series> = all.iter().filter(|s| s.name == *name).collect();
        assert!(!found.is_empty(), "{name} missing");
        for s in found {
            let own: Vec<&str> = s.labels.iter().skip(3).map(|(k, _)| k.as_str()).collect();
            assert_eq!(&own[..], *labels, "{s:?}");
            if labels.contains(&"ms_telemetry") {
                assert_eq!(s.label("ms_telemetry"), Some("True"), "{s:?}");
            }
        }
    }
    values(&all);
    // Counters agree with each other.
    let received = sum(&all, "edgehub_messages_received_total", &[]);
    let sent = sum(&all, "edgehub_messages_sent_total", &[]);
    let dropped = sum(&all, "edgehub_messages_dropped_total", &[]);
    let queued = sum(&all, "edgehub_queue_length", &[]);
    assert_eq!((received, sent, dropped, queued), (6.0, 4.0, 2.0, 0.0));
    assert_eq!(received, sent + dropped + queued);
    assert_eq!(
        sum(&all, "edgehub_message_size_bytes_count", &[("id", A)]),
        received
    );
    assert_eq!(
        sum(&all, "edgehub_message_send_duration_seconds_count", &[]),
        sent
    );
    hub.running.stop().await;
}

/// edgeHub's label values for this traffic.
fn values(all: &[Series]) {
    let has = |name: &str, labels: &[(&str, &str)]| sum(all, name, labels) > 0.0;
    for (name, labels) in [
        (
            "edgehub_messages_received_total",
            vec![("id", A), ("route_output", "toB")],
        ),
        (
            "edgehub_messages_sent_total",
            vec![
                ("from", A),
                ("to", "local-edge-device/b"),
                ("from_route_output", "toB"),
                ("to_route_input", "in"),
                ("priority", "1"),
            ],
        ),
        (
            "edgehub_messages_sent_total",
            vec![("to", "local-edge-device/d"), ("priority", "2000000000")],
        ),
        (
            "edgehub_message_process_duration_seconds_count",
            vec![
                ("from", A),
                ("to", "local-edge-device/b"),
                ("priority", "1"),
            ],
        ),
        (
            "edgehub_messages_dropped_total",
            vec![
                ("reason", "no_route"),
                ("from", A),
                ("from_route_output", "nowhere"),
            ],
        ),
        (
            "edgehub_messages_dropped_total",
            vec![
                ("reason", "ttl_expiry"),
                ("from", A),
                ("from_route_output", "toC"),
            ],
        ),
        (
            "edgehub_operation_retry_total",
            vec![
                ("id", "local-edge-device/d/in"),
                ("operation", " SendMessageToModule"),
            ],
        ),
        (
            "edgehub_direct_methods_total",
            vec![("from", A), ("to", "local-edge-device/b")],
        ),
        (
            "edgehub_direct_method_duration_seconds_count",
            vec![("from", "local-edge-device"), ("to", "local-edge-device/b")],
        ),
        (
            "edgehub_gettwin_total",
            vec![("source", "edge_hub"), ("id", "local-edge-device/t")],
        ),
        (
            "edgehub_reported_properties_total",
            vec![("target", "edge_hub"), ("id", "local-edge-device/t")],
        ),
        (
            "edgehub_client_connect_failed_total",
            vec![
                ("id", "local-edge-device/b"),
                ("reason", "not_authenticated"),
            ],
        ),
        ("edgehub_client_connect_success_total", vec![("id", A)]),
        ("edgehub_connected_clients", vec![]),
    ] {
        assert!(has(name, &labels), "{name}{labels:?}");
    }
    let endpoints = [
        ("local-edge-device/b/in", "1"),
        ("local-edge-device/c/in", "2000000000"),
        ("local-edge-device/d/in", "2000000000"),
    ];
    for (endpoint, priority) in endpoints {
        let found = all.iter().any(|s| {
            s.name == "edgehub_queue_length"
                && s.label("endpoint") == Some(endpoint)
                && s.label("priority") == Some(priority)
        });
        assert!(
            found,
            "edgehub_queue_length{{endpoint={endpoint},priority={priority}}}"
        );
    }
    // Upstream metrics have no meaning without an IoT Hub behind the hub.
    assert!(!all.iter().any(|s| s.name.starts_with("edgehub_offline")));
}
