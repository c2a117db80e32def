//! The hub against real clients on real sockets: our module client, raw MQTT over TLS, raw HTTPS.
//! Refusals get edgeHub's answers, and a bad client never harms another (issue 2).

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use bytes::{Bytes, BytesMut};
use edge::session::{Ack, Subscriptions};
use edge::{Incoming, Message, MethodClient, ModuleClient};
use rand::RngCore;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

mod support;
use support::TestHub;

const MANIFEST: &str = r#"{"modulesContent":{
  "$edgeAgent":{"properties.desired":{"modules":{"a":{},"b":{},"silent":{}}}},
  "$edgeHub":{"properties.desired":{"routes":{
     "loop":"FROM /messages/modules/a/outputs/loop INTO BrokeredEndpoint(\"/modules/a/inputs/loop\")",
     "toB":{"route":"FROM /messages/modules/a/outputs/toB INTO BrokeredEndpoint(\"/modules/b/inputs/fromA\")","priority":1,"timeToLiveSecs":60},
     "cloud":"FROM /messages/modules/b/* INTO $upstream"}}}}}"#;

async fn start_hub(name: &str, manifest: &str) -> anyhow::Result<TestHub> {
    support::start(
        name,
        manifest,
        &["--plain-mqtt-port", "0", "--ack-timeout", "2s"],
    )
    .await
}

impl TestHub {
    /// Waits until `module` has subscribed to direct methods (connect returns before SUBACK).
    async fn wait_for_methods_subscription(&self, module: &str) {
        self.wait_for_session(module, "subscribed to methods", |s| s.takes_methods())
            .await;
    }
}

async fn recv_input(rx: &mut mpsc::Receiver<Incoming>) -> (String, Message) {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Incoming::Input { input, message, .. })) => (input, message),
        other => panic!("expected an input message, got {other:?}"),
    }
}

