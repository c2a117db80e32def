//! Fault injection (issue 9): each fault does what it says, as often as it says, and every
//! injection is counted exactly in `edgehub_faults_injected_total{fault}`.

use bytes::Bytes;
use clap::Parser;
use edge::session::Subscriptions;
use edge::{Incoming, Message, MethodClient, ModuleClient};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

mod support;
use support::TestHub;

const MANIFEST: &str = r#"{"modulesContent":{
  "$edgeAgent":{"properties.desired":{"modules":{"a":{},"b":{}}}},
  "$edgeHub":{"properties.desired":{"routes":{
     "toB":"FROM /messages/modules/a/outputs/* INTO BrokeredEndpoint(\"/modules/b/inputs/in\")"}}}}}"#;

async fn start(name: &str, extra: &[&str]) -> TestHub {
    support::start(&format!("faults-{name}"), MANIFEST, extra)
        .await
        .unwrap()
}

impl TestHub {
    /// The sum of every series of `name` whose labels contain `label`.
    async fn value(&self, name: &str, label: &str) -> u64 {
        test_support::metric(&self.scrape().await, name, &[label]) as u64
    }

    async fn injected(&self, fault: &str) -> u64 {
        self.value(
            "edgehub_faults_injected_total",
            &format!("fault=\"{fault}\""),
        )
        .await
    }
}

/// b's input messages (bodies) as they arrive, duplicates included.
async fn receiver(hub: &TestHub) -> (ModuleClient, mpsc::Receiver<String>) {
    let (b, mut rx) = ModuleClient::connect(hub.identity("b"), Subscriptions::ALL)
        .await
        .unwrap();
    let (tx, out) = mpsc::channel(10_000);
    let answering = b.clone();
    tokio::spawn(async move {
        while let Some(i) = rx.recv().await {
            match i {
                Incoming::Input { message, .. } => {
                    let _ = tx
                        .send(String::from_utf8_lossy(&message.body).into_owned())
                        .await;
                }
                Incoming::Method { request: req, .. } => {
                    let _ = answering.respond(&req, 200, req.payload.clone()).await;
                }
            }
        }
    });
    (b, out)
}

