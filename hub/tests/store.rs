//! Store-and-forward across restarts (issue 9): what waits for an offline module is in the
//! store under the state directory, is delivered in order by the next hub on that directory,
//! expires by the manifest's time-to-live (counted as `ttl_expiry`), and an unreadable store
//! stops the start, naming the file to remove.

mod support;

use bytes::Bytes;
use edge::session::Subscriptions;
use edge::{Incoming, Message, ModuleClient, ModuleIdentity};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// toB: the manifest's default time-to-live (`ttl` below); toC: the route's own, an hour.
fn manifest(ttl: u64) -> String {
    format!(
        r#"{{"modulesContent":{{
  "$edgeAgent":{{"properties.desired":{{"modules":{{"a":{{}},"b":{{}},"c":{{}}}}}}}},
  "$edgeHub":{{"properties.desired":{{
     "storeAndForwardConfiguration":{{"timeToLiveSecs":{ttl}}},
     "routes":{{
       "toB":"FROM /messages/modules/a/outputs/toB INTO BrokeredEndpoint(\"/modules/b/inputs/fromA\")",
       "toC":{{"route":"FROM /messages/modules/a/outputs/toC INTO BrokeredEndpoint(\"/modules/c/inputs/fromA\")","timeToLiveSecs":3600}}}}}}}}}}}}"#
    )
}

fn state_dir(name: &str) -> PathBuf {
    support::state_dir(&format!("store-{name}"), "{}")
}

/// The shared hub flags, with `manifest` as the deployment and a short ack timeout.
fn config(dir: &Path, manifest: &str) -> hub::HubConfig {
    std::fs::write(dir.join("deployment.json"), manifest).unwrap();
    support::config(dir, &["--ack-timeout", "2s"])
}

async fn client(
    hub: &hub::RunningHub,
    module: &str,
    subs: Subscriptions,
) -> (ModuleClient, mpsc::Receiver<Incoming>) {
    let mut id = ModuleIdentity::with_key(
        "local-hub.azure-devices.net",
        "localhost",
        "local-edge-device",
        module,
        hub.hub.identities().keys(module).unwrap()[0].clone(),
        hub.ca_path.clone(),
    );
    id.mqtt_port = hub.mqtt.port();
    id.https_port = hub.https.port();
    ModuleClient::connect(Arc::new(id), subs).await.unwrap()
}

async fn metrics(hub: &hub::RunningHub) -> String {
    let mut s = TcpStream::connect(hub.metrics).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nAccept: text/plain\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn wait_for_sample(hub: &hub::RunningHub, name: &str, labels: &[&str], value: f64) {
    let mut text = String::new();
    for _ in 0..200 {
        text = metrics(hub).await;
        if test_support::metric_sum(&text, name, labels) == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name}{labels:?} never {value}:\n{text}");
}

async fn recv_input(rx: &mut mpsc::Receiver<Incoming>) -> (String, Message) {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Incoming::Input { input, message, .. })) => (input, message),
        other => panic!("expected an input message, got {other:?}"),
    }
}

async fn nothing_arrives(rx: &mut mpsc::Receiver<Incoming>, within: Duration) {
    if let Ok(Some(Incoming::Input { input, message, .. })) =
        tokio::time::timeout(within, rx.recv()).await
    {
        panic!("unexpected delivery on {input}: {message:?}");
    }
}

const QUEUE_B: &str = r#"endpoint="local-edge-device/b/fromA""#;
const QUEUE_C: &str = r#"endpoint="local-edge-device/c/fromA""#;

