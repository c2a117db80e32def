//! The router with its per-connection caches against what routing computed before them: the
//! delivered topic is the bag decoded, stripped of `$.on`, given `$.cdid`/`$.cmid`, re-encoded;
//! every message is counted under the same labels, also on outputs past the cache's size.

use super::routing::CACHED_OUTPUTS;
use super::*;
use crate::metrics::HubMetrics;
use edge::bag::PropertyBag;
use prometheus_client::registry::Registry;
use rumqttc::mqttbytes::v4::Packet;
use tokio::sync::mpsc;

const DEVICE: &str = "dev";

fn hub() -> (Arc<Hub>, Registry) {
    let mut registry = Registry::default();
    let metrics = HubMetrics::register(&mut registry);
    let routes = RouteTable::new(vec![
        RouteTable::parse(
            "toB",
            "FROM /messages/modules/a/* WHERE color <> 'red' INTO BrokeredEndpoint(\"/modules/b/inputs/in\")",
        )
        .unwrap(),
        RouteTable::parse("up", "FROM /messages/modules/a/outputs/up INTO $upstream").unwrap(),
    ]);
    let settings = Settings {
        device_id: DEVICE.into(),
        iothub_hostname: "h".into(),
        gateway_hostname: "g".into(),
        ack_timeout: Duration::from_secs(5),
        queue_size: 1000,
        default_ttl: Duration::from_secs(60),
        max_message_size: 256 * 1024,
        max_connections: 10,
        max_delivery_attempts: 3,
        faults: Vec::new(),
        method_subscribe_delay: Duration::ZERO,
    };
    let hub = Hub::new(settings, Identities::default(), routes, metrics);
    (hub, registry)
}

fn session(id: u64, module: &str) -> (Arc<Session>, mpsc::Receiver<Packet>) {
    let (tx, rx) = mpsc::channel(16);
    let name: Arc<str> = format!("{DEVICE}/{module}").into();
    (Arc::new(Session::new(id, module.into(), name, tx)), rx)
}

/// The topic routing built before the caches: through `PropertyBag`.
fn expected_topic(encoded: &str) -> String {
    let mut bag = PropertyBag::decode(encoded).unwrap();
    bag.remove(OUTPUT_NAME);
    bag.insert(CONNECTION_DEVICE_ID, DEVICE);
    bag.insert(CONNECTION_MODULE_ID, "a");
    edge::topic::input(DEVICE, "b", "in", &bag)
}

fn exposition(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[tokio::test]
async fn routes_deliver_and_count_as_before_on_cached_and_uncached_outputs() {
    let (hub, registry) = hub();
    let (a, _a_rx) = session(1, "a");
    let (b, mut b_rx) = session(2, "b");
    hub.attach(a.clone());
    hub.attach(b.clone());
    b.set_takes_inputs(true);

    let outputs = CACHED_OUTPUTS + 6;
    let mut bags = Vec::new();
    for round in 0..2 {
        for o in 0..outputs {
            // Escaped keys and values, a spoofed sender identity, a repeated key.
            bags.push(format!(
                "%24.on=o{o}&%24.cdid=spoofed&%24.cid=2019-06-19T19%3A32%3A16Z&k%20{round}=v%26%C3%A9&k%20{round}=last&color=blue"
            ));
        }
        bags.push("%24.cid=none&color=blue".to_owned());
    }
    for bag in &bags {
        assert_eq!(
            hub.route(&a, bag, Bytes::from_static(b"body")).unwrap(),
            1,
            "{bag}"
        );
        let Some(Packet::Publish(p)) = b_rx.recv().await else {
            panic!("no delivery for {bag}")
        };
        assert_eq!(p.topic, expected_topic(bag));
        assert_eq!(&p.payload[..], b"body");
        b.acknowledged(p.pkid);
    }
    // Not taken: WHERE is false (no_route), and $upstream.
    assert_eq!(
        hub.route(&a, "%24.on=o1&color=red", Bytes::new()).unwrap(),
        0
    );
    assert_eq!(hub.route(&a, "%24.on=up", Bytes::new()).unwrap(), 0);
    assert!(matches!(
        hub.route(&a, "%FF=1", Bytes::new()),
        Err(RouteError::Bag(_))
    ));
    {
        let routing = a.routing.lock().unwrap();
        assert_eq!(routing.outputs.len(), CACHED_OUTPUTS);
        assert!(routing.pending.is_empty());
    }

    // The last PUBACK is counted once the delivery task has seen it.
    let sent = |text: &str, output: &str| {
        let labels = format!("from=\"{DEVICE}/a\",to=\"{DEVICE}/b\",from_route_output=\"{output}\",to_route_input=\"in\",priority=\"2000000000\",ms_telemetry=\"True\"");
        text.lines()
            .find(|l| l.starts_with("edgehub_messages_sent_total{") && l.contains(&labels))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    let last = format!("o{}", outputs - 1);
    for _ in 0..100 {
        if sent(&exposition(&registry), "").as_deref() == Some("2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = exposition(&registry);
    for output in ["o0", "o1", last.as_str(), ""] {
        assert_eq!(
            sent(&text, output).as_deref(),
            Some("2"),
            "{output}\n{text}"
        );
    }
    for line in [
        format!("edgehub_messages_received_total{{id=\"{DEVICE}/a\",route_output=\"o0\",ms_telemetry=\"True\"}} 2"),
        format!("edgehub_messages_received_total{{id=\"{DEVICE}/a\",route_output=\"o1\",ms_telemetry=\"True\"}} 3"),
        format!("edgehub_messages_received_total{{id=\"{DEVICE}/a\",route_output=\"{last}\",ms_telemetry=\"True\"}} 2"),
        format!("edgehub_messages_received_total{{id=\"{DEVICE}/a\",route_output=\"\",ms_telemetry=\"True\"}} 2"),
        format!("edgehub_messages_dropped_total{{reason=\"no_route\",from=\"{DEVICE}/a\",from_route_output=\"o1\",ms_telemetry=\"True\"}} 1"),
        format!("edgehub_messages_dropped_total{{reason=\"upstream\",from=\"{DEVICE}/a\",from_route_output=\"up\",ms_telemetry=\"True\"}} 1"),
        format!("edgehub_message_size_bytes_count{{id=\"{DEVICE}/a\"}} {}", bags.len() + 2),
        format!("edgehub_queue_length{{endpoint=\"{DEVICE}/b/in\",priority=\"2000000000\",ms_telemetry=\"True\"}} 0"),
    ] {
        assert!(text.contains(&line), "{line}\n{text}");
    }
    hub.shut_down().await;
}
