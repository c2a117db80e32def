//! What the hub's integration tests share: a hub started in-process on free local ports in a
//! fresh state directory, and the identities and metrics it serves.
// Each test binary uses a part of this.
#![allow(dead_code)]

use clap::Parser;
use edge::session::Subscriptions;
use edge::{Incoming, Message, ModuleClient, ModuleIdentity};
use hub::state::Session;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fresh state directory for test `name`, with `manifest` as its deployment.json.
pub fn state_dir(name: &str, manifest: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hub-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("deployment.json"), manifest).unwrap();
    dir
}

/// A hub on 127.0.0.1 with every port picked free, its deployment and state in `dir`, and the
/// `extra` flags (parsed as the command line is, so tests set what a user would).
pub fn config(dir: &Path, extra: &[&str]) -> hub::HubConfig {
    let deployment = dir.join("deployment.json");
    let mut args = vec![
        "hub",
        "--bind",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--https-port",
        "0",
        "--metrics-port",
        "0",
        "--deployment",
        deployment.to_str().unwrap(),
        "--state-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    hub::Args::parse_from(args).config()
}

pub struct TestHub {
    pub running: hub::RunningHub,
    pub dir: PathBuf,
}

/// Starts a hub for test `name` (see [`state_dir`] and [`config`]).
pub async fn start(name: &str, manifest: &str, extra: &[&str]) -> anyhow::Result<TestHub> {
    let dir = state_dir(name, manifest);
    let running = hub::start(&config(&dir, extra)).await?;
    Ok(TestHub { running, dir })
}

impl TestHub {
    pub fn key(&self, module: &str) -> Vec<u8> {
        self.running.hub.identities().keys(module).unwrap()[0].clone()
    }

    pub fn identity(&self, module: &str) -> Arc<ModuleIdentity> {
        let mut id = ModuleIdentity::with_key(
            "local-hub.azure-devices.net",
            "localhost",
            "local-edge-device",
            module,
            self.key(module),
            self.running.ca_path.clone(),
        );
        id.mqtt_port = self.running.mqtt.port();
        id.https_port = self.running.https.port();
        Arc::new(id)
    }

    /// The Prometheus text the hub serves at /metrics.
    pub async fn scrape(&self) -> String {
        let mut s = TcpStream::connect(self.running.metrics).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\naccept: text/plain\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Waits until the hub has taken `n` direct-method calls (`edgehub_direct_methods_total`,
    /// counted before a call waits for its target).
    pub async fn wait_for_method_calls(&self, n: u64) {
        let mut text = String::new();
        for _ in 0..400 {
            text = self.scrape().await;
            let calls: u64 = (text.lines())
                .filter(|l| l.starts_with("edgehub_direct_methods_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            if calls >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never {n} method calls:\n{text}");
    }

    /// Waits until `module`'s session is `ready` (connect returns before SUBACK); panics saying
    /// the module never got `what` after 10 s.
    pub async fn wait_for_session(
        &self,
        module: &str,
        what: &str,
        ready: impl Fn(&Session) -> bool,
    ) {
        for _ in 0..400 {
            if self.running.hub.session(module).is_some_and(|s| ready(&s)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{module} never {what}");
    }
}

/// A SAS token for `module` of the test device, valid until `expiry` (unix seconds).
pub fn token(key: &[u8], module: &str, expiry: u64) -> String {
    edge::sas::module_token(
        key,
        "local-hub.azure-devices.net",
        "local-edge-device",
        module,
        expiry,
    )
}

/// Calls `method` on `target` as module `caller` with a raw HTTPS POST, so any answer, also a
/// 504, is seen as the hub sent it; returns (status, body).
pub async fn call_method(
    hub: &TestHub,
    caller: &str,
    target: &str,
    method: &str,
    response_timeout_secs: u64,
) -> (u16, String) {
    let body = format!(
        r#"{{"methodName":"{method}","payload":{{}},"responseTimeoutInSeconds":{response_timeout_secs}}}"#
    );
    post_method(hub, caller, target, body).await
}

/// As [`call_method`], waiting up to `connect_timeout_secs` for the target to subscribe.
pub async fn call_method_waiting(
    hub: &TestHub,
    caller: &str,
    target: &str,
    method: &str,
    connect_timeout_secs: u64,
) -> (u16, String) {
    let body = format!(
        r#"{{"methodName":"{method}","payload":{{}},"connectTimeoutInSeconds":{connect_timeout_secs}}}"#
    );
    post_method(hub, caller, target, body).await
}

async fn post_method(hub: &TestHub, caller: &str, target: &str, body: String) -> (u16, String) {
    let auth = token(&hub.key(caller), caller, edge::sas::now_unix() + 3600);
    let path = format!("/twins/local-edge-device/modules/{target}/methods?api-version=2018-06-30");
    let module_header = format!("local-edge-device/{caller}");
    post_raw(hub, &path, &module_header, &auth, &body).await
}

/// A TLS connection to one of the hub's listeners, trusting its CA, for `localhost`.
pub async fn tls_connect(
    hub: &TestHub,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let ca = std::fs::read_to_string(&hub.running.ca_path).unwrap();
    let config = edge::tls::client_config(&ca, &[]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// One HTTPS POST to the hub's method endpoint on a new connection, headers as given: the
/// status and the body.
pub async fn post_raw(
    hub: &TestHub,
    path: &str,
    module_header: &str,
    auth: &str,
    body: &str,
) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let tls = tls_connect(hub, hub.running.https).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", "localhost")
        .header("x-ms-edge-moduleId", module_header)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

impl TestHub {
    /// Our module client for `module`, connected with `subs` (it returns before the SUBACK).
    pub async fn client(
        &self,
        module: &str,
        subs: Subscriptions,
    ) -> (ModuleClient, tokio::sync::mpsc::Receiver<Incoming>) {
        ModuleClient::connect(self.identity(module), subs)
            .await
            .unwrap()
    }
}

/// Sends `body` on `output` of `client`.
pub async fn send(client: &ModuleClient, output: &str, body: &str) {
    client
        .send_output(output, Message::new(bytes::Bytes::from(body.to_owned())))
        .await
        .unwrap();
}
