//! A real lifecycle (issue 11): `stop()` returns when every task the hub spawned has ended and
//! its ports are free. Started and stopped 20 times in one process, with live connections each
//! time: no task, socket or port is left behind.

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Packet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod support;

const MANIFEST: &str = r#"{"modulesContent":{"$edgeAgent":{"properties.desired":{"modules":{"a":{},"b":{}}}},
  "$edgeHub":{"properties.desired":{"routes":{"r":"FROM /messages/modules/a/outputs/* INTO BrokeredEndpoint(\"/modules/b/inputs/in\")"}}}}}"#;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Tasks alive on this runtime, once they have had a moment to finish.
async fn settled_tasks(at_most: usize) -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..100 {
        if metrics.num_alive_tasks() <= at_most {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    metrics.num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_starts_and_stops_leave_nothing_behind() {
    let dir = support::state_dir("lifecycle", MANIFEST);
    let config = support::config(&dir, &["--plain-mqtt-port", "0"]);
    let tasks_before = settled_tasks(0).await;
    let mut fds_before = None;
    for round in 0..20 {
        let running = hub::start(&config).await.unwrap();
        let ports = [
            running.mqtt,
            running.https,
            running.metrics,
            running.plain_mqtt.unwrap(),
        ];
        // Live work at the moment of stopping: an authenticated module, a silent connection on
        // every port, and a delivery waiting for its subscriber.
        let key = running.hub.identities().keys("a").unwrap()[0].clone();
        let mut module = TcpStream::connect(running.plain_mqtt.unwrap())
            .await
            .unwrap();
        let mut c = Connect::new("local-edge-device/a");
        c.set_login(
            edge::topic::username("local-hub.azure-devices.net", "local-edge-device", "a", "t"),
            edge::sas::module_token(
                &key,
                "local-hub.azure-devices.net",
                "local-edge-device",
                "a",
                edge::sas::now_unix() + 60,
            ),
        );
        let mut buf = BytesMut::new();
        Packet::Connect(c).write(&mut buf, usize::MAX).unwrap();
        let topic = "devices/local-edge-device/modules/a/messages/events/%24.on=o";
        Packet::Publish(rumqttc::mqttbytes::v4::Publish::new(
            topic,
            rumqttc::mqttbytes::QoS::AtMostOnce,
            "x",
        ))
        .write(&mut buf, usize::MAX)
        .unwrap();
        module.write_all(&buf).await.unwrap();
        let mut answer = [0u8; 4];
        module.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer[0] >> 4, 2, "CONNACK");
        let silent: Vec<TcpStream> = futures_connect(&ports).await;
        assert!(running.hub.connected() == 1);

        let hub = Arc::clone(&running.hub);
        tokio::time::timeout(Duration::from_secs(10), running.stop())
            .await
            .expect("stop() did not return within 10 s");
        // The hub closed its side of every connection.
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), module.read_to_end(&mut rest))
            .await
            .expect("the module's connection stayed open after stop()");
        assert!(n.is_ok());
        drop(silent);
        drop(module);
        drop(hub);
        // Every port can be bound again at once.
        for p in ports {
            TcpListener::bind(p)
                .await
                .unwrap_or_else(|e| panic!("round {round}: port {p} still taken: {e}"));
        }
        let tasks = settled_tasks(tasks_before).await;
        assert_eq!(tasks, tasks_before, "round {round}: tasks left behind");
        let fds = open_fds();
        match fds_before {
            None => fds_before = Some(fds),
            Some(b) => assert!(
                fds <= b + 2,
                "round {round}: {fds} descriptors open, {b} after round 0"
            ),
        }
    }
}

async fn futures_connect(ports: &[std::net::SocketAddr]) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for p in ports {
        out.push(TcpStream::connect(p).await.unwrap());
    }
    out
}
