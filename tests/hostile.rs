//! Hostile clients against a real hub process (issue 8): messages the hub cannot deliver,
//! floods of unauthenticated connections, slow HTTPS clients, a module that never acknowledges,
//! and every refusal logged once, counted once, and never with a secret. After each case an
//! honest module pair — our own module client — still completes a message and a method exchange.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use bytes::{Bytes, BytesMut};
use edge::session::Subscriptions;
use edge::{Incoming, Message, MethodClient, ModuleClient, PropertyBag};
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::{metric, Hub};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const MANIFEST: &str = r#"{"modulesContent":{
  "$edgeAgent":{"properties.desired":{"modules":{"attacker":{},"sender":{},"receiver":{},"deaf":{}}}},
  "$edgeHub":{"properties.desired":{"routes":{
     "attack":"FROM /messages/modules/attacker/outputs/* INTO BrokeredEndpoint(\"/modules/receiver/inputs/in\")",
     "honest":"FROM /messages/modules/sender/outputs/out INTO BrokeredEndpoint(\"/modules/receiver/inputs/in\")",
     "toDeaf":"FROM /messages/modules/sender/outputs/deaf INTO BrokeredEndpoint(\"/modules/deaf/inputs/in\")"}}}}}"#;

fn start(name: &str, extra: &[&str]) -> Hub {
    let dir = test_support::tempdir(&format!("hostile-{name}-manifest"));
    let manifest = dir.join("deployment.json");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let mut args = vec![
        "--plain-mqtt-port",
        "0",
        "--ack-timeout",
        "1s",
        "--max-delivery-attempts",
        "2",
        "--http-header-timeout",
        "2s",
        "--http-body-timeout",
        "2s",
        "--auth-timeout",
        "3s",
    ];
    args.extend_from_slice(extra);
    Hub::start(name, Path::new(&manifest), 0, 0, &args)
}

/// sender → receiver by message and by direct method, with our real module client.
struct HonestPair {
    sender: ModuleClient,
    caller: MethodClient,
    inputs: mpsc::Receiver<Message>,
    device: String,
    _receiver: ModuleClient,
}