async fn wait_subscribed(hub: &TestHub, module: &str) {
    hub.wait_for_session(module, "subscribed", |s| {
        s.takes_inputs() && s.takes_methods()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_messages_are_counted_exactly() {
    let hub = start("drop-messages", &["--fault", "drop:messages=0.3"]).await;
    let (_b, mut inputs) = receiver(&hub).await;
    wait_subscribed(&hub, "b").await;
    let (a, _) = ModuleClient::connect(hub.identity("a"), Subscriptions::NONE)
        .await
        .unwrap();
    let n = 300;
    for i in 0..n {
        a.send_output("out", Message::new(Bytes::from(i.to_string())))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut received = 0;
    loop {
        let dropped = hub.injected("drop:messages").await;
        if received + dropped >= n || Instant::now() > deadline {
            break;
        }
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), inputs.recv()).await {
            received += 1;
        }
    }
    let injected = hub.injected("drop:messages").await;
    let dropped = hub
        .value("edgehub_messages_dropped_total", "reason=\"fault\"")
        .await;
    assert_eq!(
        received + injected,
        n,
        "received {received}, injected {injected}"
    );
    assert_eq!(dropped, injected);
    assert!((40..=140).contains(&injected), "30 % of 300: {injected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_method_requests_time_out_with_504() {
    let hub = start("drop-methods", &["--fault", "drop:methods=0.3"]).await;
    let (_b, _inputs) = receiver(&hub).await;
    wait_subscribed(&hub, "b").await;
    let caller = Arc::new(MethodClient::new(hub.identity("a")).await.unwrap());
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let caller = caller.clone();
            tokio::spawn(async move {
                caller
                    .invoke(
                        "local-edge-device",
                        "b",
                        "Ping",
                        &serde_json::json!(i),
                        Duration::from_secs(5),
                    )
                    .await
            })
        })
        .collect();
    let (mut ok, mut timed_out) = (0, 0);
    for c in calls {
        match c.await.unwrap() {
            Ok(r) if r.status == 200 => ok += 1,
            Err(e) if e.is_timeout() => timed_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(timed_out, hub.injected("drop:methods").await);
    assert_eq!(ok + timed_out, 60);
    assert!(timed_out > 0 && ok > 0, "ok {ok}, timed out {timed_out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acks_are_resent_and_add_up() {
    let hub = start(
        "lose-ack",
        &[
            "--fault",
            "lose-ack:b=0.3",
            "--ack-timeout",
            "100ms",
            "--max-delivery-attempts",
            "3",
        ],
    )
    .await;
    let (_b, mut inputs) = receiver(&hub).await;
    wait_subscribed(&hub, "b").await;
    let (a, _) = ModuleClient::connect(hub.identity("a"), Subscriptions::NONE)
        .await
        .unwrap();
    let n = 60u64;
    for i in 0..n {
        a.send_output("out", Message::new(Bytes::from(i.to_string())))
            .await
            .unwrap();
    }
    // Every message ends acknowledged or dropped after its attempts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut received = 0u64;
    loop {
        let sent = hub.value("edgehub_messages_sent_total", "to=").await;
        let dropped = hub
            .value("edgehub_messages_dropped_total", "not_acknowledged")
            .await;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), inputs.recv()).await
        {
            received += 1;
        }
        if sent + dropped >= n || Instant::now() > deadline {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), inputs.recv()).await {
        received += 1;
    }
    let lost = hub.injected("lose-ack:b").await;
    let dropped = hub
        .value("edgehub_messages_dropped_total", "not_acknowledged")
        .await;
    let sent = hub.value("edgehub_messages_sent_total", "to=").await;
    assert_eq!(sent + dropped, n);
    // Every send reaches b: one per message, plus one per lost PUBACK that was followed by a
    // resend (a message's last lost PUBACK is followed by its drop instead).
    assert_eq!(
        received,
        n + lost - dropped,
        "lost {lost}, dropped {dropped}"
    );
    assert!(lost > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_tls_handshakes_are_counted() {
    let hub = start("tls-fail", &["--fault", "tls-fail:https=0.5"]).await;
    let ca = std::fs::read_to_string(&hub.running.ca_path).unwrap();
    let config = Arc::new(edge::tls::client_config(&ca, &[b"http/1.1"]).unwrap());
    let mut failed = 0;
    for _ in 0..100 {
        let tcp = TcpStream::connect(hub.running.https).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect("localhost".try_into().unwrap(), tcp)
            .await;
        if tls.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, hub.injected("tls-fail:https").await);
    assert!((20..=80).contains(&failed), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_recur_and_the_module_comes_back() {
    let hub = start(
        "disconnect",
        &[
            "--fault",
            "disconnect:b=1s",
            "--fault",
            "delay:messages=50ms",
        ],
    )
    .await;
    let (_b, mut inputs) = receiver(&hub).await;
    wait_subscribed(&hub, "b").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let injected = hub.injected("disconnect:b").await;
    assert!(injected >= 2, "{injected}");
    let disconnects = hub
        .value("edgehub_client_disconnect_total", "local-edge-device/b")
        .await;
    assert!(disconnects >= injected, "{disconnects} < {injected}");
    // b reconnected and resubscribed; deliveries carry the injected 50 ms delay.
    wait_subscribed(&hub, "b").await;
    let (a, _) = ModuleClient::connect(hub.identity("a"), Subscriptions::NONE)
        .await
        .unwrap();
    let started = Instant::now();
    a.send_output("out", Message::new(Bytes::from_static(b"after")))
        .await
        .unwrap();
    loop {
        let body = tokio::time::timeout(Duration::from_secs(10), inputs.recv())
            .await
            .expect("b gets messages after its reconnects")
            .unwrap();
        if body == "after" {
            break;
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(hub.injected("delay:messages").await >= 1);
}

#[test]
fn invalid_fault_specs_refuse_to_start() {
    for bad in ["drop:messages=1.5", "lose-ack:=0.1", "delay:everything=1ms"] {
        let e = hub::Args::try_parse_from(["hub", "--fault", bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains(bad) && e.contains("Valid forms"), "{e}");
    }
    // HUB_FAULTS takes several specs separated by ';'.
    let parsed: Vec<String> = "delay:methods=10ms~2ms;drop:methods=0.1"
        .split(';')
        .map(|s| s.parse::<hub::faults::Fault>().unwrap().to_string())
        .collect();
    assert_eq!(parsed, ["delay:methods", "drop:methods"]);
}