/// Sends `n` messages from `a` on `output`, tagged `{tag}{i}`.
async fn send(a: &ModuleClient, output: &str, tag: &str, n: usize) {
    for i in 0..n {
        let m = Message::new(Bytes::from(format!("{tag}{i} body")))
            .with_correlation_id(format!("{tag}{i}"))
            .with_property("k&=/ é", format!("v{i}"));
        a.send_output(output, m).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_for_an_offline_module_are_delivered_in_order_by_the_next_hub() {
    let dir = state_dir("restart");
    let config = config(&dir, &manifest(7200));
    let first = hub::start(&config).await.unwrap();
    let (a, _a_rx) = client(&first, "a", Subscriptions::NONE).await;
    send(&a, "toB", "m", 5).await;
    // Queued once the store has them (written before the PUBACK, and before the queue).
    wait_for_sample(&first, "edgehub_queue_length", &[QUEUE_B], 5.0).await;
    a.disconnect().await;
    first.stop().await;
    assert!(dir.join("store.redb").exists());

    let second = hub::start(&config).await.unwrap();
    wait_for_sample(&second, "edgehub_queue_length", &[QUEUE_B], 5.0).await;
    let (b, mut b_rx) = client(&second, "b", Subscriptions::INPUTS).await;
    for i in 0..5 {
        let (input, m) = recv_input(&mut b_rx).await;
        assert_eq!(input, "fromA");
        assert_eq!(&m.body[..], format!("m{i} body").as_bytes());
        assert_eq!(m.correlation_id(), Some(format!("m{i}").as_str()));
        assert_eq!(m.properties.get("k&=/ é"), Some(format!("v{i}").as_str()));
        assert_eq!(m.properties.get("$.cdid"), Some("local-edge-device"));
        assert_eq!(m.properties.get("$.cmid"), Some("a"));
    }
    // Counted as sent under the sender's labels, as any delivery.
    wait_for_sample(
        &second,
        "edgehub_messages_sent_total",
        &[
            r#"from="local-edge-device/a""#,
            r#"to="local-edge-device/b""#,
            r#"from_route_output="toB""#,
            r#"to_route_input="fromA""#,
        ],
        5.0,
    )
    .await;
    wait_for_sample(&second, "edgehub_queue_length", &[QUEUE_B], 0.0).await;
    b.disconnect().await;
    second.stop().await;

    // Acknowledged means gone: a third hub has nothing to deliver again.
    let third = hub::start(&config).await.unwrap();
    let (_b, mut b_rx) = client(&third, "b", Subscriptions::INPUTS).await;
    nothing_arrives(&mut b_rx, Duration::from_millis(1500)).await;
    third.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_expire_while_the_hub_is_stopped_are_dropped_as_ttl_expiry() {
    let dir = state_dir("ttl");
    // toB lives the manifest's 2 s, toC its route's hour.
    let config = config(&dir, &manifest(2));
    let first = hub::start(&config).await.unwrap();
    let (a, _a_rx) = client(&first, "a", Subscriptions::NONE).await;
    send(&a, "toB", "b", 2).await;
    send(&a, "toC", "c", 1).await;
    wait_for_sample(&first, "edgehub_queue_length", &[QUEUE_B], 2.0).await;
    wait_for_sample(&first, "edgehub_queue_length", &[QUEUE_C], 1.0).await;
    a.disconnect().await;
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let second = hub::start(&config).await.unwrap();
    // Dropped as the store is loaded: counted under the sender's labels, never delivered.
    let text = metrics(&second).await;
    assert_eq!(
        test_support::metric_sum(
            &text,
            "edgehub_messages_dropped_total",
            &[
                r#"reason="ttl_expiry""#,
                r#"from="local-edge-device/a""#,
                r#"from_route_output="toB""#
            ]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(!text.contains("ttl_expired"), "{text}");
    let (_b, mut b_rx) = client(&second, "b", Subscriptions::INPUTS).await;
    let (_c, mut c_rx) = client(&second, "c", Subscriptions::INPUTS).await;
    let (input, m) = recv_input(&mut c_rx).await;
    assert_eq!((input.as_str(), m.correlation_id()), ("fromA", Some("c0")));
    nothing_arrives(&mut b_rx, Duration::from_millis(1500)).await;
    second.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_expire_while_their_module_stays_offline() {
    let dir = state_dir("offline-ttl");
    let config = config(&dir, &manifest(1));
    let hub = hub::start(&config).await.unwrap();
    let (a, _a_rx) = client(&hub, "a", Subscriptions::NONE).await;
    send(&a, "toB", "b", 3).await;
    // Nobody connects for b: the queue still empties when the time-to-live is over.
    let dropped = [
        r#"reason="ttl_expiry""#,
        r#"from="local-edge-device/a""#,
        r#"from_route_output="toB""#,
    ];
    wait_for_sample(&hub, "edgehub_messages_dropped_total", &dropped, 3.0).await;
    wait_for_sample(&hub, "edgehub_queue_length", &[QUEUE_B], 0.0).await;
    a.disconnect().await;
    hub.stop().await;
    // And they left the store: the next hub has none of them.
    let hub = hub::start(&config).await.unwrap();
    let text = metrics(&hub).await;
    assert_eq!(
        test_support::metric_sum(&text, "edgehub_messages_dropped_total", &dropped),
        None,
        "{text}"
    );
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_store_stops_the_start_naming_the_file_to_remove() {
    let dir = state_dir("corrupt");
    let path = dir.join("store.redb");
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let e = match hub::start(&config(&dir, &manifest(7200))).await {
        Ok(_) => panic!("a hub started on a corrupt store"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains(&format!("hub store {} cannot be opened", path.display())),
        "{e}"
    );
    assert!(
        e.contains(&format!("remove {}", path.display())) && e.contains("will be lost"),
        "{e}"
    );
    // Refused, never replaced or emptied.
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
    let _ = std::fs::remove_dir_all(&dir);
}