impl HonestPair {
    async fn connect(hub: &Hub) -> HonestPair {
        let (receiver, mut rx) =
            ModuleClient::connect(hub.identity("receiver"), Subscriptions::ALL)
                .await
                .unwrap();
        let (tx, inputs) = mpsc::channel(1024);
        let answering = receiver.clone();
        tokio::spawn(async move {
            while let Some(incoming) = rx.recv().await {
                match incoming {
                    Incoming::Input { message, .. } => {
                        let _ = tx.send(message).await;
                    }
                    Incoming::Method { request: req, .. } => {
                        let _ = answering.respond(&req, 200, req.payload.clone()).await;
                    }
                }
            }
        });
        let (sender, _) = ModuleClient::connect(hub.identity("sender"), Subscriptions::NONE)
            .await
            .unwrap();
        let caller = MethodClient::new(hub.identity("sender")).await.unwrap();
        let mut pair = HonestPair {
            sender,
            caller,
            inputs,
            device: hub.device(),
            _receiver: receiver,
        };
        // The receiver subscribes after CONNACK: retry until both legs answer once.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if pair
                .try_exchange("warm-up", Duration::from_secs(1))
                .await
                .is_ok()
            {
                return pair;
            }
            assert!(
                Instant::now() < deadline,
                "the honest pair never completed an exchange"
            );
        }
    }

    async fn try_exchange(&mut self, tag: &str, within: Duration) -> Result<(), String> {
        let payload = serde_json::json!({ "tag": tag });
        let method = self.caller.invoke(
            &self.device,
            "receiver",
            "Ping",
            &payload,
            Duration::from_secs(5),
        );
        match tokio::time::timeout(within, method).await {
            Ok(Ok(r)) if r.status == 200 && r.json() == payload => {}
            other => return Err(format!("method leg: {other:?}")),
        }
        self.sender
            .send_output(
                "out",
                Message::new(Bytes::from(tag.to_owned())).with_correlation_id(tag),
            )
            .await
            .map_err(|e| format!("message leg send: {e}"))?;
        let until = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(until.into(), self.inputs.recv()).await {
                Ok(Some(m)) if m.correlation_id() == Some(tag) => return Ok(()),
                Ok(Some(_)) => continue, // an earlier case's message
                other => return Err(format!("message leg: {other:?}")),
            }
        }
    }

    /// Both legs complete within `within`, or the test fails naming the leg.
    async fn exchange(&mut self, tag: &str, within: Duration) {
        let started = Instant::now();
        if let Err(e) = self.try_exchange(tag, within).await {
            panic!("honest pair failed after {tag}: {e}");
        }
        eprintln!("honest exchange after {tag}: {:?}", started.elapsed());
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn tls(hub: &Hub, port: u16, alpn: &[&[u8]]) -> Box<dyn Stream> {
    let ca = std::fs::read_to_string(&hub.ca).unwrap();
    let config = edge::tls::client_config(&ca, alpn).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    Box::new(
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap(),
    )
}

async fn send(s: &mut Box<dyn Stream>, p: Packet) {
    let mut buf = BytesMut::new();
    p.write(&mut buf, usize::MAX).unwrap();
    s.write_all(&buf).await.unwrap();
}

/// One packet from the hub; `None` once it closed the connection.
async fn read(s: &mut Box<dyn Stream>, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        match Packet::read(buf, 1 << 20) {
            Ok(p) => return Some(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => panic!("the hub sent malformed MQTT: {e}"),
        }
        match tokio::time::timeout(Duration::from_secs(10), s.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
            Err(_) => panic!("no packet from the hub within 10 s"),
        }
    }
}

fn token(hub: &Hub, module: &str) -> String {
    edge::sas::module_token(
        &BASE64.decode(hub.key(module)).unwrap(),
        &hub.iothub(),
        &hub.device(),
        module,
        edge::sas::now_unix() + 3600,
    )
}

/// A raw MQTT client authenticated as `module`.
async fn raw_module(hub: &Hub, module: &str) -> (Box<dyn Stream>, BytesMut) {
    let mut s = tls(hub, hub.mqtt, &[]).await;
    let mut c = Connect::new(format!("{}/{module}", hub.device()));
    c.keep_alive = 60;
    c.set_login(
        edge::topic::username(&hub.iothub(), &hub.device(), module, "hostile-test"),
        token(hub, module),
    );
    send(&mut s, Packet::Connect(c)).await;
    let mut buf = BytesMut::new();
    match read(&mut s, &mut buf).await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (s, buf)
}

fn dropped(hub: &Hub) -> f64 {
    metric(&hub.metrics_text(), "edgehub_messages_dropped_total", &[])
}

fn refusals(hub: &Hub, protocol: &str, reason: &str) -> f64 {
    metric(
        &hub.metrics_text(),
        "edgehub_refusals_total",
        &[
            &format!("protocol=\"{protocol}\""),
            &format!("reason=\"{reason}\""),
        ],
    )
}

/// Log lines of refusals for `reason` over `protocol` ("mqtt" or "https"): the same reason can
/// be refused over both (a bad signature on CONNECT and on a method call).
fn log_lines(hub: &Hub, protocol: &str, reason: &str) -> usize {
    let needle = format!("reason=\"{reason}\"");
    let prefix = format!("{} refused:", protocol.to_ascii_uppercase());
    hub.proc
        .output()
        .lines()
        .filter(|l| l.contains(&needle) && l.contains(&prefix))
        .count()
}

/// The input topic the hub will build for the attacker's message with `key` (the same code).
fn delivered_topic_len(hub: &Hub, key: &str) -> usize {
    let bag: PropertyBag = [
        (key, "v"),
        (edge::bag::CONNECTION_DEVICE_ID, hub.device().as_str()),
        (edge::bag::CONNECTION_MODULE_ID, "attacker"),
    ]
    .into_iter()
    .collect();
    edge::topic::input(&hub.device(), "receiver", "in", &bag).len()
}

/// The attacker publishes `key` raw (not percent-encoded, as a careless client may); the hub
/// percent-encodes it for delivery. `Some(())` when the hub acknowledged.
async fn attack(hub: &Hub, key: &str) -> Option<()> {
    let (mut s, mut buf) = raw_module(hub, "attacker").await;
    let topic = format!(
        "devices/{}/modules/attacker/messages/events/%24.on=o&{key}=v",
        hub.device()
    );
    assert!(
        topic.len() <= u16::MAX as usize,
        "the attack itself must be valid MQTT"
    );
    let mut p = Publish::new(topic, QoS::AtLeastOnce, "x");
    p.pkid = 7;
    send(&mut s, Packet::Publish(p)).await;
    match read(&mut s, &mut buf).await {
        Some(Packet::PubAck(a)) if a.pkid == 7 => Some(()),
        None => None,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_cannot_be_delivered_are_refused_and_never_block_an_input() {
    let hub = start("topics", &[]);
    let mut pair = HonestPair::connect(&hub).await;
    let base = delivered_topic_len(&hub, "k") - 1;

    // Just under the limit: accepted, delivered, and the queue moves on.
    let under = "x".repeat(u16::MAX as usize - base);
    assert_eq!(delivered_topic_len(&hub, &under), u16::MAX as usize);
    assert_eq!(
        attack(&hub, &under).await,
        Some(()),
        "a topic of exactly 65,535 bytes is valid"
    );
    pair.exchange("just under", Duration::from_secs(5)).await;

    // One byte over, ~22,000 spaces (each becomes %20) and multi-byte characters (é becomes
    // %C3%A9): refused before the PUBACK, the connection closed, one log line, one count.
    let over = "x".repeat(u16::MAX as usize - base + 1);
    let cases = [
        ("one byte over", over),
        ("22,000 spaces", " ".repeat(22_000)),
        ("multi-byte", "é".repeat(11_000)),
    ];
    for (i, (name, key)) in cases.iter().enumerate() {
        assert!(delivered_topic_len(&hub, key) > u16::MAX as usize, "{name}");
        assert_eq!(
            attack(&hub, key).await,
            None,
            "{name}: the hub must refuse, not acknowledge"
        );
        let expected = (i + 1) as f64;
        let deadline = Instant::now() + Duration::from_secs(5);
        while (refusals(&hub, "mqtt", "undeliverable") < expected
            || log_lines(&hub, "mqtt", "undeliverable") < i + 1)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(refusals(&hub, "mqtt", "undeliverable"), expected, "{name}");
        assert_eq!(
            log_lines(&hub, "mqtt", "undeliverable"),
            i + 1,
            "{name}: one log line per refusal"
        );
        pair.exchange(name, Duration::from_secs(5)).await;
    }
    // Nothing was queued for delivery from the refused messages.
    assert_eq!(dropped(&hub), 0.0);

    // The reply a client's own request asks for must fit too: a twin GET whose request id
    // makes the response topic too long closes that client, not the hub's writer silently.
    let (mut s, mut buf) = raw_module(&hub, "attacker").await;
    let rid = "r".repeat(u16::MAX as usize - "$iothub/twin/GET/?$rid=".len());
    send(
        &mut s,
        Packet::Publish(Publish::new(
            format!("$iothub/twin/GET/?$rid={rid}"),
            QoS::AtMostOnce,
            "",
        )),
    )
    .await;
    assert!(
        read(&mut s, &mut buf).await.is_none(),
        "the hub closes the connection"
    );
    pair.exchange("twin rid", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_never_acknowledged_is_dropped_after_bounded_resends() {
    let hub = start("deaf", &[]);
    let mut pair = HonestPair::connect(&hub).await;
    // "deaf" subscribes with the C# SDK's filter form and never sends a PUBACK.
    let (mut deaf, mut buf) = raw_module(&hub, "deaf").await;
    let filter = format!("devices/{}/modules/deaf/#", hub.device());
    send(
        &mut deaf,
        Packet::Subscribe(Subscribe::new(filter, QoS::AtLeastOnce)),
    )
    .await;
    assert!(matches!(
        read(&mut deaf, &mut buf).await,
        Some(Packet::SubAck(_))
    ));
    for body in ["first", "second"] {
        pair.sender
            .send_output("deaf", Message::new(Bytes::from(body)))
            .await
            .unwrap();
    }
    // --max-delivery-attempts 2: the first message twice (the second time marked DUP), then
    // the second message: the queue moved on without any PUBACK.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match read(&mut deaf, &mut buf).await {
            Some(Packet::Publish(p)) => seen.push((
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.dup,
                p.pkid,
            )),
            other => panic!("expected deliveries, got {other:?}"),
        }
    }
    assert_eq!(
        seen.iter()
            .map(|(b, d, _)| (b.as_str(), *d))
            .collect::<Vec<_>>(),
        [("first", false), ("first", true), ("second", false)]
    );
    send(&mut deaf, Packet::PubAck(PubAck::new(seen[2].2))).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while dropped(&hub) < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = hub.metrics_text();
    let not_acknowledged = metric(
        &text,
        "edgehub_messages_dropped_total",
        &["reason=\"not_acknowledged\""],
    );
    assert_eq!(not_acknowledged, 1.0, "{text}");
    let logged = hub
        .proc
        .output()
        .lines()
        .filter(|l| l.contains("message dropped") && l.contains("not_acknowledged"))
        .count();
    assert_eq!(logged, 1, "{}", hub.proc.output());
    pair.exchange("deaf module", Duration::from_secs(5)).await;
}

/// Opens `n` TCP connections to `port` that never say a word.
async fn flood(port: u16, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    held
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_unauthenticated_connections_do_not_lock_modules_out() {
    let hub = start("flood", &["--max-unauthenticated", "100"]);
    let mut pair = HonestPair::connect(&hub).await;
    let pid = hub.proc.child.id();
    let mut rss = vec![rss_kib(pid)];
    for round in 0..5 {
        // 1,000 silent connections on each of the MQTT/TLS, plain MQTT and HTTPS ports.
        let mut held = flood(hub.mqtt, 1000).await;
        held.extend(flood(hub.plain_mqtt.unwrap(), 1000).await);
        held.extend(flood(hub.https, 1000).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // While they are held: a module connects afresh and both legs work, within 1 s.
        let started = Instant::now();
        let (fresh, _rx) = tokio::time::timeout(
            Duration::from_secs(1),
            ModuleClient::connect(hub.identity("attacker"), Subscriptions::NONE),
        )
        .await
        .expect("a module could not connect within 1 s during the flood")
        .unwrap();
        fresh
            .send_output("o", Message::new(Bytes::from_static(b"during the flood")))
            .await
            .unwrap();
        let fresh_caller = MethodClient::new(hub.identity("sender")).await.unwrap();
        let answer = fresh_caller
            .invoke(
                &hub.device(),
                "receiver",
                "Ping",
                &serde_json::json!(1),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        pair.exchange(&format!("flood round {round}"), Duration::from_secs(1))
            .await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(1),
            "exchanges took {elapsed:?} during the flood"
        );
        fresh.disconnect().await;
        drop(held);
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss.push(rss_kib(pid));
    }
    eprintln!("hub RSS (KiB) before and after each flood round: {rss:?}");
    assert!(refusals(&hub, "mqtt", "unauthenticated_limit") >= 1800.0);
    assert!(refusals(&hub, "https", "unauthenticated_limit") >= 900.0);
    // A plateau: later rounds do not keep growing.
    let first_rounds = rss[1..3].iter().max().copied().unwrap();
    let last_rounds = rss[3..].iter().max().copied().unwrap();
    assert!(
        last_rounds <= first_rounds + first_rounds / 5 + 2048,
        "hub RSS keeps growing across flood rounds: {rss:?} KiB"
    );
    // Whatever was left after the last round is closed by the authentication deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while refusals(&hub, "mqtt", "auth_deadline") < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_https_clients_are_cut_off_at_their_deadline() {
    let hub = start("slow-https", &[]);
    let mut pair = HonestPair::connect(&hub).await;
    // Headers one byte every 200 ms: cut off at --http-header-timeout (2 s).
    let mut slow = tls(&hub, hub.https, &[b"http/1.1"]).await;
    let request = format!(
        "POST /twins/{}/modules/receiver/methods HTTP/1.1\r\nhost: localhost\r\n",
        hub.device()
    );
    let started = Instant::now();
    let mut cut = None;
    for b in request.bytes().cycle() {
        if slow.write_all(&[b]).await.is_err() || slow.flush().await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = Some(started.elapsed());
                break;
            }
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        if started.elapsed() > Duration::from_millis(500) && cut.is_none() {
            // Other clients are unaffected while it trickles.
            pair.try_exchange("while slow", Duration::from_secs(1))
                .await
                .unwrap();
        }
    }
    let cut = cut.expect("a slow HTTPS client was never cut off");
    eprintln!("slow header client cut off after {cut:?}");
    assert!(
        cut >= Duration::from_millis(1500) && cut < Duration::from_secs(4),
        "{cut:?}"
    );
    wait_logged(&hub, "https", "header_timeout").await;
    assert_eq!(refusals(&hub, "https", "header_timeout"), 1.0);
    assert_eq!(log_lines(&hub, "https", "header_timeout"), 1);

    // An authenticated caller whose body never arrives: cut at --http-body-timeout (2 s).
    let mut body_slow = tls(&hub, hub.https, &[b"http/1.1"]).await;
    let head = format!(
        "POST /twins/{d}/modules/receiver/methods HTTP/1.1\r\nhost: localhost\r\nauthorization: {t}\r\nx-ms-edge-moduleId: {d}/sender\r\ncontent-length: 100\r\n\r\n{{",
        d = hub.device(),
        t = token(&hub, "sender")
    );
    body_slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(6), body_slow.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(refusals(&hub, "https", "body_timeout"), 1.0);
    pair.exchange("slow body", Duration::from_secs(5)).await;
}

/// Sends raw HTTP over TLS and returns the status line.
async fn https_status(hub: &Hub, request: String) -> String {
    let mut s = tls(hub, hub.https, &[b"http/1.1"]).await;
    // The hub may answer and close before a refused body is all written.
    let _ = s.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_logged_once_counted_once_and_never_leaks_a_secret() {
    let hub = start("refusals", &[]);
    let mut pair = HonestPair::connect(&hub).await;
    let device = hub.device();
    let good = token(&hub, "sender");
    let wrong_key = edge::sas::module_token(
        &[7u8; 32],
        &hub.iothub(),
        &device,
        "sender",
        edge::sas::now_unix() + 60,
    );

    // MQTT CONNECT refusals.
    let connect = |client_id: String, module: &str, password: String| {
        let mut c = Connect::new(client_id);
        c.set_login(
            edge::topic::username(&hub.iothub(), &device, module, "t"),
            password,
        );
        Packet::Connect(c)
    };
    let mqtt_cases: Vec<(&str, Packet)> = vec![
        (
            "bad_signature",
            connect(format!("{device}/sender"), "sender", wrong_key.clone()),
        ),
        (
            "unknown_module",
            connect(format!("{device}/nobody"), "nobody", good.clone()),
        ),
        (
            "client_id_mismatch",
            connect("someone-else".into(), "sender", good.clone()),
        ),
        (
            "bad_token",
            connect(
                format!("{device}/sender"),
                "sender",
                "SharedAccessSignature nonsense".into(),
            ),
        ),
        ("no_credentials", Packet::Connect(Connect::new("x"))),
        ("not_connect", Packet::PingReq),
    ];
    for (reason, packet) in mqtt_cases {
        let mut s = tls(&hub, hub.mqtt, &[]).await;
        send(&mut s, packet).await;
        let mut buf = BytesMut::new();
        while read(&mut s, &mut buf).await.is_some() {}
        check_once(&hub, "mqtt", reason).await;
        pair.exchange(reason, Duration::from_secs(5)).await;
    }

    // Violations by an authenticated module: the connection is closed.
    let violations: Vec<(&str, Packet)> = vec![
        (
            "protocol_violation",
            Packet::Publish(Publish::new(
                format!("devices/{device}/modules/attacker/messages/events/"),
                QoS::ExactlyOnce,
                "x",
            )),
        ),
        (
            "foreign_topic",
            Packet::Publish(Publish::new(
                format!("devices/{device}/modules/sender/messages/events/"),
                QoS::AtLeastOnce,
                "x",
            )),
        ),
        (
            "message_too_large",
            Packet::Publish(Publish::new(
                format!("devices/{device}/modules/attacker/messages/events/"),
                QoS::AtLeastOnce,
                vec![0u8; 300 * 1024],
            )),
        ),
        (
            "bad_property_bag",
            Packet::Publish(Publish::new(
                format!("devices/{device}/modules/attacker/messages/events/%FF=1"),
                QoS::AtLeastOnce,
                "x",
            )),
        ),
    ];
    for (reason, mut packet) in violations {
        if let Packet::Publish(p) = &mut packet {
            p.pkid = if p.qos == QoS::AtMostOnce { 0 } else { 1 };
        }
        let (mut s, mut buf) = raw_module(&hub, "attacker").await;
        send(&mut s, packet).await;
        while read(&mut s, &mut buf).await.is_some() {}
        check_once(&hub, "mqtt", reason).await;
        pair.exchange(reason, Duration::from_secs(5)).await;
    }

    // HTTPS refusals.
    let path = format!("/twins/{device}/modules/receiver/methods");
    let post = |headers: String, body: &str| {
        format!("POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n{body}", body.len())
    };
    let https_cases = vec![
        ("bad_caller_header", post(format!("authorization: {good}\r\n"), "{}"), "400"),
        ("other_device", post(format!("authorization: {good}\r\nx-ms-edge-moduleId: other/sender\r\n"), "{}"), "401"),
        ("bad_signature", post(format!("authorization: {wrong_key}\r\nx-ms-edge-moduleId: {device}/sender\r\n"), "{}"), "401"),
        ("bad_request", post(format!("authorization: {good}\r\nx-ms-edge-moduleId: {device}/sender\r\n"), "{\"payload\":1}"), "400"),
        ("body_too_large", post(format!("authorization: {good}\r\nx-ms-edge-moduleId: {device}/sender\r\n"), &"x".repeat(300 * 1024)), "400"),
        ("no_such_resource", "POST /elsewhere HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_owned(), "404"),
        ("method_not_allowed", format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"), "405"),
    ];
    for (reason, request, status) in https_cases {
        let line = https_status(&hub, request).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{reason}: {line}"
        );
        check_once(&hub, "https", reason).await;
        pair.exchange(reason, Duration::from_secs(5)).await;
    }

    // No key, token or signature in anything the hub wrote.
    let out = hub.proc.output();
    let mut secrets = vec![good.clone(), wrong_key.clone()];
    for module in ["attacker", "sender", "receiver", "deaf"] {
        secrets.push(hub.key(module));
        secrets.push(token(&hub, module));
    }
    for token in [&good, &wrong_key] {
        let sig = token
            .split('&')
            .find_map(|f| f.strip_prefix("sig="))
            .unwrap();
        secrets.push(sig.to_owned());
    }
    for secret in &secrets {
        assert!(
            !out.contains(secret.as_str()),
            "the hub logged a secret:\n{out}"
        );
    }
    assert!(
        !out.contains("sig="),
        "the hub logged a signature field:\n{out}"
    );
}

/// Waits (up to 5 s) until the hub's stderr shows a line for `reason`.
async fn wait_logged(hub: &Hub, protocol: &str, reason: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_lines(hub, protocol, reason) < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Exactly one new log line and one new count for `reason` since the last check.
async fn check_once(hub: &Hub, protocol: &str, reason: &str) {
    // The count and the log line travel separately (metrics endpoint, stderr): wait for both.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (refusals(hub, protocol, reason) < 1.0 || log_lines(hub, protocol, reason) < 1)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        refusals(hub, protocol, reason),
        1.0,
        "{protocol} {reason}: counted once\n{}",
        hub.metrics_text()
    );
    assert_eq!(
        log_lines(hub, protocol, reason),
        1,
        "{protocol} {reason}: logged once\n{}",
        hub.proc.output()
    );
}