/// A module that subscribed and proved it by receiving its own loop message.
async fn loop_ok(client: &ModuleClient, rx: &mut mpsc::Receiver<Incoming>, tag: &str) {
    client
        .send_output(
            "loop",
            Message::new(Bytes::from(tag.to_owned())).with_correlation_id(tag),
        )
        .await
        .unwrap();
    loop {
        let (input, m) = recv_input(rx).await;
        if m.correlation_id() == Some(tag) {
            assert_eq!(input, "loop");
            return;
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn tls_stream(hub: &TestHub) -> Box<dyn Stream> {
    Box::new(support::tls_connect(hub, hub.running.mqtt).await)
}

async fn send(stream: &mut Box<dyn Stream>, p: Packet) {
    let mut buf = BytesMut::new();
    p.write(&mut buf, usize::MAX).unwrap();
    stream.write_all(&buf).await.unwrap();
}

/// Reads one packet; `None` when the hub closed the connection. What follows it in the same
/// read is lost: for one answer at a time (else [`read_next`]).
async fn read(stream: &mut Box<dyn Stream>) -> Option<Packet> {
    read_next(stream, &mut BytesMut::new()).await
}

/// Reads the next packet, keeping what arrived after it in `buf` for the next call.
async fn read_next(stream: &mut Box<dyn Stream>, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        match Packet::read(buf, 1 << 20) {
            Ok(p) => return Some(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => panic!("hub sent malformed MQTT: {e}"),
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
            Err(_) => panic!("no answer from the hub within 10 s"),
        }
    }
}

fn connect_packet(client_id: &str, module: &str, password: String) -> Packet {
    let mut c = Connect::new(client_id);
    c.keep_alive = 30;
    c.set_login(
        edge::topic::username(
            "local-hub.azure-devices.net",
            "local-edge-device",
            module,
            "test",
        ),
        password,
    );
    Packet::Connect(c)
}

fn token(key: &[u8], module: &str, expiry: u64) -> String {
    edge::sas::module_token(
        key,
        "local-hub.azure-devices.net",
        "local-edge-device",
        module,
        expiry,
    )
}

async fn connack(hub: &TestHub, packet: Packet) -> (Option<ConnectReturnCode>, Box<dyn Stream>) {
    let mut s = tls_stream(hub).await;
    send(&mut s, packet).await;
    let code = match read(&mut s).await {
        Some(Packet::ConnAck(a)) => Some(a.code),
        Some(other) => panic!("expected CONNACK, got {other:?}"),
        None => None,
    };
    (code, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_get_edgehub_answers_and_spare_other_clients() {
    let hub = start_hub("refusals", MANIFEST).await.unwrap();
    let (a, mut a_rx) = hub.client("a", Subscriptions::INPUTS).await;
    loop_ok(&a, &mut a_rx, "before").await;
    let now = edge::sas::now_unix();
    let good_key = hub.key("a");

    // Wrong key, expired token, client id that does not match the token/username, unknown module.
    let wrong = BASE64.encode([7u8; 32]);
    let cases = [
        (
            "wrong key",
            connect_packet(
                "local-edge-device/a",
                "a",
                token(&BASE64.decode(wrong).unwrap(), "a", now + 3600),
            ),
        ),
        (
            "expired token",
            connect_packet("local-edge-device/a", "a", token(&good_key, "a", now - 301)),
        ),
        (
            "client id mismatch",
            connect_packet(
                "local-edge-device/b",
                "a",
                token(&good_key, "a", now + 3600),
            ),
        ),
        (
            "token for another module",
            connect_packet(
                "local-edge-device/b",
                "b",
                token(&good_key, "a", now + 3600),
            ),
        ),
        (
            "unknown module",
            connect_packet(
                "local-edge-device/ghost",
                "ghost",
                token(&good_key, "ghost", now + 3600),
            ),
        ),
    ];
    for (what, packet) in cases {
        let (code, mut s) = connack(&hub, packet).await;
        assert_eq!(code, Some(ConnectReturnCode::NotAuthorized), "{what}");
        assert!(
            read(&mut s).await.is_none(),
            "{what}: the hub must close the connection"
        );
    }
    // Still valid within the 5-minute clock skew.
    let (code, _s) = connack(
        &hub,
        connect_packet(
            "local-edge-device/b",
            "b",
            token(&hub.key("b"), "b", now - 200),
        ),
    )
    .await;
    assert_eq!(code, Some(ConnectReturnCode::Success));
    // No credentials at all.
    let (code, _) = connack(&hub, Packet::Connect(Connect::new("local-edge-device/a"))).await;
    assert_eq!(code, Some(ConnectReturnCode::BadUserNamePassword));

    // A 300 KiB publish closes only that connection.
    let (code, mut big) = connack(
        &hub,
        connect_packet(
            "local-edge-device/b",
            "b",
            token(&hub.key("b"), "b", now + 3600),
        ),
    )
    .await;
    assert_eq!(code, Some(ConnectReturnCode::Success));
    let mut p = Publish::new(
        "devices/local-edge-device/modules/b/messages/events/%24.on=x",
        QoS::AtLeastOnce,
        vec![0u8; 300 * 1024],
    );
    p.pkid = 1;
    send(&mut big, Packet::Publish(p)).await;
    assert!(
        read(&mut big).await.is_none(),
        "a 300 KiB message must close the connection"
    );
    // QoS 2 likewise.
    let (_, mut q2) = connack(
        &hub,
        connect_packet(
            "local-edge-device/b",
            "b",
            token(&hub.key("b"), "b", now + 3600),
        ),
    )
    .await;
    let mut p = Publish::new(
        "devices/local-edge-device/modules/b/messages/events/",
        QoS::ExactlyOnce,
        vec![1u8],
    );
    p.pkid = 1;
    send(&mut q2, Packet::Publish(p)).await;
    assert!(
        read(&mut q2).await.is_none(),
        "QoS 2 must close the connection"
    );

    loop_ok(&a, &mut a_rx, "after").await;
    let metrics = common_metrics(&hub).await;
    assert!(metrics.contains(r#"reason="bad_signature""#), "{metrics}");
    assert!(metrics.contains(r#"reason="token_expired""#), "{metrics}");
    assert!(
        metrics.contains(r#"reason="client_id_mismatch""#),
        "{metrics}"
    );
    hub.running.stop().await;
}

async fn common_metrics(hub: &TestHub) -> String {
    hub.scrape().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let hub = start_hub("keepalive", MANIFEST).await.unwrap();
    let now = edge::sas::now_unix();
    let Packet::Connect(mut c) = connect_packet(
        "local-edge-device/b",
        "b",
        token(&hub.key("b"), "b", now + 3600),
    ) else {
        unreachable!()
    };
    c.keep_alive = 1;
    let (code, mut s) = connack(&hub, Packet::Connect(c)).await;
    assert_eq!(code, Some(ConnectReturnCode::Success));
    let started = std::time::Instant::now();
    assert!(read(&mut s).await.is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    hub.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_methods_answer_like_edgehub() {
    let hub = start_hub("methods", MANIFEST).await.unwrap();
    // b answers "Echo"; "silent" subscribes but never answers.
    let (b, mut b_rx) = hub.client("b", Subscriptions::METHODS).await;
    tokio::spawn(async move {
        while let Some(Incoming::Method { request: req, .. }) = b_rx.recv().await {
            let _ = b.respond(&req, 201, req.payload.clone()).await;
        }
    });
    let (_silent, _silent_rx) = hub.client("silent", Subscriptions::METHODS).await;
    hub.wait_for_methods_subscription("silent").await;
    let caller = MethodClient::new(hub.identity("a")).await.unwrap();
    let payload = serde_json::json!({"hello": "world"});
    // Wait until b's subscription is in.
    let mut answer = None;
    for _ in 0..100 {
        match caller
            .invoke(
                "local-edge-device",
                "b",
                "Echo",
                &payload,
                Duration::from_secs(5),
            )
            .await
        {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(edge::InvokeError::NotFound(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    let answer = answer.expect("b never became reachable");
    assert_eq!(answer.status, 201);
    assert_eq!(answer.json(), payload);

    // Unknown target: 404 with edgeHub's body.
    match caller
        .invoke(
            "local-edge-device",
            "nobody",
            "Echo",
            &payload,
            Duration::from_secs(5),
        )
        .await
    {
        Err(edge::InvokeError::NotFound(body)) => assert!(
            body.contains("Client local-edge-device/nobody not found"),
            "{body}"
        ),
        other => panic!("expected 404, got {other:?}"),
    }
    // A target that never answers: 504 after responseTimeoutInSeconds (5 s, the minimum).
    match caller
        .invoke(
            "local-edge-device",
            "silent",
            "Echo",
            &payload,
            Duration::from_secs(5),
        )
        .await
    {
        Err(edge::InvokeError::Timeout(body)) => assert!(
            body.contains("Timed out waiting for device to respond to method request"),
            "{body}"
        ),
        other => panic!("expected 504, got {other:?}"),
    }

    let now = edge::sas::now_unix();
    let a_token = token(&hub.key("a"), "a", now + 3600);
    let path = "/twins/local-edge-device/modules/b/methods?api-version=2019-10-01";
    let body = r#"{"methodName":"Echo","payload":{"x":1},"responseTimeoutInSeconds":5}"#;
    // The caller's own token and header: fine.
    let (status, text) = support::post_raw(&hub, path, "local-edge-device/a", &a_token, body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        serde_json::json!({"status":201,"payload":{"x":1}})
    );
    // x-ms-edge-moduleId names another module than the token proves: 401.
    let (status, text) = support::post_raw(&hub, path, "local-edge-device/b", &a_token, body).await;
    assert_eq!(status, 401, "{text}");
    // Missing or malformed header: 400 with edgeHub's message.
    let (status, text) = support::post_raw(&hub, path, "nonsense", &a_token, body).await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            r#"{"message":"Invalid header value for x-ms-edge-moduleId"}"#
        )
    );
    // Another device: 401.
    let (status, _) = support::post_raw(&hub, path, "other-device/a", &a_token, body).await;
    assert_eq!(status, 401);
    // Wrong key: 401.
    let (status, _) = support::post_raw(
        &hub,
        path,
        "local-edge-device/a",
        &token(&[1u8; 32], "a", now + 3600),
        body,
    )
    .await;
    assert_eq!(status, 401);
    // Body violations: 400 with a JSON string.
    for bad in [
        r#"{"payload":1}"#,
        r#"{"methodName":"Echo","responseTimeoutInSeconds":1}"#,
        "not json",
    ] {
        let (status, text) =
            support::post_raw(&hub, path, "local-edge-device/a", &a_token, bad).await;
        assert_eq!(status, 400, "{bad}: {text}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap()
                .is_string(),
            "{text}"
        );
    }
    let metrics = common_metrics(&hub).await;
    // edgeHub's labels: the count names the calling module, the duration its device only.
    let line = |name: &str, labels: &str| {
        metrics.lines().any(|l| {
            l.starts_with(&format!("{name}{{iothub=\"local-hub.azure-devices.net\",edge_device=\"local-edge-device\",instance_number=\""))
                && l.contains(labels)
        })
    };
    assert!(
        line(
            "edgehub_direct_methods_total",
            r#"",from="local-edge-device/a",to="local-edge-device/b",ms_telemetry="True"}"#
        ),
        "{metrics}"
    );
    assert!(
        line(
            "edgehub_direct_method_duration_seconds_count",
            r#"",from="local-edge-device",to="local-edge-device/b"}"#
        ),
        "{metrics}"
    );
    hub.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_route_to_inputs_with_sender_identity_and_wait_for_offline_modules() {
    let hub = start_hub("routing", MANIFEST).await.unwrap();
    let (a, _a_rx) = hub.client("a", Subscriptions::NONE).await;
    // b is offline: messages wait for it.
    for i in 0..3 {
        let m = Message::new(Bytes::from(format!("m{i}")))
            .with_correlation_id(format!("c{i}"))
            .with_property("k&=/ é", "v=&/ é");
        a.send_output("toB", m).await.unwrap();
    }
    // Routed to $upstream: counted as dropped, not delivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (b, mut b_rx) = hub.client("b", Subscriptions::INPUTS).await;
    for i in 0..3 {
        let (input, m) = recv_input(&mut b_rx).await;
        assert_eq!(input, "fromA");
        assert_eq!(&m.body[..], format!("m{i}").as_bytes());
        assert_eq!(m.correlation_id(), Some(format!("c{i}").as_str()));
        assert_eq!(m.properties.get("k&=/ é"), Some("v=&/ é"));
        assert_eq!(m.properties.get("$.cdid"), Some("local-edge-device"));
        assert_eq!(m.properties.get("$.cmid"), Some("a"));
        assert_eq!(
            m.properties.get("$.on"),
            None,
            "the output name is not forwarded"
        );
    }
    b.send_output("anything", Message::new(Bytes::from_static(b"up")))
        .await
        .unwrap();
    a.send_output("nowhere", Message::new(Bytes::from_static(b"x")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = common_metrics(&hub).await;
    assert!(metrics.contains(r#"reason="upstream""#), "{metrics}");
    assert!(metrics.contains(r#"reason="no_route""#), "{metrics}");
    assert!(
        metrics.contains("edgehub_messages_sent_total{"),
        "{metrics}"
    );
    hub.running.stop().await;
}

/// A module acknowledges a delivery when it drops its `Ack`, not on arrival: while it holds it,
/// the hub (one message in flight per module) sends that module nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_acknowledged_when_its_ack_is_dropped() {
    let hub = start_hub("ack-on-drop", MANIFEST).await.unwrap();
    let (a, _a_rx) = hub.client("a", Subscriptions::NONE).await;
    let (_b, mut b_rx) = hub.client("b", Subscriptions::INPUTS).await;
    hub.wait_for_session("b", "subscribed to inputs", |s| s.takes_inputs())
        .await;
    for i in 0..2 {
        a.send_output("toB", Message::new(Bytes::from(format!("m{i}"))))
            .await
            .unwrap();
    }
    let first = tokio::time::timeout(Duration::from_secs(10), b_rx.recv()).await;
    let Ok(Some(Incoming::Input { message, ack, .. })) = first else {
        panic!("expected m0, got {first:?}");
    };
    assert_eq!(&message.body[..], b"m0");
    next_only_after(
        ack,
        &mut b_rx,
        "m1",
        "m1 came while m0 was not acknowledged",
    )
    .await;
    hub.running.stop().await;
}

/// Checks that nothing arrives on `rx` for 500 ms while `held` is kept, then that `next` does
/// once it is dropped; `early` says what an arrival before means.
async fn next_only_after(held: Ack, rx: &mut mpsc::Receiver<Incoming>, next: &str, early: &str) {
    let arrived = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(arrived.is_err(), "{early}: {arrived:?}");
    drop(held);
    let (_, m) = recv_input(rx).await;
    assert_eq!(&m.body[..], next.as_bytes());
}

/// An `Ack` that outlives its connection sends nothing: its packet id belongs to the old
/// connection, and on the new one the same id can name the message sent again, which would then
/// count as handled before the module saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_from_an_earlier_connection_acknowledges_nothing() {
    let hub = start_hub("stale-ack", MANIFEST).await.unwrap();
    let (a, _a_rx) = hub.client("a", Subscriptions::NONE).await;
    let (b, mut b_rx) = hub.client("b", Subscriptions::INPUTS).await;
    let mut connections = b.connections();
    hub.wait_for_session("b", "subscribed to inputs", |s| s.takes_inputs())
        .await;
    a.send_output("toB", Message::new(Bytes::from_static(b"m0")))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), b_rx.recv()).await;
    let Ok(Some(Incoming::Input { ack: stale, .. })) = first else {
        panic!("expected m0, got {first:?}");
    };
    // The hub drops b's connection; b reconnects and gets m0 again, under the new session's
    // first packet id, the one m0 had.
    connections.borrow_and_update();
    hub.running.hub.session("b").unwrap().close();
    tokio::time::timeout(Duration::from_secs(10), connections.changed())
        .await
        .unwrap()
        .unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), b_rx.recv()).await;
    let Ok(Some(Incoming::Input { message, ack, .. })) = again else {
        panic!("expected m0 again, got {again:?}");
    };
    assert_eq!(&message.body[..], b"m0");
    drop(stale);
    a.send_output("toB", Message::new(Bytes::from_static(b"m1")))
        .await
        .unwrap();
    let early = "the old connection's Ack acknowledged m0 again";
    next_only_after(ack, &mut b_rx, "m1", early).await;
    hub.running.stop().await;
}

/// A PUBACK read together with the client's DISCONNECT completes the message: the module's next
/// connection does not get it again. (The delivery is woken by both at once; it once let the
/// close win and sent the message again, to a client that had acknowledged it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_acknowledged_right_before_disconnect_is_not_sent_again() {
    let hub = start_hub("ack-then-disconnect", MANIFEST).await.unwrap();
    let (a, _a_rx) = hub.client("a", Subscriptions::NONE).await;
    let key = hub.key("b");
    let expiry = edge::sas::now_unix() + 3600;
    for i in 0..40 {
        a.send_output("toB", Message::new(Bytes::from(format!("m{i}"))))
            .await
            .unwrap();
        let login = connect_packet("local-edge-device/b", "b", token(&key, "b", expiry));
        let (code, mut s) = connack(&hub, login).await;
        assert_eq!(code, Some(ConnectReturnCode::Success));
        let inputs = Subscribe::new("devices/local-edge-device/modules/b/#", QoS::AtLeastOnce);
        send(&mut s, Packet::Subscribe(inputs)).await;
        let mut buf = BytesMut::new();
        let publish = loop {
            match read_next(&mut s, &mut buf).await {
                Some(Packet::Publish(p)) => break p,
                Some(_) => {}
                None => panic!("connection {i} closed before a delivery"),
            }
        };
        assert_eq!(
            String::from_utf8_lossy(&publish.payload),
            format!("m{i}"),
            "connection {i} got an acknowledged message again"
        );
        // One write, so the hub reads the PUBACK and the DISCONNECT together.
        let mut both = BytesMut::new();
        Packet::PubAck(PubAck::new(publish.pkid))
            .write(&mut both, usize::MAX)
            .unwrap();
        Packet::Disconnect.write(&mut both, usize::MAX).unwrap();
        s.write_all(&both).await.unwrap();
        while read_next(&mut s, &mut buf).await.is_some() {}
    }
    hub.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_truncated_bytes_close_only_that_connection() {
    let hub = start_hub("fuzz", MANIFEST).await.unwrap();
    let (a, mut a_rx) = hub.client("a", Subscriptions::INPUTS).await;
    loop_ok(&a, &mut a_rx, "before").await;
    let plain = hub.running.plain_mqtt.unwrap();
    let mut rng = rand::rng();
    // A valid CONNECT, to truncate at every length.
    let mut valid = BytesMut::new();
    connect_packet(
        "local-edge-device/b",
        "b",
        token(&hub.key("b"), "b", edge::sas::now_unix() + 3600),
    )
    .write(&mut valid, usize::MAX)
    .unwrap();
    let mut inputs: Vec<Vec<u8>> = (1..valid.len())
        .step_by(7)
        .map(|n| valid[..n].to_vec())
        .collect();
    for _ in 0..150 {
        let mut junk = vec![0u8; (rng.next_u32() % 512) as usize + 1];
        rng.fill_bytes(&mut junk);
        inputs.push(junk);
    }
    // Plausible fixed headers with absurd lengths.
    inputs.push(vec![0x10, 0xff, 0xff, 0xff, 0x7f]);
    inputs.push(vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
    for (i, bytes) in inputs.iter().enumerate() {
        let addr = if i % 2 == 0 { plain } else { hub.running.mqtt };
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(bytes).await;
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(12), s.read_to_end(&mut sink))
            .await
            .expect("the hub must close a junk connection");
    }
    loop_ok(&a, &mut a_rx, "after").await;
    let (_b, mut b_rx) = hub.client("b", Subscriptions::INPUTS).await;
    a.send_output("toB", Message::new(Bytes::from_static(b"still fine")))
        .await
        .unwrap();
    let (_, m) = recv_input(&mut b_rx).await;
    assert_eq!(&m.body[..], b"still fine");
    hub.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_route_stops_the_hub_with_its_name() {
    let manifest = r#"{"modulesContent":{"$edgeAgent":{"properties.desired":{"modules":{"a":{}}}},
      "$edgeHub":{"properties.desired":{"routes":{"broken":"FROM /messages/* INTO Nowhere(\"x\")"}}}}}"#;
    let err = start_hub("badroute", manifest)
        .await
        .err()
        .expect("must refuse to start");
    let text = format!("{err:#}");
    assert!(text.contains("broken"), "{text}");
}
