//! One server certificate: the MQTT and HTTPS listeners present the same one, and it is the one
//! written to `server.pem` (issue 11).

use std::sync::Arc;
use tokio::net::TcpStream;

mod support;

const MANIFEST: &str = r#"{"modulesContent":{"$edgeAgent":{"properties.desired":{"modules":{"a":{}}}},
  "$edgeHub":{"properties.desired":{"routes":{}}}}}"#;

async fn presented(ca: &str, addr: std::net::SocketAddr, alpn: &[&[u8]]) -> Vec<u8> {
    let config = edge::tls::client_config(ca, alpn).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    session.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn both_listeners_present_the_certificate_in_server_pem() {
    let dir = support::state_dir("cert", MANIFEST);
    let config = support::config(&dir, &[]);
    let running = hub::start(&config).await.unwrap();
    let ca = std::fs::read_to_string(&running.ca_path).unwrap();
    let mqtt = presented(&ca, running.mqtt, &[]).await;
    let https = presented(&ca, running.https, &[b"http/1.1"]).await;
    assert_eq!(
        mqtt, https,
        "the two listeners present different certificates"
    );
    let pem = std::fs::read(dir.join("server.pem")).unwrap();
    let first = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        first.to_vec(),
        mqtt,
        "server.pem is not the certificate the hub presents"
    );
    running.stop().await;
}
